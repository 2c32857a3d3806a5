"""Lifecycle stages on hand-made histories (one customer per rule) and the flow table."""

from __future__ import annotations

import pandas as pd
import pytest

from recsys.analytics.clv import order_table
from recsys.analytics.job import compute_clv
from recsys.analytics.lifecycle import STAGES, lifecycle_stages, stage_flows
from recsys.analytics.settings import AnalyticsConfig, LifecycleConfig

AS_OF = "2024-12-31T00:00:00"


def _every(last: str, days: int, n: int, amount: float = 100.0) -> list[tuple[str, float]]:
    """n orders ``days`` apart, the last one on ``last``."""
    end = pd.Timestamp(last)
    return [((end - pd.Timedelta(days=days * i)).strftime("%Y-%m-%d"), amount)
            for i in reversed(range(n))]


def _orders(histories: dict[str, list[tuple[str, float]]]) -> pd.DataFrame:
    rows = [(f"{customer}-{i}", "p", customer, day, 1.0, amount)
            for customer, history in histories.items() for i, (day, amount) in enumerate(history)]
    frame = pd.DataFrame(rows, columns=["order_id", "product_id", "customer_id", "ordered_at",
                                        "quantity", "unit_price"])
    frame["ordered_at"] = pd.to_datetime(frame["ordered_at"])
    return frame


def _recent_to(history: list[tuple[str, float]], after: str, amount: float,
               ) -> list[tuple[str, float]]:
    return [(day, amount if day > after else value) for day, value in history]


HISTORIES = {
    "new": [("2024-12-20", 80.0)],
    # every 30 days, last 15 days ago: same spend in both 90-day windows
    "stable": _every("2024-12-16", 30, 12),
    # same rhythm, spend of the last 90 days 750 against a usual 317.6 per 90 days
    "growing": _recent_to(_every("2024-12-16", 30, 12), "2024-10-02", 250.0),
    # same rhythm, spend fell to 90 (28% of the usual): a warning while recency is fine
    "declining_spend": _recent_to(_every("2024-12-16", 30, 12), "2024-10-02", 30.0),
    # every 30 days, last order 40 days ago: past due, not yet 1.5 x 30
    "declining_due": _every("2024-11-21", 30, 6),
    "at_risk": _every("2024-11-11", 30, 6),  # 50 days > 1.5 x 30
    "churned": _every("2024-09-22", 30, 6),  # 100 days > 3 x 30
    # three orders 30 days apart, then back after 275 days (> 3 x 30), 30 days ago
    "reactivated": [("2024-01-01", 100.0), ("2024-01-31", 100.0), ("2024-03-01", 100.0),
                    ("2024-12-01", 100.0)],
}


@pytest.fixture(scope="module")
def stages() -> pd.DataFrame:
    result = compute_clv(_orders(HISTORIES), None, config=AnalyticsConfig(as_of=AS_OF))
    table = result.stages
    assert table["customer_id"].tolist() == result.customers["customer_id"].tolist()
    # the stages of the order table itself are the job's (made from the per-customer facts)
    orders = order_table(_orders(HISTORIES), as_of=pd.Timestamp(AS_OF)).orders
    pd.testing.assert_frame_equal(
        lifecycle_stages(orders, result.customers, result.facts.end, LifecycleConfig()), table)
    return table.set_index("customer_id")


@pytest.mark.parametrize("customer", list(HISTORIES))
def test_each_rule_names_its_stage(stages: pd.DataFrame, customer: str) -> None:
    expected = customer.split("_")[0] if customer.startswith("declining") else customer
    assert stages.loc[customer, "stage"] == expected


def test_stage_inputs_are_the_documented_figures(stages: pd.DataFrame) -> None:
    back = stages.loc["reactivated"]
    assert back["last_gap_days"] == 275 and back["earlier_gap_days"] == 30
    assert back["recency_days"] == 30
    spend = stages.loc["declining_spend"]
    assert spend["spend_recent"] == pytest.approx(90.0)  # three orders of 30
    # nine orders of 100 before 2024-10-02, observed from 2024-01-21: 255 days
    assert spend["spend_usual"] == pytest.approx(900.0 / 255 * 90)
    assert stages.loc["new", "last_gap_days"] != stages.loc["new", "last_gap_days"]  # NaN


def test_thresholds_are_configurable() -> None:
    loose = LifecycleConfig(at_risk_factor=2.0, churned_factor=4.0, spend_drop=0.2)
    table = compute_clv(_orders(HISTORIES), None,
                        config=AnalyticsConfig(as_of=AS_OF, lifecycle=loose)).stages
    stage = table.set_index("customer_id")["stage"]
    assert stage["at_risk"] == "declining"  # 50 days: past due, below 2 x 30
    assert stage["churned"] == "at_risk"  # 100 days: > 2 x 30, not > 4 x 30
    assert stage["declining_spend"] == "stable"  # 30% of the spend is not below 20%


def test_a_one_time_buyer_is_new_until_past_due() -> None:
    histories = {"repeat": _every("2024-12-16", 30, 6), "once_in_cycle": [("2024-12-11", 50.0)],
                 "once_past_due": [("2024-11-21", 50.0)]}  # 40 days > the usual 30
    table = compute_clv(_orders(histories), None, config=AnalyticsConfig(
        as_of=AS_OF, lifecycle=LifecycleConfig(new_days=5))).stages
    stage = table.set_index("customer_id")["stage"]
    assert stage["once_in_cycle"] == "new" and stage["once_past_due"] == "declining"


def test_flows_count_moves_between_runs() -> None:
    before = pd.DataFrame({"customer_id": ["a", "b", "c", "d"],
                           "stage": ["stable", "at_risk", "churned", "stable"]})
    now = pd.DataFrame({"customer_id": ["a", "b", "d", "e", "f"],
                        "stage": ["declining", "at_risk", "declining", "new", "new"]})
    flows = stage_flows(before, now)
    got = {(f, t): n for f, t, n in flows.itertuples(index=False)}
    assert got == {("none", "new"): 2, ("stable", "declining"): 2, ("at_risk", "at_risk"): 1,
                   ("churned", "none"): 1}
    assert flows["customers"].dtype == "int64"
    assert flows.iloc[0][["from_stage", "to_stage"]].tolist() == ["none", "new"]
    assert int(flows["customers"].sum()) == 6  # every customer of either run once


def test_first_run_flows_from_none() -> None:
    now = pd.DataFrame({"customer_id": ["a", "b", "c"], "stage": ["new", "stable", "new"]})
    flows = stage_flows(None, now)
    assert flows.to_dict("records") == [
        {"from_stage": "none", "to_stage": "new", "customers": 2},
        {"from_stage": "none", "to_stage": "stable", "customers": 1}]
    assert set(STAGES) >= set(flows["to_stage"])


def test_churned_factor_must_exceed_at_risk_factor() -> None:
    with pytest.raises(ValueError, match="churned_factor"):
        LifecycleConfig(at_risk_factor=3.0, churned_factor=2.0)
