"""The per-customer facts of the customer-value job (recsys.analytics.facts): a customer's
facts depend on their own orders only, so the facts of groups of customers (as the Spark
engine makes them, a group per Python worker call) are the facts of the whole table; the
pair filters of the action lists keep exactly the pairs the lists use."""

from __future__ import annotations

import numpy as np
import pandas as pd

from recsys.analytics.actions import replenishment_due, replenishment_of_pairs
from recsys.analytics.aggregates import PAIR_COLUMNS, LineAggregates, customer_products
from recsys.analytics.clv import order_table
from recsys.analytics.facts import FACT_COLUMNS, customer_facts
from recsys.analytics.settings import ActionsConfig, AnalyticsConfig


def _lines(seed: int = 3, n: int = 3_000) -> pd.DataFrame:
    """Random lines over two years: 300 customers with about 3 orders each, 200 with one;
    several orders on one day, orders minutes apart."""
    rng = np.random.default_rng(seed)
    order = rng.integers(0, 1_200, n)
    start = pd.Timestamp("2023-01-01")
    day = rng.integers(0, 730, 1_200)
    return pd.DataFrame({
        "order_id": pd.array([f"o{o:04d}" for o in order], dtype="string"),
        "product_id": pd.array([f"p{p}" for p in rng.integers(0, 40, n)], dtype="string"),
        "customer_id": pd.array([f"c{o % 300:03d}" if o < 1_000 else f"s{o}" for o in order],
                                dtype="string"),
        "ordered_at": (start + pd.to_timedelta(day[order], unit="D")
                       + pd.to_timedelta(order % 7 * 5, unit="m")).as_unit("us"),
        "quantity": rng.integers(1, 4, n).astype(float),
        "unit_price": rng.integers(100, 5_000, n) / 100})


def test_facts_of_customer_groups_are_the_facts_of_the_whole_table() -> None:
    config = AnalyticsConfig()
    table = order_table(_lines())
    whole = customer_facts(table.orders, table.end, config)
    customers = table.orders["customer_id"].nunique()
    assert list(whole.columns) == list(FACT_COLUMNS) and len(whole) == customers > 400
    assert whole["customer_id"].is_monotonic_increasing
    assert (whole["orders"] == 1).any() and (whole["frequency"] > 0).any()
    assert whole["earlier_gap_days"].notna().any() and whole["in_earlier_window"].any()
    group = np.random.default_rng(0).integers(0, 7, customers)
    code = pd.Index(whole["customer_id"]).get_indexer(table.orders["customer_id"])
    parts = [customer_facts(table.orders[group[code] == g], table.end, config)
             for g in range(7)]
    joined = pd.concat(parts).sort_values("customer_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(joined, whole, check_exact=True)


def test_pair_filters_keep_what_the_lists_use() -> None:
    lines = _lines(seed=5)
    end = lines["ordered_at"].max()
    pairs = customer_products(lines)
    aggregates = LineAggregates(lines)
    assert aggregates.customer_products(end).equals(pairs[list(PAIR_COLUMNS)])
    cycles = pd.DataFrame({"product_id": pd.array([f"p{p}" for p in range(0, 40, 2)],
                                                  dtype="string"),
                           "cycle_days": np.full(20, 60.0)})
    config = ActionsConfig(due_within_days=30, max_overdue_cycles=3.0)
    due = replenishment_due(pairs, cycles, end, config)
    listed = replenishment_of_pairs(pairs, cycles, end, config)
    assert 0 < due.sum() < len(pairs) and len(listed) == due.sum()
    kept = aggregates.customer_products(end, keep=lambda p: replenishment_due(
        p, cycles, end, config))
    pd.testing.assert_frame_equal(replenishment_of_pairs(kept, cycles, end, config), listed)
    slim = aggregates.customer_products(end, columns=("customer_id", "product_id", "lines"))
    assert list(slim.columns) == ["customer_id", "product_id", "lines"]
    assert slim["lines"].sum() == len(lines)
