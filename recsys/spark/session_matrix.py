"""The session x product matrix (``recsys.matrices.session_item_matrix``) as a Spark
aggregation: each event's session key derived on the executors as the local code derives it,
each event weighed there (event weight x time decay), the weights summed per (session,
product); one row per non-zero (session row, product code, weight) reaches the driver, which
makes the CSR matrix. The event lines stay on Spark.

Session keys (``recsys.matrices.session_keys``): the ``session_id``; else, for an event with
a customer, ``c:<customer>:<n>`` where ``n`` counts the sessions (a new customer, or more than
30 minutes since the customer's previous event) over all such events in (customer, time)
order: a window per customer numbers a customer's sessions, and a prefix sum over the
customers (one row each, in customer order) adds the sessions of the customers before.
The rows come out in the local order (``recsys.matrices.session_item_matrix``: each
session's last event, then its key): the sessions are sorted so on Spark and numbered in that
order, so ``sessions.npz`` is the local engine's file.

Weights: the local code sums a pair's float32 weights in float32, Spark in double, rounded to
float32 once: equal when the sums are exact in float32 (no time decay, weights small whole
numbers), else to float32 rounding (``tests/test_spark_session_matrix.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.matrices import SESSION_GAP, InteractionWeights
from recsys.spark.interactions import decay_weight, newest
from recsys.spark.neighbours import item_codes
from recsys.vocab import Vocabulary

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

__all__ = ["session_item_matrix_on_spark", "view_sessions_on_spark", "viewed_bought_counts_on_spark",
           "event_products_on_spark"]


def keyed_events(events: DataFrame) -> DataFrame:
    """The events that have a session key (``recsys.matrices.session_keys``), with it as a
    string column ``session``; those with neither a session_id nor a customer left out."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    given: Column = (F.col("session_id").cast("string") if "session_id" in events.columns
                     else F.lit(None).cast("string"))
    keyed = events.withColumn("session", given)
    if "customer_id" not in events.columns:
        return keyed.filter(F.col("session").isNotNull())
    missing = keyed.filter(F.col("session").isNull() & F.col("customer_id").isNotNull())
    missing = missing.withColumn("customer", F.col("customer_id").cast("string"))
    # a customer's events in time order (unknown times last, as pandas sorts them); a row
    # starts a session when it is the customer's first or more than the gap after the previous
    by_time = Window.partitionBy("customer").orderBy(F.col("occurred_at").asc_nulls_last())
    micros = F.unix_micros(F.col("occurred_at").cast("timestamp"))
    gap = micros - F.lag(micros).over(by_time) > F.lit(SESSION_GAP.value // 1000)
    starts = F.when((F.row_number().over(by_time) == 1) | F.coalesce(gap, F.lit(False)), 1
                    ).otherwise(0)
    numbered = missing.withColumn("nth", F.sum(starts).over(
        by_time.rowsBetween(Window.unboundedPreceding, Window.currentRow)))
    # the sessions of the customers before (in the order pandas sorts the ids: code points)
    per_customer = numbered.groupBy("customer").agg(F.max("nth").alias("n"))
    before = per_customer.withColumn("before", F.sum("n").over(
        Window.orderBy("customer").rowsBetween(Window.unboundedPreceding, Window.currentRow))
        - F.col("n")).select("customer", "before")
    derived = numbered.join(before, "customer").withColumn(
        "session", F.concat(F.lit("c:"), F.col("customer"), F.lit(":"),
                            (F.col("before") + F.col("nth")).cast("string"))
    ).drop("customer", "nth", "before")
    return keyed.filter(F.col("session").isNotNull()).unionByName(derived)


def session_item_matrix_on_spark(spark: SparkSession, events: DataFrame, items: Vocabulary,
                                 weights: InteractionWeights | None = None) -> sp.csr_matrix:
    """``session_item_matrix(events, weights=weights, items=items).matrix`` on Spark: the same
    rows in the same order, the same non-zeros."""
    from pyspark.sql import functions as F

    weights = weights or InteractionWeights()
    keyed = keyed_events(events)
    reference = (newest(keyed, "occurred_at") if weights.half_life_days is not None
                 else None)
    kinds = F.create_map(*(F.lit(x) for kv in weights.event_weights.items() for x in kv))
    weight = F.coalesce(kinds[F.col("event_type")], F.lit(0.0)) * decay_weight(
        "occurred_at", weights.half_life_days, reference)
    cells = (keyed.select("session", F.col("product_id").cast("string"),
                          weight.cast("float").alias("w"), "occurred_at")
             .join(F.broadcast(item_codes(spark, items)), "product_id")
             .groupBy("session", "item").agg(F.sum("w").alias("w"),
                                             F.max("occurred_at").alias("last")))
    # in time order (each session's last event, then its key) and numbered in that order
    # (Spark's row ids grow with it), one row each
    rows = (cells.groupBy("session").agg(F.collect_list(F.struct("item", "w")).alias("cells"),
                                         F.max("last").alias("last"))
            .orderBy(F.col("last").asc_nulls_last(), "session")
            .withColumn("row", F.monotonically_increasing_id())
            .select("row", F.explode("cells").alias("cell"))
            .select("row", "cell.item", "cell.w"))
    table = pd.DataFrame(rows.toPandas())
    row = np.unique(table["row"].to_numpy(np.int64), return_inverse=True)[1]
    matrix = sp.csr_matrix((table["w"].to_numpy(np.float64).astype(np.float32),
                            (row.astype(np.int32), table["item"].to_numpy(np.int32))),
                           shape=(int(row.max(initial=-1)) + 1, len(items)))
    matrix.sort_indices()
    matrix.eliminate_zeros()
    return matrix


def view_sessions_on_spark(spark: SparkSession, events: DataFrame | None, items: Vocabulary,
                           weights: InteractionWeights) -> sp.csr_matrix | None:
    """``recsys.matrices.view_sessions`` on Spark: the session x product matrix of the view
    events; None without view events."""
    from pyspark.sql import functions as F

    if events is None:
        return None
    views = events.filter(F.col("event_type") == "view")
    if views.isEmpty():
        return None
    return session_item_matrix_on_spark(spark, views, items, weights)


def viewed_bought_counts_on_spark(spark: SparkSession, events: DataFrame | None,
                                  items: Vocabulary) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``recsys.models.upsell.viewed_bought_counts`` on Spark: per (viewed A, bought B) the
    sessions that viewed A without buying it and bought B, counted by a join and a group-by
    there; one row per pair reaches the driver."""
    from pyspark.sql import functions as F

    if events is None:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
    coded = (keyed_events(events).select("session", "event_type",
                                         F.col("product_id").cast("string"))
             .join(F.broadcast(item_codes(spark, items)), "product_id"))
    bought = (coded.filter(F.col("event_type") == "purchase")
              .select("session", F.col("item").alias("b")).distinct())
    viewed = (coded.filter(F.col("event_type") == "view")
              .select("session", F.col("item").alias("a")).distinct()
              .join(bought.withColumnRenamed("b", "a"), ["session", "a"], "left_anti"))
    counts = (viewed.join(bought, "session").groupBy("a", "b")
              .agg(F.count(F.lit(1)).alias("n")))
    table = pd.DataFrame(counts.toPandas())
    return (table["a"].to_numpy(np.int64), table["b"].to_numpy(np.int64),
            table["n"].to_numpy(np.int64))


def event_products_on_spark(events: DataFrame | None) -> pd.DataFrame | None:
    """The events' distinct products (a ``product_id`` column), for the product vocabulary."""
    from pyspark.sql import functions as F

    if events is None:
        return None
    return pd.DataFrame(events.select(F.col("product_id").cast("string")).distinct().toPandas())
