"""Repurchase cycles against a plain-Python computation."""

from __future__ import annotations

import statistics
from collections import defaultdict

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from recsys.repurchase import repurchase_cycles

lines = st.lists(st.tuples(st.integers(0, 6), st.integers(0, 3), st.integers(0, 90)),
                 min_size=1, max_size=120)


@given(lines, st.integers(1, 4), st.sampled_from([0.0, 0.3, 0.6]))
@settings(max_examples=80, deadline=None)
def test_cycles_match_plain_python(rows: list[tuple[int, int, int]], min_intervals: int,
                                   min_share: float) -> None:
    t0 = pd.Timestamp("2025-01-01")
    orders = pd.DataFrame({
        "order_id": [f"o{i}" for i in range(len(rows))],
        "customer_id": pd.array([f"c{c}" for c, _, _ in rows], dtype="string"),
        "product_id": pd.array([f"p{p}" for _, p, _ in rows], dtype="string"),
        "ordered_at": [t0 + pd.Timedelta(days=d, hours=3) for *_, d in rows],
    })
    got = repurchase_cycles(orders, min_intervals=min_intervals, min_repeat_share=min_share)
    days: dict[tuple[str, str], set[int]] = defaultdict(set)
    for c, p, d in rows:
        days[(f"c{c}", f"p{p}")].add(d)
    gaps: dict[str, list[int]] = defaultdict(list)
    buyers: dict[str, int] = defaultdict(int)
    repeaters: dict[str, int] = defaultdict(int)
    for (_, product), ds in days.items():
        ordered = sorted(ds)
        buyers[product] += 1
        repeaters[product] += len(ordered) > 1
        gaps[product] += [b - a for a, b in zip(ordered, ordered[1:], strict=False)]
    expected = {p: (statistics.median(g), len(g), repeaters[p] / buyers[p])
                for p, g in gaps.items()
                if len(g) >= min_intervals and repeaters[p] / buyers[p] >= min_share}
    assert set(got["product_id"]) == set(expected)
    for row in got.itertuples():
        median, count, share = expected[row.product_id]
        assert row.cycle_days == median and row.intervals == count
        assert abs(row.repeat_share - share) < 1e-12


def test_without_customers_or_dates_there_are_no_cycles() -> None:
    orders = pd.DataFrame({"order_id": ["1"], "product_id": ["a"]})
    assert repurchase_cycles(orders).empty


def test_no_usable_lines_give_no_cycles() -> None:
    """Every line without a customer or a date (or none at all): an empty table, no error."""
    orders = pd.DataFrame({"order_id": ["1", "2"], "product_id": ["a", "a"],
                           "customer_id": [None, "c"],
                           "ordered_at": pd.to_datetime(["2025-01-01", None])})
    assert list(repurchase_cycles(orders).columns) == ["product_id", "cycle_days", "intervals",
                                                       "repeat_share"]
    assert repurchase_cycles(orders.iloc[:0]).empty
