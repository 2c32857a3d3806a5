"""Action lists with known answers: replenishment, recommendations, win-back, high-value, and
the customer_value job writing them (flows read from the previous run)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from recsys.analytics.actions import (
    ACTION_FILES,
    high_value_list,
    recommendations_table,
    replenishment_list,
    winback_list,
)
from recsys.analytics.aggregates import PAIR_COLUMNS, customer_products
from recsys.analytics.job import OUTPUT_FILES, run_clv_job
from recsys.analytics.settings import ActionsConfig, AnalyticsConfig
from recsys.artifacts import load_parquet

END = pd.Timestamp("2024-12-31")


def _lines(rows: list[tuple[str, str, str, str]], price: float = 10.0) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["order_id", "customer_id", "product_id", "ordered_at"])
    frame["ordered_at"] = pd.to_datetime(frame["ordered_at"])
    frame["quantity"] = 1.0
    frame["unit_price"] = price
    return frame


CYCLES = pd.DataFrame({"product_id": ["milk", "soap"], "cycle_days": [30.0, 60.0],
                       "intervals": [10, 10], "repeat_share": [0.5, 0.5]})


def test_replenishment_by_own_or_product_cycle() -> None:
    orders = _lines([
        ("a1", "A", "milk", "2024-12-05"), ("a2", "A", "milk", "2024-12-15"),
        ("a3", "A", "milk", "2024-12-25"),                     # own cycle 10: due 2025-01-04
        ("b1", "B", "milk", "2024-12-01"),                     # product cycle: due today
        ("c1", "C", "milk", "2024-10-01"),                     # 61 days overdue > 2 cycles
        ("d1", "D", "soap", "2024-11-20"),                     # due in 19 days: not yet
        ("e1", "E", "tv", "2024-11-01"),                       # not a consumable
        ("f1", "F", "milk", "2024-11-21"), ("f1", "F", "milk", "2024-11-21"),  # 10 overdue
        ("g1", "G", "milk", "2025-01-02"),                     # after the end: ignored
    ])
    table = replenishment_list(orders, CYCLES, END, ActionsConfig())
    got = table.set_index("customer_id")
    assert got.index.tolist() == ["F", "B", "A"]  # most overdue first
    assert got.loc["A", "cycle_source"] == "own" and got.loc["A", "cycle_days"] == 10
    assert got.loc["A", "expected_date"] == pd.Timestamp("2025-01-04")
    assert got.loc["A", "days_overdue"] == -4 and got.loc["A", "status"] == "due"
    assert got.loc["A", "purchase_days"] == 3
    assert got.loc["B", "cycle_source"] == "product" and got.loc["B", "days_overdue"] == 0
    assert got.loc["B", "status"] == "due"
    assert got.loc["F", "days_overdue"] == 10 and got.loc["F", "status"] == "overdue"
    assert got.loc["F", "purchase_days"] == 1  # two lines on one day are one purchase
    assert got.loc["F", "last_purchase"] == pd.Timestamp("2024-11-21")
    wider = replenishment_list(orders, CYCLES, END, ActionsConfig(due_within_days=20,
                                                                  max_overdue_cycles=3))
    assert set(wider["customer_id"]) == {"A", "B", "C", "D", "F"}
    product_only = replenishment_list(orders, CYCLES, END,
                                      ActionsConfig(own_cycle_min_intervals=3))
    assert "A" not in set(product_only["customer_id"])  # 2025-01-24 by the 30-day cycle


def test_replenishment_leaves_out_unavailable_products() -> None:
    orders = _lines([("b1", "B", "milk", "2024-12-01"), ("d1", "D", "soap", "2024-12-20"),
                     ("h1", "H", "soap", "2024-11-01")])
    wide = ActionsConfig(due_within_days=60)
    both = replenishment_list(orders, CYCLES, END, wide)
    assert sorted(both["customer_id"]) == ["B", "D", "H"]
    out_of_stock = pd.DataFrame({"product_id": ["milk", "soap"], "in_stock": [False, True]})
    assert replenishment_list(orders, CYCLES, END, wide, out_of_stock)[
        "product_id"].tolist() == ["soap", "soap"]
    inactive = pd.DataFrame({"product_id": ["soap"], "is_active": [False]})  # milk unlisted
    assert replenishment_list(orders, CYCLES, END, wide, inactive)[
        "customer_id"].tolist() == ["B"]
    neither = pd.DataFrame({"product_id": ["milk", "soap"], "in_stock": [False, True],
                            "is_active": [True, False]})
    assert replenishment_list(orders, CYCLES, END, wide, neither).empty


def test_recommendations_skip_bought_and_unavailable_products() -> None:
    # best sellers by orders: x (3), y (2), z (2), w (1); ties by product id
    orders = _lines([("1", "A", "x", "2024-01-01"), ("2", "B", "x", "2024-01-02"),
                     ("3", "C", "x", "2024-01-03"), ("4", "A", "y", "2024-01-04"),
                     ("5", "B", "z", "2024-01-05"), ("6", "C", "z", "2024-01-06"),
                     ("7", "C", "y", "2024-01-07"), ("8", "B", "w", "2024-01-08")])
    catalog = pd.DataFrame({"product_id": ["x", "y", "z", "w"],
                            "in_stock": [True, True, True, False]})
    table = recommendations_table(orders, pd.Series(["C", "A", "B", "nobody"]), catalog, k=3)
    rows = table.set_index("customer_id")
    empty = rows.isna()
    assert rows.loc["A", "rec_1"] == "z" and empty.loc["A", ["rec_2", "rec_3"]].all()  # w: none
    assert rows.loc["B", "rec_1"] == "y" and empty.loc["B", ["rec_2", "rec_3"]].all()
    assert empty.loc["C"].all()  # bought everything in stock
    assert rows.loc["nobody"].tolist() == ["x", "y", "z"]
    assert table["customer_id"].tolist() == ["C", "A", "B", "nobody"]


def test_winback_offers_own_repeat_products_then_recommendations() -> None:
    customers = pd.DataFrame({"customer_id": ["A", "B", "C"], "predicted_clv": [5.0, 50.0, 9.0],
                              "p_alive": [0.5, 0.9, 0.2], "historical_clv": [1.0, 2.0, 3.0],
                              "churn_risk": [True, False, True]})
    stages = pd.DataFrame({"customer_id": ["A", "B", "C"],
                           "stage": ["at_risk", "declining", "stable"]})
    orders = _lines([("1", "A", "tea", "2024-01-01"), ("2", "A", "tea", "2024-02-01"),
                     ("2", "A", "cup", "2024-02-01"), ("3", "A", "cup", "2024-03-01"),
                     ("3", "A", "cup", "2024-03-01"), ("4", "A", "pot", "2024-03-01"),
                     ("5", "B", "jam", "2024-01-01")])
    recs = pd.DataFrame({"customer_id": ["A", "B", "C"], "rec_1": ["r1", "r3", "r5"],
                         "rec_2": ["r2", None, "r6"]})
    table = winback_list(customers, stages, orders, recs, ActionsConfig(offers=3))
    assert table["customer_id"].tolist() == ["B", "A"]  # most predicted CLV first, C stable
    a = table.set_index("customer_id").loc["A"]
    # tea and cup both in two orders; cup bought last: cup, tea; then the first recommendation
    assert [a["offer_1"], a["offer_2"], a["offer_3"]] == ["cup", "tea", "r1"]
    assert a["offers_own"] == 2
    b = table.set_index("customer_id").loc["B"]
    assert b["offer_1"] == "r3" and pd.isna(b["offer_2"]) and b["offers_own"] == 0
    catalog = pd.DataFrame({"product_id": ["tea", "cup", "pot"], "in_stock": [True, False, True]})
    a = winback_list(customers, stages, orders, recs, ActionsConfig(offers=3),
                     catalog).set_index("customer_id").loc["A"]
    assert [a["offer_1"], a["offer_2"], a["offer_3"]] == ["tea", "r1", "r2"]  # cup: sold out


def test_high_value_is_the_top_share_by_predicted_clv() -> None:
    customers = pd.DataFrame({"customer_id": [f"c{i}" for i in range(10)],
                              "predicted_clv": [float(i % 4) for i in range(10)],
                              "historical_clv": 1.0, "p_alive": 0.5, "segment": "loyal"})
    stages = pd.DataFrame({"customer_id": customers["customer_id"], "stage": "stable"})
    table = high_value_list(customers, stages, ActionsConfig(high_value_share=0.25))
    assert table["customer_id"].tolist() == ["c3", "c7", "c2"]  # ceil(2.5); ties by id
    assert table["rank"].tolist() == [1, 2, 3]
    assert len(high_value_list(customers, stages, ActionsConfig(high_value_share=0.01))) == 1


def _shop(days: int) -> pd.DataFrame:
    """Customers buying a consumable every 10 days and a durable once, for ``days`` days."""
    rows = []
    for c in range(6):
        for i in range(0, days - 5 * c, 10):
            day = (pd.Timestamp("2024-01-01") + pd.Timedelta(days=i)).strftime("%Y-%m-%d")
            rows.append((f"{c}-{i}", f"c{c}", "filter", day))
        rows.append((f"{c}-d", f"c{c}", f"lamp{c % 2}", "2024-01-03"))
    return _lines(rows)


def test_the_job_writes_the_action_lists_and_flows_from_the_previous_run(tmp_path: Path) -> None:
    config = AnalyticsConfig()
    first = run_clv_job(_shop(120), None, tmp_path / "v1", config=config)
    assert set(ACTION_FILES) <= set(OUTPUT_FILES)
    for name in ACTION_FILES:
        assert (tmp_path / "v1" / name).exists(), name
    assert first["actions"]["stage_flows_from_previous"] is False
    customers = load_parquet(tmp_path / "v1" / "customers.parquet")
    stages = load_parquet(tmp_path / "v1" / "lifecycle.parquet")
    recs = load_parquet(tmp_path / "v1" / "recommendations.parquet")
    assert stages["customer_id"].tolist() == customers["customer_id"].tolist()
    assert recs["customer_id"].tolist() == customers["customer_id"].tolist()
    assert recs.loc[recs["customer_id"] == "c0", "rec_1"].item() == "lamp1"
    assert sum(first["actions"]["stages"].values()) == 6

    second = run_clv_job(_shop(200), None, tmp_path / "v2", config=config,
                         previous=tmp_path / "v1")
    assert second["actions"]["stage_flows_from_previous"] is True
    flows = load_parquet(tmp_path / "v2" / "lifecycle_flows.parquet")
    assert int(flows["customers"].sum()) == 6
    assert "none" not in set(flows["from_stage"])  # the same six customers in both runs
    before = stages.set_index("customer_id")["stage"]
    after = load_parquet(tmp_path / "v2" / "lifecycle.parquet").set_index("customer_id")["stage"]
    pairs = pd.crosstab(before, after).stack()
    expected = {(f, t): int(n) for (f, t), n in pairs.items() if n}
    assert {(f, t): n for f, t, n in flows.itertuples(index=False)} == expected
    refill = load_parquet(tmp_path / "v2" / "replenishment.parquet")
    # the filter has a 10-day cycle (from these orders); lamps are never due
    assert set(refill["product_id"]) <= {"filter"} and len(refill)
    assert np.all(refill["cycle_days"] == 10)


def test_customer_products_known_answer() -> None:
    """Per (customer, product): lines, distinct orders, last order, distinct purchase days,
    the last of them and the median gap between consecutive days (two lines on a day count
    once)."""
    lines = _lines([
        ("a1", "A", "milk", "2024-12-01 09:00"), ("a1", "A", "milk", "2024-12-01 09:00"),
        ("a2", "A", "milk", "2024-12-01 18:00"), ("a3", "A", "milk", "2024-12-05 00:00"),
        ("a4", "A", "milk", "2024-12-15 00:00"), ("a4", "A", "tea", "2024-12-15 00:00"),
        ("b1", "B", "milk", "2024-12-02 00:00"),
    ])
    got = customer_products(lines).set_index(["customer_id", "product_id"])
    assert list(got.columns) == list(PAIR_COLUMNS[2:])
    milk = got.loc[("A", "milk")]
    assert (milk["lines"], milk["orders"], milk["purchase_days"], milk["gaps"]) == (5, 4, 3, 2)
    assert milk["median_gap"] == 7.0  # gaps 4 and 10 days
    assert milk["last_ordered_at"] == pd.Timestamp("2024-12-15")
    assert milk["last_day"] == (pd.Timestamp("2024-12-15") - pd.Timestamp("1970-01-01")).days
    for key in (("A", "tea"), ("B", "milk")):
        one = got.loc[key]
        assert (one["lines"], one["purchase_days"], one["gaps"]) == (1, 1, 0)
        assert np.isnan(one["median_gap"])
