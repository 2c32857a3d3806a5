"""The ALS confidence matrix (``recsys.matrices.customer_item_matrix``) as a Spark aggregation:
each order line and each non-purchase event of a known customer weighed on the executors
(event weight x quantity factor x time decay, as the local code), summed per (customer,
product) there; one row per non-zero reaches the driver, which makes the CSR matrix.

The local code sums a pair's float32 weights in float32; Spark sums them in double and the
total is rounded to float32 once: the entries agree to float32 rounding (relative 1e-6),
the structure and the customer vocabulary exactly (``tests/test_spark_interactions.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.matrices import Interactions, InteractionWeights
from recsys.spark.neighbours import item_codes
from recsys.vocab import Vocabulary

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

__all__ = ["customer_item_matrix_on_spark", "newest", "decay_weight"]


def newest(frame: DataFrame | None, column: str) -> pd.Timestamp | None:
    from pyspark.sql import functions as F

    if frame is None or column not in frame.columns:
        return None
    row = frame.agg(F.max(column)).first()
    return None if row is None or row[0] is None else pd.Timestamp(row[0])


def decay_weight(when: str, half_life_days: float | None,
                 reference: pd.Timestamp | None) -> Column:
    """0.5 ^ (age in days / half-life), ages below 0 (and unknown) as 0; 1 without decay."""
    from pyspark.sql import functions as F

    if half_life_days is None or reference is None:
        return F.lit(1.0)
    micros = F.unix_micros(F.col(when).cast("timestamp"))
    age = (F.lit(reference.value // 1000) - micros).cast("double") / 1e6 / 86400.0
    return F.pow(F.lit(0.5), F.greatest(F.coalesce(age, F.lit(0.0)), F.lit(0.0))
                 / half_life_days)


def customer_item_matrix_on_spark(spark: SparkSession, orders: DataFrame,
                                  events: DataFrame | None, items: Vocabulary,
                                  weights: InteractionWeights | None = None) -> Interactions:
    """``customer_item_matrix(orders, events, weights=weights, items=items)`` on Spark."""
    from pyspark.sql import functions as F

    weights = weights or InteractionWeights()
    reference = None
    if weights.half_life_days is not None:
        stamps = [s for s in (newest(orders, "ordered_at"), newest(events, "occurred_at"))
                  if s is not None]
        reference = max(stamps) if stamps else None
    quantity = F.lit(1.0)
    if "quantity" in orders.columns and weights.quantity != "ignore":
        q = F.col("quantity").cast("double")
        quantity = F.log1p(q) / float(np.log(2.0)) if weights.quantity == "log1p" else q
    purchase = F.lit(weights.event_weights.get("purchase", 0.0)) * quantity * decay_weight(
        "ordered_at", weights.half_life_days, reference)
    parts = [orders.filter(F.col("customer_id").isNotNull()).select(
        F.col("customer_id").cast("string"), F.col("product_id").cast("string"),
        purchase.cast("float").alias("w"))]
    if events is not None and "customer_id" in events.columns:
        kinds = F.create_map(*(F.lit(x) for kv in weights.event_weights.items() for x in kv))
        weight = F.coalesce(kinds[F.col("event_type")], F.lit(0.0)) * decay_weight(
            "occurred_at", weights.half_life_days, reference)
        parts.append(events.filter(F.col("customer_id").isNotNull()
                                   & (F.col("event_type") != "purchase")).select(
            F.col("customer_id").cast("string"), F.col("product_id").cast("string"),
            weight.cast("float").alias("w")))
    lines = parts[0] if len(parts) == 1 else parts[0].unionByName(parts[1])
    sums = (lines.join(F.broadcast(item_codes(spark, items)), "product_id")
            .groupBy("customer_id", "item").agg(F.sum("w").alias("w")))
    table = pd.DataFrame(sums.toPandas())
    row_codes, row_ids = pd.factorize(table["customer_id"].astype("string"), sort=True)
    rows = Vocabulary(pd.Index(row_ids, dtype="string"))
    matrix = sp.csr_matrix((table["w"].to_numpy(np.float64).astype(np.float32),
                            (row_codes.astype(np.int32), table["item"].to_numpy(np.int32))),
                           shape=(len(rows), len(items)))
    matrix.sort_indices()
    matrix.eliminate_zeros()
    return Interactions(matrix=matrix, rows=rows, items=items)
