"""Best sellers: exact distinct-order counts per scope, against brute force."""

from __future__ import annotations

from collections import defaultdict

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from recsys.popularity import GLOBAL_SCOPE, best_sellers, category_ancestors

CATEGORIES = ["A > B > C", "A > B", "A > D", "E", None]


@given(st.lists(st.tuples(st.integers(0, 20), st.integers(0, 7), st.integers(1, 3)),
                min_size=1, max_size=60),
       st.integers(1, 5))
@settings(max_examples=60, deadline=None)
def test_counts_and_ranks_match_brute_force(lines: list[tuple[int, int, int]], top_k: int) -> None:
    orders = pd.DataFrame({"order_id": [f"o{o}" for o, _, _ in lines],
                           "product_id": [f"p{p}" for _, p, _ in lines],
                           "quantity": [float(q) for *_, q in lines]})
    catalog = pd.DataFrame({"product_id": [f"p{i}" for i in range(8)],
                            "category": [CATEGORIES[i % len(CATEGORIES)] for i in range(8)]})
    table = best_sellers(orders, catalog, window_days=0, top_k=top_k)

    baskets: dict[str, set[str]] = defaultdict(set)
    units: dict[str, float] = defaultdict(float)
    for o, p, q in lines:
        baskets[f"p{p}"].add(f"o{o}")
        units[f"p{p}"] += q
    scopes: dict[str, list[str]] = defaultdict(list)
    for pid in baskets:
        scopes[GLOBAL_SCOPE].append(pid)
        cat = CATEGORIES[int(pid[1:]) % len(CATEGORIES)]
        if cat:
            parts = cat.split(" > ")
            for depth in range(1, len(parts) + 1):
                scopes[" > ".join(parts[:depth])].append(pid)
    assert set(table["scope"]) == set(scopes)
    for scope, pids in scopes.items():
        expected = sorted(pids, key=lambda p: (-len(baskets[p]), -units[p], p))[:top_k]
        got = table[table["scope"] == scope].sort_values("rank")
        assert got["product_id"].tolist() == expected
        assert got["orders"].tolist() == [len(baskets[p]) for p in expected]
        assert got["rank"].tolist() == list(range(1, len(expected) + 1))


def test_window_counts_only_recent_orders() -> None:
    t = pd.Timestamp("2025-06-01")
    orders = pd.DataFrame({"order_id": ["1", "2", "3"], "product_id": ["old", "old", "new"],
                           "quantity": [1.0, 1.0, 1.0],
                           "ordered_at": [t - pd.Timedelta(days=200), t - pd.Timedelta(days=100), t]})
    table = best_sellers(orders, None, window_days=30, top_k=10)
    assert table["product_id"].tolist() == ["new"]
    assert best_sellers(orders, None, window_days=0, top_k=10)["product_id"].tolist() == ["old", "new"]


def test_category_ancestors() -> None:
    anc = category_ancestors(pd.Series(["A > B > C", None, "X"]))
    assert sorted(map(tuple, anc[["row", "scope"]].to_numpy().tolist())) == [
        (0, "A"), (0, "A > B"), (0, "A > B > C"), (2, "X")]
