"""Frequent itemsets against brute-force enumeration (Hypothesis): identical sets and counts."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from unittest.mock import patch

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from recsys.rules import itemsets as itemsets_module
from recsys.rules.itemsets import frequent_itemsets
from recsys.rules.job import run_rules_job
from recsys.rules.settings import RulesConfig

baskets_strategy = st.lists(st.sets(st.integers(0, 11), max_size=9), min_size=1, max_size=70)


def _matrix(baskets: list[set[int]], n_items: int = 12) -> sp.csr_matrix:
    rows = [r for r, b in enumerate(baskets) for _ in b]
    cols = [c for b in baskets for c in b]
    return sp.csr_matrix((np.ones(len(rows), np.int32), (rows, cols)),
                         shape=(len(baskets), n_items))


def _brute(baskets: list[set[int]], min_count: int, max_len: int) -> dict[tuple[int, ...], int]:
    counts: dict[tuple[int, ...], int] = {}
    for basket in baskets:
        for k in range(1, max_len + 1):
            for combo in itertools.combinations(sorted(basket), k):
                counts[combo] = counts.get(combo, 0) + 1
    return {c: n for c, n in counts.items() if n >= min_count}


def _as_dict(result: itemsets_module.FrequentItemsets) -> dict[tuple[int, ...], int]:
    out = {}
    for row, length, count in zip(result.items, result.lengths, result.counts, strict=True):
        key = tuple(int(x) for x in row[:length])
        assert key not in out, f"itemset {key} listed twice"
        assert list(key) == sorted(key) and all(x >= 0 for x in key)
        assert all(x == -1 for x in row[length:])
        out[key] = int(count)
    return out


@given(baskets_strategy, st.integers(1, 6), st.integers(1, 6))
@settings(max_examples=150, deadline=None)
def test_matches_brute_force(baskets: list[set[int]], min_count: int, max_len: int) -> None:
    result = frequent_itemsets(_matrix(baskets), min_count, max_len)
    assert _as_dict(result) == _brute(baskets, min_count, max_len)
    assert result.n_orders == len(baskets)


@given(baskets_strategy, st.integers(1, 4))
@settings(max_examples=40, deadline=None)
def test_sparse_pair_path_matches_brute_force(baskets: list[set[int]], min_count: int) -> None:
    """The sparse X^T X pair counting that very large catalogues use."""
    with patch.object(itemsets_module, "DENSE_PAIR_LIMIT", 0):
        result = frequent_itemsets(_matrix(baskets), min_count, 4)
    assert _as_dict(result) == _brute(baskets, min_count, 4)


def test_an_order_counts_an_itemset_once() -> None:
    x = sp.csr_matrix(np.array([[3, 2, 0], [1, 1, 1]], dtype=np.int32))  # repeated lines
    result = _as_dict(frequent_itemsets(x, 1, 3))
    assert result[(0, 1)] == 2 and result[(0, 1, 2)] == 1 and result[(0,)] == 2


def test_long_baskets_over_many_orders() -> None:
    """Bitsets wider than one 64-bit word (projected onto > 64 orders) stay exact."""
    rng = np.random.default_rng(3)
    baskets = [set(rng.choice(12, size=rng.integers(1, 10), replace=False).tolist())
               for _ in range(500)]
    result = frequent_itemsets(_matrix(baskets), 40, 5)
    assert _as_dict(result) == _brute(baskets, 40, 5)


def test_bad_thresholds() -> None:
    with pytest.raises(ValueError):
        frequent_itemsets(_matrix([{1}]), 0, 2)
    with pytest.raises(ValueError):
        frequent_itemsets(_matrix([{1}]), 1, 0)


def test_max_itemsets_stops_the_search() -> None:
    """The bound counts itemsets of 3+ products exactly: at it the result is complete, one
    below it the search stops with TooManyItemsets."""
    baskets = [set(range(8))] * 3  # every subset of 8 items is in 3 orders
    long = sum(1 for k in range(3, 5) for _ in itertools.combinations(range(8), k))
    result = frequent_itemsets(_matrix(baskets), 2, 4, max_itemsets=long)
    assert _as_dict(result) == _brute(baskets, 2, 4)
    with pytest.raises(itemsets_module.TooManyItemsets, match=f"more than {long - 1}"):
        frequent_itemsets(_matrix(baskets), 2, 4, max_itemsets=long - 1)


def test_bundles_raise_their_count_instead_of_filling_the_memory(tmp_path: Path) -> None:
    """Orders of 12 products at a count of 1: millions of itemsets. The bundle step doubles
    its count until the itemsets fit the bound and says so in the report."""
    rng = np.random.default_rng(0)
    lines = [(f"o{o}", f"p{p}") for o in range(400)
             for p in rng.choice(60, size=12, replace=False)]
    orders = pd.DataFrame(lines, columns=["order_id", "product_id"]).astype("string")
    orders["unit_price"] = 2.0
    config = RulesConfig.model_validate({"min_count": 1, "max_len": 2, "category_depth": 0,
                                         "significance": False,
                                         "bundles": {"min_count": 1, "max_itemsets": 5000}})
    run_rules_job(orders, None, None, config, tmp_path)
    report = json.loads((tmp_path / "rules_report.json").read_text())
    assert report["bundle_min_count"] > 1
    assert len(pd.read_parquet(tmp_path / "bundles.parquet")) > 0
