"""The purchase history and the repurchase cycles as Spark aggregations.

Purchase history: per bought (customer, product) the last purchase day and the distinct
orders, the table behind ``purchases.npz`` (``recsys.models.purchases.PurchaseHistory``).

Repurchase cycles, equal to the local models job's
(``recsys.repurchase.cycles_of_sorted``): per product, the median of the day gaps between a
customer's purchases of it (exact ``percentile``, the mean of the two middle gaps as pandas),
the number of gaps, and the share of its buyers who bought it on a later day. Only the
per-product table, one row per product with enough evidence, reaches the driver.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from recsys.models.purchases import PurchaseHistory
from recsys.repurchase import COLUMNS
from recsys.spark.ingest import to_spark_pandas
from recsys.spark.neighbours import item_codes

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from recsys.vocab import Vocabulary

__all__ = ["repurchase_cycles_on_spark", "purchase_history_on_spark"]


def repurchase_cycles_on_spark(spark: SparkSession, orders: DataFrame, items: Vocabulary, *,
                               min_intervals: int, min_repeat_share: float) -> pd.DataFrame:
    """The cycles of the dated lines of known customers and products of ``orders``."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    if "customer_id" not in orders.columns or "ordered_at" not in orders.columns:
        return pd.DataFrame(columns=COLUMNS)
    lines = (orders.filter(F.col("customer_id").isNotNull() & F.col("ordered_at").isNotNull())
             .select(F.col("customer_id").cast("string"), F.col("product_id").cast("string"),
                     F.datediff(F.to_date("ordered_at"), F.lit("1970-01-01")).alias("day"))
             .join(F.broadcast(item_codes(spark, items)), "product_id"))
    pair = Window.partitionBy("customer_id", "item").orderBy("day")
    gaps = lines.withColumn("gap", F.col("day") - F.lag("day").over(pair))
    repeated = (gaps.groupBy("customer_id", "item")
                .agg(F.max((F.col("gap") > 0).cast("int")).alias("repeated")))
    buyers = repeated.groupBy("item").agg(F.count(F.lit(1)).alias("buyers"),
                                          F.sum(F.coalesce("repeated", F.lit(0))).alias("repeaters"))
    stats = (gaps.filter(F.col("gap") > 0).groupBy("item")
             .agg(F.percentile(F.col("gap"), F.lit(0.5)).alias("cycle_days"),
                  F.count(F.lit(1)).alias("intervals"))
             .filter(F.col("intervals") >= min_intervals)
             .join(buyers, "item"))
    table = pd.DataFrame(stats.toPandas()).sort_values("item")  # empty: typed as the local
    share = (table["repeaters"].to_numpy(np.float64)
             / np.maximum(table["buyers"].to_numpy(np.int64), 1))
    out = pd.DataFrame({"cycle_days": table["cycle_days"].to_numpy(np.float64),
                        "intervals": table["intervals"].to_numpy(np.int64),
                        "repeat_share": share},
                       index=pd.Index(items.ids[table["item"].to_numpy(np.int64)],
                                      name="product_id"))
    out = out[out["repeat_share"] >= min_repeat_share]
    return out.reset_index()[COLUMNS]


def purchase_history_on_spark(spark: SparkSession, orders: DataFrame, items: Vocabulary,
                              customers: Vocabulary) -> PurchaseHistory:
    """The purchase history (``recsys.models.purchases.PurchaseHistory``) of the lines of
    ``customers`` and ``items`` in ``orders``: per (customer, product) the last day (days since
    the epoch + 1; 1 when no line of the pair is dated) and the distinct orders, aggregated
    on the executors; one row per bought pair reaches the driver."""
    from pyspark.sql import functions as F

    if "ordered_at" in orders.columns:
        day = F.coalesce(F.datediff(F.to_date("ordered_at"), F.lit("1970-01-01")) + 1, F.lit(1))
    else:
        day = F.lit(1)
    pairs = (orders.filter(F.col("customer_id").isNotNull())
             .select(F.col("customer_id").cast("string"), F.col("product_id").cast("string"),
                     "order_id", day.alias("day"))
             .join(F.broadcast(item_codes(spark, items)), "product_id")
             .join(customer_codes(spark, customers), "customer_id")
             .groupBy("customer", "item")
             .agg(F.max("day").alias("last_day"), F.countDistinct("order_id").alias("orders")))
    table = pd.DataFrame(pairs.toPandas()).sort_values(["customer", "item"])
    return PurchaseHistory(customer=table["customer"].to_numpy(np.int64),
                           product=table["item"].to_numpy(np.int64),
                           last_day=table["last_day"].to_numpy(np.int64),
                           orders=table["orders"].to_numpy(np.int32))


def customer_codes(spark: SparkSession, customers: Vocabulary) -> DataFrame:
    """(customer_id, customer): each customer's code in ``customers``."""
    return spark.createDataFrame(to_spark_pandas(pd.DataFrame(
        {"customer_id": pd.Series(customers.ids).astype(object),
         "customer": np.arange(len(customers), dtype=np.int64)})),
        "customer_id string, customer long")
