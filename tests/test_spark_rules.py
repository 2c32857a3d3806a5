"""Rules on Spark (local[2]): the same rules with the same counts as the local miner, on
random baskets with a known brute-force answer and on Online Retail II at two settings; the
rules job's other inputs (category itemsets, the order x product matrix, median prices) as
the local ones, and the whole rules job from Spark's inputs equal to the local job's files."""

from __future__ import annotations

from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from recsys.ingest import ingest, load_table
from recsys.mapping import load_mapping
from recsys.matrices import item_vocabulary
from recsys.rules.job import LineInputs, RulesConfig, run_rules_job
from recsys.rules.mining import mine
from recsys.spark.ingest import to_spark_pandas
from recsys.spark.rules import SparkRuleInputs, mine_on_spark
from tests.conftest import REPO, DemoShop


def _random_orders(seed: int, n_orders: int, n_items: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    weights = rng.pareto(1.5, n_items) + 0.1
    rows = []
    for o in range(n_orders):
        size = int(rng.integers(1, 7))
        for item in rng.choice(n_items, size=size, p=weights / weights.sum()):
            rows.append((f"o{o}", f"p{item:02d}"))  # repeated lines: an order counts once
    return pd.DataFrame(rows, columns=["order_id", "product_id"], dtype="string")


def tuples(column: pd.Series) -> pd.Series:
    """A list column as tuples (sortable, comparable)."""
    return pd.Series([tuple(v) for v in column.tolist()], index=column.index, dtype=object)


def assert_same(local: Any, spark: Any) -> None:
    """The same rules and itemsets, row for row (both in the canonical order)."""
    pd.testing.assert_frame_equal(spark.rules, local.rules)
    assert spark.report == local.report
    pd.testing.assert_frame_equal(spark.itemsets, local.itemsets)


def test_random_baskets_against_brute_force_and_local(spark_local: Any) -> None:
    orders = _random_orders(seed=3, n_orders=400, n_items=25)
    settings: dict[str, Any] = {"min_count": 4, "min_confidence": 0.25, "max_len": 3,
                                "prune_redundant": True, "max_basket_items": 5}
    local = mine(orders, **settings)
    spark = mine_on_spark(spark_local, orders, **settings)
    assert_same(local, spark)
    # brute force: every 3-itemset's count over the kept baskets
    baskets = [set(g) for _, g in orders.groupby("order_id")["product_id"]]
    kept = [b for b in baskets if len(b) <= 5]
    triples = spark.itemsets[spark.itemsets["length"] == 3]
    for items, count in zip(triples["items"].tolist(), triples["count"], strict=True):
        assert count == sum(set(items) <= b for b in kept) >= 4
    every = {t for b in kept for t in combinations(sorted(b), 3)}
    frequent = {t for t in every if sum(set(t) <= b for b in kept) >= 4}
    assert frequent == set(tuples(triples["items"]))
    assert spark.report.baskets_excluded == sum(len(b) > 5 for b in baskets)


def test_rule_inputs_equal_the_local_ones(spark_local: Any) -> None:
    """Category itemsets (a depth cut, products without a category or not in the catalog),
    the order x product matrix (up to the order of its rows) and exact median prices (even
    counts: the mean of the two middle prices; NaN prices left out)."""
    rng = np.random.default_rng(5)
    orders = _random_orders(seed=4, n_orders=300, n_items=25)
    prices = rng.choice([0.1, 0.2, 0.3, 1 / 3, 2.675, 1e6 + 0.1, np.nan], len(orders))
    orders = orders.assign(unit_price=prices)
    items = item_vocabulary(orders, pd.DataFrame({"product_id": ["zz"]}))
    catalog = pd.DataFrame({
        "product_id": [f"p{i:02d}" for i in range(22)],
        "category": pd.Series([None if i % 7 == 0 else f"C{i % 3} > S{i % 5} > T{i}"
                               for i in range(22)], dtype="string")})
    local = LineInputs(orders)
    spark = SparkRuleInputs(spark_local, spark_local.createDataFrame(to_spark_pandas(orders)))
    settings: dict[str, Any] = {"min_count": 3, "min_confidence": 0.1, "max_len": 3}
    for depth in (1, 2, None):
        (got, got_missing), (expected, missing) = (
            inputs.mine_categories(catalog, depth, **settings) for inputs in (spark, local))
        assert got_missing == missing > 0
        assert_same(expected, got)
        assert len(got.rules) > 0
    got, expected = spark.baskets(items), local.baskets(items)
    assert got.shape == expected.shape and got.dtype == expected.dtype
    assert sorted(map(tuple, got.toarray().tolist())) == sorted(
        map(tuple, expected.toarray().tolist()))
    got_prices, expected_prices = spark.median_prices(), local.median_prices()
    assert got_prices is not None and expected_prices is not None
    pd.testing.assert_series_equal(got_prices.sort_index(), expected_prices.sort_index(),
                                   check_exact=True, check_names=False, check_index_type=False)
    assert LineInputs(orders.drop(columns="unit_price")).median_prices() is None
    assert SparkRuleInputs(spark_local, spark_local.createDataFrame(to_spark_pandas(
        orders.drop(columns="unit_price")))).median_prices() is None


def test_rules_job_from_spark_inputs_writes_the_local_files(spark_local: Any,
                                                            demo_shop: DemoShop,
                                                            tmp_path: Path) -> None:
    """The whole rules job (rules, itemsets, category rules, substitutes from view events,
    bundles valued by median prices) from Spark's inputs, against the local job."""
    tables = demo_shop.tables()
    orders, events, catalog = tables["orders"], tables["events"], tables["catalog"]
    orders = orders.assign(unit_price=orders["unit_price"].where(orders.index % 5 > 0))
    catalog = catalog.drop(columns=[c for c in ("price",) if c in catalog])  # medians count
    items = item_vocabulary(catalog, orders, events)
    config = RulesConfig()
    local = run_rules_job(orders, events, catalog, config, tmp_path / "local")
    frame = spark_local.createDataFrame(to_spark_pandas(orders))
    spark = run_rules_job(SparkRuleInputs(spark_local, frame), events, catalog, config,
                          tmp_path / "spark", items=items)
    assert spark == local
    assert local["bundles"] > 0 and local["substitute_pairs"] > 0 and local["category_rules"] > 0
    for name in ("rules.parquet", "category_rules.parquet", "itemsets.parquet",
                 "bundles.parquet", "substitutes.parquet"):  # row for row
        pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "spark" / name),
                                      pd.read_parquet(tmp_path / "local" / name), obj=name)


@pytest.mark.datasets
@pytest.mark.slow
@pytest.mark.parametrize("settings", [
    {"min_support": 0.0005, "min_confidence": 0.1, "max_len": 2},
    {"min_support": 0.005, "min_confidence": 0.3, "max_len": 3, "prune_redundant": True},
], ids=["pairs-0.0005", "triples-0.005-pruned"])
def test_online_retail_ii_rules_match_the_local_miner(spark_local: Any, online_retail_path: Path,
                                                      tmp_path_factory: pytest.TempPathFactory,
                                                      settings: dict[str, Any]) -> None:
    data = tmp_path_factory.getbasetemp() / "online-retail-data"
    if not (data / "orders.parquet").exists():
        mapping = load_mapping(REPO / "configs" / "mappings" / "online_retail_ii.toml")
        ingest({"orders": str(online_retail_path)}, mapping, data, show_progress=False)
    orders = load_table(data, "orders")
    assert orders is not None
    local = mine(orders, **settings)
    spark = mine_on_spark(spark_local, orders, **settings)
    assert_same(local, spark)
    assert len(spark.rules) > 1_000  # a real rule set, not an empty agreement
