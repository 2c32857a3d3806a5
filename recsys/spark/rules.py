"""Frequent itemsets counted on Spark (Spark SQL joins and group-bys), with the local miner's
exact semantics; the rules, measures and redundancy pruning then come from the local code
(``recsys.rules.mining.rules_from_itemsets``) on the collected frequent itemsets, which are
small next to the order lines.

Level-wise (Apriori): an order counts an itemset once; level k joins each order's frequent
(k-1)-itemsets with its larger items, keeps the candidates whose (k-1)-subsets are all
frequent (generated on the driver and broadcast) and keeps those in at least ``min_count``
orders. Thresholds are integers: ``ceil(min_support x N)`` orders, confidence and lift
compared as exact fractions. No floating-point threshold is applied on Spark.

``SparkRuleInputs`` gives the rules job (``recsys.rules.job.RuleInputs``) everything it reads
of the order lines from a Spark DataFrame: the product and category itemsets counted here,
the order x product matrix as integer codes and the median unit price per product.
"""

from __future__ import annotations

import logging
from itertools import combinations
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.rules.filters import product_categories
from recsys.rules.itemsets import FrequentItemsets
from recsys.rules.mining import (
    DEFAULT_MAX_BASKET_ITEMS,
    MiningResult,
    check_settings,
    min_count_of,
    rules_from_itemsets,
)
from recsys.spark.ingest import to_spark_pandas
from recsys.vocab import Vocabulary

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

__all__ = ["mine_on_spark", "frequent_itemsets_on_spark", "SparkRuleInputs"]

log = logging.getLogger(__name__)


def mine_on_spark(spark: SparkSession, orders: pd.DataFrame | DataFrame, *,
                  min_support: float | None = None, min_count: int | None = None,
                  min_confidence: float = 0.0, min_lift: float | None = None, max_len: int = 2,
                  multi_consequent: bool = False,
                  max_basket_items: int | None = DEFAULT_MAX_BASKET_ITEMS,
                  significance: bool = True, prune_redundant: bool = False,
                  max_p_value: float | None = None, max_per_antecedent: int | None = None,
                  max_itemsets: int | None = None, max_rules: int | None = None) -> MiningResult:
    """``recsys.rules.mining.mine`` with the counting on Spark: the same rules and counts.
    Past ``max_itemsets`` the count threshold rises to the smallest that fits (the local
    miner doubles it and counts again: both warn)."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    check_settings(max_len=max_len, min_confidence=min_confidence, min_lift=min_lift,
                   significance=significance, max_p_value=max_p_value,
                   max_per_antecedent=max_per_antecedent, max_itemsets=max_itemsets,
                   max_rules=max_rules, prune_redundant=prune_redundant,
                   multi_consequent=multi_consequent)
    lines = _as_spark(spark, orders).select("order_id", "product_id")
    items = _vocabulary(lines)
    codes = spark.createDataFrame(to_spark_pandas(pd.DataFrame(
        {"product_id": pd.Series(items.ids).astype(object),
         "item": np.arange(len(items), dtype=np.int32)})))
    baskets = (lines.join(F.broadcast(codes), "product_id").select("order_id", "item")
               .distinct())
    baskets = baskets.persist(StorageLevel.MEMORY_AND_DISK)
    # one pass: the orders, and those over max_basket_items (left out)
    sizes = baskets.groupBy("order_id").agg(F.count(F.lit(1)).alias("size"))
    limit = max_basket_items if max_basket_items is not None else np.iinfo(np.int64).max
    row = sizes.agg(F.count(F.lit(1)).alias("orders"),
                    F.count(F.when(F.col("size") > limit, 1)).alias("big")).first()
    n_all, baskets_excluded = (int(row["orders"]), int(row["big"])) if row else (0, 0)
    lines_excluded = 0
    if baskets_excluded:
        big = sizes.filter(F.col("size") > limit).select("order_id")
        lines_excluded = lines.join(big, "order_id", "left_semi").count()
        kept = baskets.join(big, "order_id", "left_anti").persist(StorageLevel.MEMORY_AND_DISK)
        baskets.unpersist()
        baskets = kept
    n = n_all - baskets_excluded
    threshold = min_count_of(min_support, min_count, n)
    fi = frequent_itemsets_on_spark(spark, baskets, n, threshold, max_len)
    baskets.unpersist()
    warnings: list[str] = []
    if max_itemsets is not None and len(fi.counts) > max_itemsets:
        count = int(np.sort(fi.counts)[::-1][max_itemsets]) + 1
        message = (f"{len(fi.counts):,} frequent itemsets at {threshold:,} orders exceed "
                   f"max_itemsets {max_itemsets:,}; itemsets now need {count:,} orders")
        log.warning(message)
        warnings.append(message)
        fi = fi.at_least(count)
    return rules_from_itemsets(
        fi, items, min_confidence=min_confidence, min_lift=min_lift, max_len=max_len,
        multi_consequent=multi_consequent, significance=significance,
        prune_redundant=prune_redundant, max_p_value=max_p_value,
        max_per_antecedent=max_per_antecedent, max_rules=max_rules, requested=threshold,
        warnings=warnings, baskets_excluded=baskets_excluded, lines_excluded=lines_excluded,
        max_basket_items=max_basket_items)


class SparkRuleInputs:
    """The rules job's inputs from the order lines ``orders`` of a Spark DataFrame."""

    def __init__(self, spark: SparkSession, orders: DataFrame) -> None:
        self.spark, self.orders = spark, orders

    def mine(self, **thresholds: Any) -> MiningResult:
        return mine_on_spark(self.spark, self.orders, **thresholds)

    def mine_categories(self, catalog: pd.DataFrame, depth: int | None,
                        **thresholds: Any) -> tuple[MiningResult, int]:
        """The lines joined with each product's category (cut on the driver, one row per
        catalog product), mined on Spark; and the lines left without a category."""
        from pyspark.sql import functions as F

        category = product_categories(catalog, depth).dropna()
        categories = self.spark.createDataFrame(to_spark_pandas(pd.DataFrame({
            "product_id": category.index.astype(str).astype(object),
            "category": category.astype(str).astype(object).to_numpy()})),
            "product_id string, category string")
        lines = self.orders.select("order_id", F.col("product_id").cast("string"))
        known = lines.join(F.broadcast(categories), "product_id").select(
            "order_id", F.col("category").alias("product_id"))
        uncategorised = lines.join(F.broadcast(categories), "product_id", "left_anti").count()
        return mine_on_spark(self.spark, known, **thresholds), int(uncategorised)

    def baskets(self, items: Vocabulary) -> sp.csr_matrix:
        """Each order's distinct product codes, grouped on Spark; the driver gets one
        (order number, code) pair per non-zero (order numbers: Spark's row ids, made
        contiguous here)."""
        from pyspark.sql import functions as F

        from recsys.spark.neighbours import item_codes

        grouped = (self.orders.select(F.col("product_id").cast("string"), "order_id")
                   .join(F.broadcast(item_codes(self.spark, items)), "product_id")
                   .groupBy("order_id").agg(F.collect_set("item").alias("items"))
                   .withColumn("row", F.monotonically_increasing_id())  # one per order
                   .select("row", F.explode("items").alias("item")))
        table = pd.DataFrame(grouped.toPandas())
        rows = np.unique(table["row"].to_numpy(np.int64), return_inverse=True)[1]
        matrix = sp.csr_matrix((np.ones(len(rows), np.int32),
                                (rows.astype(np.int32), table["item"].to_numpy(np.int32))),
                               shape=(int(rows.max(initial=-1)) + 1, len(items)))
        matrix.sort_indices()
        return matrix

    def median_prices(self) -> pd.Series | None:
        """Exact medians as pandas takes them: the middle price, or (a + b) / 2 of the two
        middle ones (Spark's ``percentile`` interpolates a + (b - a) / 2, which differs in
        the last bit); NaN prices left out, as pandas leaves them out."""
        from pyspark.sql import functions as F

        if "unit_price" not in self.orders.columns:
            return None
        price = F.col("unit_price").cast("double")
        sorted_prices = (self.orders.select(F.col("product_id").cast("string"),
                                            F.when(~F.isnan(price), price).alias("p"))
                         .groupBy("product_id").agg(F.sort_array(F.collect_list("p")).alias("s"))
                         .withColumn("n", F.size("s")))
        # element_at counts from 1: the middle is n // 2 + 1 (odd n), n // 2 and n // 2 + 1
        upper = F.element_at("s", (F.col("n") / 2).cast("int") + 1)
        lower = F.element_at("s", F.greatest((F.col("n") / 2).cast("int"), F.lit(1)))
        median = F.when(F.col("n") == 0, F.lit(None).cast("double")).when(
            F.col("n") % 2 == 1, upper).otherwise((lower + upper) / 2)
        table = pd.DataFrame(sorted_prices.select("product_id", median.alias("median"))
                             .toPandas())
        return pd.Series(table["median"].to_numpy(np.float64, na_value=np.nan),
                         index=pd.Index(table["product_id"], dtype="string"), name="unit_price")


def frequent_itemsets_on_spark(spark: SparkSession, baskets: DataFrame, n_orders: int,
                               min_count: int, max_len: int) -> FrequentItemsets:
    """Itemsets of 1..max_len items in >= ``min_count`` orders; ``baskets`` holds distinct
    (order_id, item) rows with int item codes. Rows sorted by length, then by codes."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    singles = pd.DataFrame(baskets.groupBy("item").agg(F.count(F.lit(1)).alias("count"))
                           .filter(F.col("count") >= min_count).toPandas()
                           ).sort_values("item")
    levels = [(singles[["item"]].to_numpy(np.int32), singles["count"].to_numpy(np.int64))]
    # each order's items that are frequent on their own, as i0 (the first column of a set)
    occurrences = baskets.join(F.broadcast(spark.createDataFrame(
        to_spark_pandas(singles[["item"]]))), "item", "left_semi").withColumnRenamed("item", "i0")
    occurrences = occurrences.persist(StorageLevel.MEMORY_AND_DISK)
    items_of_orders = occurrences.withColumnRenamed("i0", "next")  # kept to the last level
    first = occurrences
    for k in range(2, max_len + 1):
        cols = [f"i{j}" for j in range(k)]
        grown = (occurrences.join(items_of_orders, "order_id")
                 .filter(F.col("next") > F.col(f"i{k - 2}"))
                 .withColumnRenamed("next", f"i{k - 1}"))
        if k > 2:  # pairs: both items frequent is the only test (every pair is a candidate)
            candidates = _apriori_candidates(levels[-1][0])
            if not len(candidates):
                break
            cand = spark.createDataFrame(to_spark_pandas(pd.DataFrame(candidates, columns=cols)))
            grown = grown.join(F.broadcast(cand), cols, "left_semi")
        if k < max_len:  # counted here, then filtered for the next level: computed once
            grown = grown.persist(StorageLevel.MEMORY_AND_DISK)
        counted = pd.DataFrame(grown.groupBy(*cols).agg(F.count(F.lit(1)).alias("count"))
                               .filter(F.col("count") >= min_count).toPandas())
        if counted.empty:
            grown.unpersist()
            break
        counted = counted.sort_values(cols, kind="stable")
        levels.append((counted[cols].to_numpy(np.int32), counted["count"].to_numpy(np.int64)))
        if k < max_len:
            frequent = spark.createDataFrame(to_spark_pandas(counted[cols]))
            following = grown.join(F.broadcast(frequent), cols, "left_semi").persist(
                StorageLevel.MEMORY_AND_DISK)
            following.count()  # materialised before its sources are let go
            grown.unpersist()
            if occurrences is not first:
                occurrences.unpersist()
            occurrences = following
    occurrences.unpersist()
    first.unpersist()
    return _padded(levels, max_len, n_orders, min_count)


def _apriori_candidates(frequent: np.ndarray) -> np.ndarray:
    """(m, k+1) candidates from sorted frequent k-itemsets (m', k): two sets sharing their
    first k-1 items make one candidate, kept when every k-subset is frequent."""
    k = frequent.shape[1]
    known = {tuple(row) for row in frequent.tolist()}
    by_prefix: dict[tuple[int, ...], list[int]] = {}
    for row in frequent.tolist():  # the frequent itemsets, far fewer than the order lines
        by_prefix.setdefault(tuple(row[:-1]), []).append(row[-1])
    out = []
    for prefix, lasts in by_prefix.items():
        for a, b in combinations(sorted(lasts), 2):
            cand = (*prefix, a, b)
            if all(tuple(sub) in known for sub in combinations(cand, k)):
                out.append(cand)
    return np.array(out, dtype=np.int32).reshape(-1, k + 1)


def _padded(levels: list[tuple[np.ndarray, np.ndarray]], width: int, n_orders: int,
            min_count: int) -> FrequentItemsets:
    items = [np.pad(sets, ((0, 0), (0, width - sets.shape[1])), constant_values=-1)
             for sets, _ in levels]
    return FrequentItemsets(
        items=np.concatenate(items).astype(np.int32),
        lengths=np.concatenate([np.full(len(s), s.shape[1], np.int8) for s, _ in levels]),
        counts=np.concatenate([c for _, c in levels]).astype(np.int64),
        n_orders=n_orders, min_count=min_count)


def _as_spark(spark: SparkSession, orders: Any) -> DataFrame:
    """A Spark frame of (order_id, product_id): given, or from the driver's pandas frame."""
    if isinstance(orders, pd.DataFrame):
        frame = orders[["order_id", "product_id"]].astype(object)
        return spark.createDataFrame(to_spark_pandas(frame), "order_id string, product_id string")
    return orders


def _vocabulary(lines: DataFrame) -> Vocabulary:
    """The products of the order lines, sorted as the local miner sorts them."""
    ids = pd.DataFrame(lines.select("product_id").distinct().toPandas())["product_id"]
    _, uniques = pd.factorize(ids.astype("string"), sort=True)
    return Vocabulary(pd.Index(uniques, dtype="string"))
