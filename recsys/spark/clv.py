"""The customer-value job's line-level aggregations on Spark (``ClvAggregates`` of
recsys.analytics.aggregates): the driver receives one row per order (the order table: BG/NBD's
purchase days, the lifecycle's gaps, cohorts and the lifetime windows are computed from it by
the local code), one row per bought (customer, product) (the action lists), one row per
product (repurchase cycles) and one row per customer or per (segment, category) (pricing);
never the order lines. Sums are Spark's (in its summation order: order values agree with the
local ones once rounded, recsys.analytics.clv.VALUE_DECIMALS); counts, minima, maxima and the
exact ``percentile`` medians and terciles are those of the local code.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from recsys.analytics.aggregates import PAIR_COLUMNS
from recsys.analytics.clv import OrderTable, round_values
from recsys.analytics.pricing import BANDS, PriceAggregates
from recsys.errors import InputError
from recsys.repurchase import MIN_INTERVALS, MIN_REPEAT_SHARE
from recsys.spark.history import repurchase_cycles_on_spark
from recsys.spark.ingest import to_spark_pandas
from recsys.vocab import Vocabulary

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

__all__ = ["SparkClvAggregates", "filled_columns"]


def _number(frame: DataFrame, name: str) -> Column:
    """The column as a double with NaN as null (pandas writes a missing float as NaN)."""
    from pyspark.sql import functions as F

    if name not in frame.columns:
        return F.lit(None).cast("double")
    value = F.col(name).cast("double")
    return F.when(~F.isnan(value), value)


def _timestamp(when: pd.Timestamp) -> Any:
    """A naive UTC timestamp as a Spark literal (the session's time zone is UTC)."""
    from pyspark.sql import functions as F

    return F.lit(pd.Timestamp(when).to_pydatetime())


def filled_columns(frame: DataFrame, columns: Sequence[str]) -> set[str]:
    """Those of ``columns`` that ``frame`` has with a value in at least one row: one pass
    counting each column's values (a float's NaN as none, as pandas)."""
    from pyspark.sql import functions as F

    present = [c for c in columns if c in frame.columns]
    if not present:
        return set()
    types = dict(frame.dtypes)
    counts = frame.agg(*(
        F.count(_number(frame, c) if types[c] in ("double", "float") else F.col(c)).alias(c)
        for c in present)).first()
    return {c for c in present if counts is not None and counts[c] > 0}


class SparkClvAggregates:
    """The aggregations of canonical order lines ``orders`` (a Spark DataFrame)."""

    def __init__(self, spark: SparkSession, orders: DataFrame) -> None:
        self.spark = spark
        self.orders = orders

    def filled_columns(self, columns: Sequence[str]) -> set[str]:
        return filled_columns(self.orders, columns)

    def _catalog(self, catalog: pd.DataFrame | None, columns: list[str]) -> DataFrame | None:
        """product_id and those of ``columns`` (price, margin: numbers; category: text) the
        catalog has (None without any)."""
        from pyspark.sql import functions as F

        present = [c for c in columns if catalog is not None and c in catalog]
        if catalog is None or not present:
            return None
        table = pd.DataFrame({"product_id": catalog["product_id"].astype("string")})
        for column in present:
            table[column] = (catalog[column].astype("string") if column == "category"
                             else catalog[column].to_numpy(np.float64, na_value=np.nan))
        schema = ", ".join(["product_id string", *(
            f"{c} {'string' if c == 'category' else 'double'}" for c in present)])
        return F.broadcast(self.spark.createDataFrame(to_spark_pandas(table), schema))

    def _priced(self, catalog: pd.DataFrame | None) -> DataFrame:
        """The lines with ``price`` (unit price, else the catalog's) and ``qty`` (1 if none)."""
        from pyspark.sql import functions as F

        # _row: the line's place in the file (Spark keeps a file's order in its row ids)
        lines = (self.orders.withColumn("_row", F.monotonically_increasing_id())
                 .withColumn("_paid", _number(self.orders, "unit_price")))
        listed = self._catalog(catalog, ["price"])
        if listed is not None:
            lines = lines.join(listed.withColumnRenamed("price", "_listed"), "product_id", "left")
            lines = lines.withColumn("_paid", F.coalesce("_paid", _number(lines, "_listed")))
        quantity = (F.coalesce(_number(lines, "quantity"), F.lit(1.0)) if "quantity" in lines.columns
                    else F.lit(1.0))
        return lines.withColumn("price", F.col("_paid")).withColumn("qty", quantity)

    def order_table(self, catalog: pd.DataFrame | None, *, as_of: pd.Timestamp | None,
                    use_margin: bool) -> OrderTable:
        """recsys.analytics.clv.order_table, aggregated on Spark."""
        from pyspark.sql import functions as F

        lines = self._priced(catalog)
        known = F.col("customer_id").isNotNull() & F.col("ordered_at").isNotNull()
        row = lines.agg(F.count(F.lit(1)).alias("n"),
                        F.count("price").alias("priced"),
                        F.sum(F.col("customer_id").isNull().cast("long")).alias("without"),
                        F.max(F.when(known, F.col("ordered_at"))).alias("newest")).first()
        assert row is not None
        if row["priced"] == 0:
            raise InputError("orders: customer value needs prices, but no order line has a "
                             "unit_price and the catalog gives none; map unit_price in the "
                             "orders source or price in the catalog")
        end = pd.Timestamp(as_of) if as_of is not None else pd.Timestamp(row["newest"]) \
            if row["newest"] is not None else None
        if end is None:
            raise InputError("orders: no order line has both a customer_id and an ordered_at; "
                             "customer analytics needs registered customers with order dates")
        if end.tzinfo is not None:  # canonical timestamps are naive UTC
            end = end.tz_convert("UTC").tz_localize(None)
        lines = lines.withColumn("revenue", F.col("qty") * F.coalesce("price", F.lit(0.0)))
        after = known & (F.col("ordered_at") > _timestamp(end))
        used = lines.filter(known & ~after)
        margins = self._catalog(catalog, ["margin"]) if use_margin else None
        has_margin = margins is not None and catalog is not None and \
            bool(catalog["margin"].notna().any())
        if has_margin and margins is not None:
            used = used.join(margins, "product_id", "left")
            used = used.withColumn("margin", _number(used, "margin"))
        else:
            used = used.withColumn("margin", F.lit(None).cast("double"))
        covered = F.when(F.col("margin").isNotNull(), F.col("revenue"))
        sums = lines.agg(F.sum(after.cast("long")).alias("after")).first()
        totals = used.agg(F.count(F.lit(1)).alias("used"), F.sum("revenue").alias("total"),
                          F.sum(covered).alias("covered"),
                          F.sum(covered * F.col("margin")).alias("weighted")).first()
        assert sums is not None and totals is not None
        if totals["used"] == 0:
            raise InputError(f"orders: no order of a known customer on or before {end}")
        covered_sum = float(totals["covered"] or 0.0)
        margin_known = has_margin and covered_sum > 0
        if margin_known:
            mean_margin = float(totals["weighted"]) / covered_sum
            total = float(totals["total"])
            coverage = covered_sum / total if total > 0 else 0.0
            profit = F.col("revenue") * F.coalesce("margin", F.lit(mean_margin))
        else:
            coverage, profit = 0.0, F.col("revenue")
        per_order = used.groupBy("order_id").agg(
            F.min_by("customer_id", "_row").alias("customer_id"),
            F.min("ordered_at").alias("ordered_at"), F.sum("revenue").alias("revenue"),
            F.sum(profit).alias("profit"))
        table = pd.DataFrame(per_order.toPandas())
        table = pd.DataFrame({
            "order_id": table["order_id"].astype(object).to_numpy(),
            "customer_id": table["customer_id"].astype(object).to_numpy(),
            "ordered_at": table["ordered_at"].to_numpy("datetime64[us]"),
            "revenue": table["revenue"].to_numpy(np.float64),
            "profit": table["profit"].to_numpy(np.float64)})
        table = round_values(table, margin_known).sort_values(["customer_id", "ordered_at", "order_id"], kind="stable")
        return OrderTable(orders=table.reset_index(drop=True), end=end,
                          lines_used=int(totals["used"]),
                          lines_without_customer=int(row["without"] or 0),
                          lines_after_end=int(sums["after"] or 0), margin_known=margin_known,
                          margin_coverage=coverage)

    def _known(self, end: pd.Timestamp) -> DataFrame:
        from pyspark.sql import functions as F

        return self.orders.filter(F.col("customer_id").isNotNull()
                                  & F.col("ordered_at").isNotNull()
                                  & (F.col("ordered_at") <= _timestamp(end)))

    def customer_products(self, end: pd.Timestamp) -> pd.DataFrame:
        """recsys.analytics.aggregates.customer_products of the known lines up to ``end``."""
        from pyspark.sql import Window
        from pyspark.sql import functions as F

        keys = ["customer_id", "product_id"]
        lines = self._known(end).select(
            F.col("customer_id").cast("string"), F.col("product_id").cast("string"),
            "order_id", "ordered_at",
            F.datediff(F.to_date("ordered_at"), F.lit("1970-01-01")).alias("day"))
        pairs = lines.groupBy(*keys).agg(
            F.count(F.lit(1)).alias("lines"), F.countDistinct("order_id").alias("orders"),
            F.max("ordered_at").alias("last_ordered_at"))
        days = lines.select(*keys, "day").distinct()
        gaps = days.withColumn("gap", F.col("day") - F.lag("day").over(
            Window.partitionBy(*keys).orderBy("day")))
        per = gaps.groupBy(*keys).agg(
            F.count(F.lit(1)).alias("purchase_days"), F.max("day").alias("last_day"),
            F.count("gap").alias("gaps"), F.percentile("gap", F.lit(0.5)).alias("median_gap"))
        table = pd.DataFrame(pairs.join(per, keys).toPandas())
        out = pd.DataFrame({key: table[key].astype("string") for key in keys})
        for column in ("lines", "orders", "purchase_days", "last_day", "gaps"):
            out[column] = table[column].to_numpy(np.int64)
        out["last_ordered_at"] = table["last_ordered_at"].to_numpy("datetime64[us]")
        out["median_gap"] = table["median_gap"].to_numpy(np.float64, na_value=np.nan)
        return out[list(PAIR_COLUMNS)]

    def repurchase_cycles(self, end: pd.Timestamp) -> pd.DataFrame:
        """recsys.repurchase.repurchase_cycles (its default thresholds) on Spark."""
        from pyspark.sql import functions as F

        known = self._known(end)
        products = pd.DataFrame(known.select(F.col("product_id").cast("string")).distinct()
                                .toPandas())
        items = Vocabulary.from_ids(products["product_id"].astype(str), sort=True)
        return repurchase_cycles_on_spark(self.spark, known, items, min_intervals=MIN_INTERVALS,
                                          min_repeat_share=MIN_REPEAT_SHARE)

    def price_aggregates(self, catalog: pd.DataFrame | None,
                         segments: pd.DataFrame) -> PriceAggregates:
        """recsys.analytics.pricing.price_aggregates, aggregated on Spark."""
        from pyspark.sql import functions as F

        lines = self._priced(catalog)
        has_list = "list_price" in lines.columns and "unit_price" in lines.columns
        flags = lines.agg(F.count(_number(lines, "discount")).alias("discount"),
                          F.count(_number(lines, "list_price")).alias("list")).first()
        assert flags is not None
        has_discount, has_list = flags["discount"] > 0, has_list and flags["list"] > 0
        discounted = F.lit(False)
        if has_discount:
            discounted = discounted | (F.coalesce(_number(lines, "discount"), F.lit(0.0)) > 0)
        if has_list:
            discounted = discounted | F.coalesce(
                _number(lines, "unit_price") < _number(lines, "list_price"), F.lit(False))
        category = self._catalog(catalog, ["category"])
        if category is not None:
            lines = lines.join(category, "product_id", "left")
        else:
            lines = lines.withColumn("category", F.lit(None).cast("string"))
        lines = (lines.filter(F.col("customer_id").isNotNull() & F.col("price").isNotNull())
                 .select(F.col("customer_id").cast("string"), "order_id",
                         F.coalesce(F.col("category").cast("string"),
                                    F.lit("(none)")).alias("category"),
                         "price", (F.col("price") * F.col("qty")).alias("revenue"),
                         discounted.alias("discounted")))
        terciles = lines.groupBy("category").agg(
            F.percentile("price", F.lit(1 / 3)).alias("_low"),
            F.percentile("price", F.lit(2 / 3)).alias("_high"))
        named = self.spark.createDataFrame(to_spark_pandas(pd.DataFrame(
            {"customer_id": segments["customer_id"].astype(str).astype(object),
             "segment": segments["segment"].astype(str).astype(object)})),
            "customer_id string, segment string")
        lines = (lines.join(terciles, "category")
                 .withColumn("band", F.when(F.col("price") <= F.col("_low"), "low")
                             .when(F.col("price") <= F.col("_high"), "mid").otherwise("high"))
                 .withColumn("discount_revenue",
                             F.when(F.col("discounted"), F.col("revenue")).otherwise(0.0))
                 .join(F.broadcast(named), "customer_id", "left")
                 .withColumn("segment", F.coalesce("segment", F.lit("(none)"))).cache())
        try:
            sums = [F.count(F.lit(1)).alias("lines"), F.sum("revenue").alias("revenue"),
                    F.sum("discount_revenue").alias("discount_revenue"),
                    F.percentile("price", F.lit(0.5)).alias("median_unit_price"),
                    *(F.sum(F.when(F.col("band") == band, F.col("revenue")).otherwise(0.0))
                      .alias(band) for band in BANDS)]
            by_category = pd.DataFrame(lines.groupBy("segment", "category").agg(*sums).toPandas())
            by_segment = pd.DataFrame(lines.groupBy("segment").agg(*sums).toPandas())
            customers = pd.DataFrame(lines.groupBy("customer_id").agg(
                F.countDistinct("order_id").alias("orders"), F.sum("revenue").alias("revenue"),
                F.sum("discount_revenue").alias("discount_revenue"),
                F.count(F.lit(1)).alias("lines"),
                F.sum(F.col("discounted").cast("long")).alias("discounted_lines")).toPandas())
        finally:
            lines.unpersist()
        return PriceAggregates(by_category=by_category, by_segment=by_segment,
                               customers=customers, known=bool(has_discount or has_list))
