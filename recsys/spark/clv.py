"""The customer-value job's line-level aggregations on Spark (``ClvAggregates`` of
recsys.analytics.aggregates): the driver receives one row per customer (the facts of
recsys.analytics.facts, made by the local code on the executors from each customer's orders),
one per bought (customer, product) (the action lists), one per product (repurchase cycles),
one per (cohort, month) and one per customer or per (segment, category) (pricing); never the
order lines nor one row per order. Sums are Spark's (in its summation order: order values
agree with the local ones once rounded, recsys.analytics.clv.VALUE_DECIMALS); counts, minima,
maxima and the exact ``percentile`` medians and terciles are those of the local code.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from recsys.analytics.aggregates import PAIR_COLUMNS, BoughtCodes, PairFilter
from recsys.analytics.clv import LineUse, round_values
from recsys.analytics.facts import FACT_COLUMNS, CustomerFacts, customer_facts
from recsys.analytics.pricing import BANDS, PriceAggregates
from recsys.analytics.retention import GapStats, cohort_table
from recsys.analytics.settings import AnalyticsConfig
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

    def _order_rows(self, catalog: pd.DataFrame | None, *, as_of: pd.Timestamp | None,
                    use_margin: bool) -> tuple[DataFrame, LineUse]:
        """recsys.analytics.clv.order_table on Spark: its rows as a Spark DataFrame (order_id,
        customer_id, ordered_at, revenue, profit; not rounded yet) and how the lines were
        used."""
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
        return per_order, LineUse(end=end, lines_used=int(totals["used"]),
                                  lines_without_customer=int(row["without"] or 0),
                                  lines_after_end=int(sums["after"] or 0),
                                  margin_known=margin_known, margin_coverage=coverage)

    def customer_facts(self, catalog: pd.DataFrame | None, *,
                       config: AnalyticsConfig) -> CustomerFacts:
        """recsys.analytics.facts of the order table, made on the executors: the orders are
        grouped by a hash of their customer (every order of a customer in one group, about
        ``GROUP_LINES`` lines a group) and each group's facts are those of
        recsys.analytics.facts.customer_facts on its orders; the cohort counts and the pooled
        gaps between orders are Spark aggregations. The driver receives one row per customer."""
        from pyspark import StorageLevel
        from pyspark.sql import functions as F

        as_of = pd.Timestamp(config.as_of) if config.as_of is not None else None
        per_order, usage = self._order_rows(catalog, as_of=as_of, use_margin=config.use_margin)
        groups = max(1, math.ceil(usage.lines_used / GROUP_LINES))
        per_order = per_order.persist(StorageLevel.MEMORY_AND_DISK)
        try:
            facts = (per_order.groupBy(F.pmod(F.xxhash64("customer_id"), F.lit(groups)))
                     .applyInPandas(_group_facts(usage.end, config, usage.margin_known),
                                    FACTS_SCHEMA))
            customers = _facts_frame(pd.DataFrame(facts.toPandas()))
            cohorts = _cohorts(per_order)
            gaps = _gaps(per_order)
        finally:
            per_order.unpersist()
        return CustomerFacts(customers=customers, cohorts=cohorts, gaps=gaps, use=usage)

    def _known(self, end: pd.Timestamp) -> DataFrame:
        from pyspark.sql import functions as F

        return self.orders.filter(F.col("customer_id").isNotNull()
                                  & F.col("ordered_at").isNotNull()
                                  & (F.col("ordered_at") <= _timestamp(end)))

    def customer_products(self, end: pd.Timestamp, *, keep: PairFilter | None = None,
                          columns: Sequence[str] = PAIR_COLUMNS) -> pd.DataFrame:
        """recsys.analytics.aggregates.customer_products of the known lines up to ``end``,
        the rows ``keep`` keeps chosen on the executors (in no particular order)."""
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
        table = pairs.join(per, keys).select(*PAIR_COLUMNS)
        if keep is not None:
            table = table.mapInPandas(_kept(keep), PAIR_SCHEMA)
        return _pair_frame(pd.DataFrame(table.select(*columns).toPandas()))[list(columns)]

    def bought_codes(self, end: pd.Timestamp, rows: Vocabulary | None = None,
                     items: Vocabulary | None = None) -> BoughtCodes:
        """recsys.analytics.aggregates.bought_codes of the pairs up to ``end``, coded on the
        executors: the driver gets three numbers per pair (and, without vocabularies given,
        the distinct customers and products)."""
        from pyspark import StorageLevel
        from pyspark.sql import functions as F

        lines = self._known(end).select(F.col("customer_id").cast("string"),
                                        F.col("product_id").cast("string"))
        pairs = lines.groupBy("customer_id", "product_id").agg(
            F.count(F.lit(1)).alias("lines")).persist(StorageLevel.MEMORY_AND_DISK)
        try:
            if rows is None:
                rows = _distinct(pairs, "customer_id")
            if items is None:
                items = _distinct(pairs, "product_id")
            coded = (pairs.join(self._codes(rows, "customer_id", "row"), "customer_id", "left")
                     .join(F.broadcast(self._codes(items, "product_id", "item")), "product_id",
                           "left")
                     .select(F.coalesce("row", F.lit(-1)).alias("row"),
                             F.coalesce("item", F.lit(-1)).alias("item"), "lines"))
            table = pd.DataFrame(coded.toPandas())
        finally:
            pairs.unpersist()
        return BoughtCodes(rows=rows, items=items, row=table["row"].to_numpy(np.int64),
                           item=table["item"].to_numpy(np.int64),
                           lines=table["lines"].to_numpy(np.int64))

    def _codes(self, vocabulary: Vocabulary, key: str, code: str) -> DataFrame:
        """(key, code): each id of ``vocabulary`` with its code."""
        return self.spark.createDataFrame(to_spark_pandas(pd.DataFrame(
            {key: vocabulary.ids, code: np.arange(len(vocabulary), dtype=np.int32)})),
            f"{key} string, {code} int")

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


#: Order lines per group of customers whose facts one Python worker makes at once.
GROUP_LINES = 1_000_000
_TYPES = {"customer_id": "string", "orders": "long", "first_order": "timestamp",
          "last_order": "timestamp", "in_earlier_window": "boolean",
          "in_last_window": "boolean"}
FACTS_SCHEMA = ", ".join(f"{c} {_TYPES.get(c, 'double')}" for c in FACT_COLUMNS)


def _group_facts(end: pd.Timestamp, config: AnalyticsConfig, margin_known: bool
                 ) -> Callable[[pd.DataFrame], pd.DataFrame]:
    """recsys.analytics.facts.customer_facts of one group's orders, rounded and ordered as the
    local order table (recsys.analytics.clv.order_table)."""
    def run(orders: pd.DataFrame) -> pd.DataFrame:
        table = pd.DataFrame({
            "order_id": orders["order_id"].astype(str).to_numpy(object),
            "customer_id": orders["customer_id"].astype(str).to_numpy(object),
            "ordered_at": orders["ordered_at"].to_numpy("datetime64[us]"),
            "revenue": orders["revenue"].to_numpy(np.float64),
            "profit": orders["profit"].to_numpy(np.float64)})
        table = round_values(table, margin_known).sort_values(
            ["customer_id", "ordered_at", "order_id"], kind="stable")
        return customer_facts(table.reset_index(drop=True), end, config)

    return run


def _facts_frame(table: pd.DataFrame) -> pd.DataFrame:
    """The collected facts with the local engine's types, sorted by customer_id."""
    out = pd.DataFrame({c: table[c].to_numpy(np.float64) for c in FACT_COLUMNS
                        if _TYPES.get(c) is None})
    out.insert(0, "customer_id", table["customer_id"].astype("string"))
    out["orders"] = table["orders"].to_numpy(np.int64)
    for column in ("first_order", "last_order"):
        out[column] = table[column].to_numpy("datetime64[us]")
    for column in ("in_earlier_window", "in_last_window"):
        out[column] = table[column].to_numpy(bool)
    out = out.sort_values("customer_id", kind="stable").reset_index(drop=True)
    return out[list(FACT_COLUMNS)]


def _cohorts(orders: DataFrame) -> pd.DataFrame:
    """recsys.analytics.retention.cohort_counts of the order rows, counted on Spark."""
    from pyspark.sql import functions as F

    active = orders.select("customer_id", (F.year("ordered_at") * 12 + F.month("ordered_at")
                                           - 1).alias("month")).distinct()
    first = active.groupBy("customer_id").agg(F.min("month").alias("cohort"))
    counts = pd.DataFrame(active.join(first, "customer_id")
                          .groupBy("cohort", (F.col("month") - F.col("cohort")).alias("period"))
                          .agg(F.count(F.lit(1)).alias("customers")).toPandas())
    last = int(counts["cohort"].add(counts["period"]).max())
    return cohort_table(pd.DataFrame({c: counts[c].to_numpy(np.int64) for c in counts}), last)


def _gaps(orders: DataFrame) -> GapStats:
    """recsys.analytics.retention.gap_stats of the order rows, on Spark (``percentile`` is
    exact, as numpy's median)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    micros = F.unix_micros("ordered_at")
    previous = F.lag(micros).over(Window.partitionBy("customer_id").orderBy("ordered_at"))
    gap = (micros - previous).cast("double") / 1e6 / 86_400.0
    row = (orders.select(gap.alias("gap")).filter(F.col("gap").isNotNull())
           .agg(F.count(F.lit(1)).alias("n"), F.avg("gap").alias("mean"),
                F.percentile("gap", F.lit(0.5)).alias("median")).first())
    assert row is not None
    if row["n"] == 0:
        return GapStats(0, float("nan"), float("nan"))
    return GapStats(int(row["n"]), float(row["mean"]), float(row["median"]))


PAIR_SCHEMA = ("customer_id string, product_id string, lines long, orders long, "
               "last_ordered_at timestamp, purchase_days long, last_day long, gaps long, "
               "median_gap double")


def _distinct(pairs: DataFrame, key: str) -> Vocabulary:
    """The sorted vocabulary of ``key``'s values in ``pairs``."""
    ids = pd.DataFrame(pairs.select(key).distinct().toPandas())[key]
    return Vocabulary.from_ids(ids.astype(str), sort=True)


def _pair_frame(table: pd.DataFrame) -> pd.DataFrame:
    """Collected (customer, product) rows with the local engine's types."""
    out = pd.DataFrame({key: table[key].astype("string") for key in ("customer_id", "product_id")
                        if key in table})
    for column in ("lines", "orders", "purchase_days", "last_day", "gaps"):
        if column in table:
            out[column] = table[column].to_numpy(np.int64)
    if "last_ordered_at" in table:
        out["last_ordered_at"] = table["last_ordered_at"].to_numpy("datetime64[us]")
    if "median_gap" in table:
        out["median_gap"] = table["median_gap"].to_numpy(np.float64, na_value=np.nan)
    return out[[c for c in PAIR_COLUMNS if c in table]]


def _kept(keep: PairFilter) -> Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]:
    """The rows of each batch that ``keep`` keeps (it sees them with the local types)."""
    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            rows = _pair_frame(batch)
            yield to_spark_pandas(rows[keep(rows)])

    return run
