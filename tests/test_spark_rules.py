"""Rules on Spark (local[2]): the same rules with the same counts as the local miner, on
random baskets with a known brute-force answer and on Online Retail II at two settings."""

from __future__ import annotations

from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from recsys.ingest import ingest, load_table
from recsys.mapping import load_mapping
from recsys.rules.mining import mine
from recsys.spark.rules import mine_on_spark
from tests.conftest import REPO


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


def canonical(rules: pd.DataFrame) -> pd.DataFrame:
    """Rules as a sortable frame: the lists as tuples, every column compared."""
    out = rules.assign(**{c: tuples(rules[c]) for c in rules.columns
                          if c.startswith(("antecedent", "consequent"))
                          and not c.endswith("_count")})
    return out.sort_values(["antecedents", "consequents"]).reset_index(drop=True)


def assert_same(local: Any, spark: Any) -> None:
    pd.testing.assert_frame_equal(canonical(spark.rules), canonical(local.rules))
    assert spark.report == local.report
    pd.testing.assert_frame_equal(
        spark.itemsets.assign(items=tuples(spark.itemsets["items"]))
        .sort_values("items").reset_index(drop=True),
        local.itemsets.assign(items=tuples(local.itemsets["items"]))
        .sort_values("items").reset_index(drop=True))


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
