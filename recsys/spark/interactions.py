"""The ALS confidence matrix (``recsys.matrices.customer_item_matrix``) as a Spark aggregation:
each order line and each non-purchase event of a known customer weighed on the executors
(event weight x quantity factor x time decay, as the local code), summed per (customer,
product) there. The non-zeros stay on Spark (``SparkConfidence``: MLlib's ALS fits them
there); only the customer vocabulary reaches the driver.

The local code sums a pair's float32 weights in float32; Spark sums them in double and the
total is rounded to float32 once: the entries agree to float32 rounding (relative 1e-6),
the structure and the customer vocabulary exactly (``tests/test_spark_interactions.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from recsys.matrices import InteractionWeights
from recsys.spark.history import customer_codes
from recsys.spark.neighbours import item_codes
from recsys.vocab import Vocabulary

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

__all__ = ["SparkConfidence", "confidence_on_spark", "newest", "decay_weight"]


@dataclass(frozen=True)
class SparkConfidence:
    """ALS's customers x products confidence matrix held by Spark: its non-zeros
    ``ratings`` (user int, item int, rating float: codes of ``rows`` and ``items``), ``nnz``
    of them, kept on the executors' disks until ``release``."""

    ratings: DataFrame
    rows: Vocabulary
    items: Vocabulary
    nnz: int

    def release(self) -> None:
        self.ratings.unpersist()


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


def confidence_on_spark(spark: SparkSession, orders: DataFrame, events: DataFrame | None,
                        items: Vocabulary, weights: InteractionWeights | None = None
                        ) -> SparkConfidence:
    """``customer_item_matrix(orders, events, weights=weights, items=items)``, kept on Spark:
    the same customer vocabulary (every customer with a weighed line, sorted), the same
    non-zeros."""
    from pyspark import StorageLevel
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
    # a pair's sum rounded to float32 once, as the local matrix holds it
    sums = (lines.join(F.broadcast(item_codes(spark, items)), "product_id")
            .groupBy("customer_id", "item").agg(F.sum("w").cast("float").alias("rating"))
            .persist(StorageLevel.DISK_ONLY))
    try:
        named = pd.DataFrame(sums.select("customer_id").distinct().toPandas())["customer_id"]
        rows = Vocabulary.from_ids(named.astype("string"), sort=True)
        ratings = (sums.filter(F.col("rating") != 0)  # the local matrix's eliminate_zeros
                   .join(customer_codes(spark, rows), "customer_id")
                   .select(F.col("customer").cast("int").alias("user"), "item", "rating")
                   .persist(StorageLevel.DISK_ONLY))
        nnz = ratings.count()
    finally:
        sums.unpersist()
    return SparkConfidence(ratings=ratings, rows=rows, items=items, nnz=nnz)
