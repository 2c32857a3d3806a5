"""Historical CLV, lifetime estimate, RFM scores and segments, cohorts, and the CLV job."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recsys.analytics.clv import (
    customer_table,
    estimate_lifetime_years,
    historical_clv,
    order_table,
)
from recsys.analytics.job import OUTPUT_FILES, SEGMENT_COLUMNS, compute_clv, run_clv_job
from recsys.analytics.retention import cohort_counts, cohort_matrix, order_gaps
from recsys.analytics.rfm import SEGMENTS, quintile_scores, rfm_table, segment_of
from recsys.analytics.settings import AnalyticsConfig
from recsys.errors import InputError


def _lines(rows: Sequence[tuple[str, str, str | None, str, float, float]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["order_id", "product_id", "customer_id", "ordered_at",
                                        "quantity", "unit_price"])
    frame["ordered_at"] = pd.to_datetime(frame["ordered_at"])
    for c in ("order_id", "product_id", "customer_id"):
        frame[c] = frame[c].astype("string")
    return frame


def test_worked_example_clv_750() -> None:
    assert historical_clv(50.0, 3.0, 5.0) == pytest.approx(750.0)


def test_worked_example_through_the_customer_table() -> None:
    # Three orders of 50 over one observed year (365.25 days), a configured 5-year lifetime.
    orders = _lines([("o1", "p", "c1", "2024-01-01 00:00", 2, 25.0),
                     ("o2", "p", "c1", "2024-05-01 00:00", 1, 50.0),
                     ("o3", "p", "c1", "2024-09-01 00:00", 5, 10.0)])
    config = AnalyticsConfig(lifetime_years=5, as_of="2024-12-31T06:00:00")
    result = compute_clv(orders, None, config=config)
    row = result.customers.iloc[0]
    assert row["orders"] == 3 and row["average_order_value"] == pytest.approx(50.0)
    assert row["tenure_days"] == pytest.approx(365.25)
    assert row["purchase_frequency"] == pytest.approx(3.0)
    assert row["historical_clv"] == pytest.approx(750.0)
    assert np.isnan(row["historical_clv_margin"])  # no catalog, no margins


def test_margins_adjust_clv_and_unknown_margins_get_the_weighted_mean() -> None:
    orders = _lines([("o1", "a", "c1", "2024-01-01", 1, 100.0),
                     ("o1", "b", "c1", "2024-01-01", 1, 100.0),
                     ("o2", "z", "c2", "2024-01-02", 1, 50.0)])
    catalog = pd.DataFrame({"product_id": ["a", "b", "z"], "margin": [0.2, 0.4, np.nan]})
    table = order_table(orders, catalog)
    profit = table.orders.set_index("order_id")["profit"]
    assert profit["o1"] == pytest.approx(60.0)
    assert profit["o2"] == pytest.approx(50 * 0.3)  # revenue-weighted mean of 0.2 and 0.4
    assert table.margin_known and table.margin_coverage == pytest.approx(200 / 250)
    off = order_table(orders, catalog, use_margin=False)
    assert not off.margin_known and off.orders["profit"].isna().all()


def test_guests_and_lines_after_as_of_are_left_out_and_prices_fall_back() -> None:
    orders = _lines([("o1", "a", "c1", "2024-01-01", 2, np.nan),
                     ("o2", "a", None, "2024-01-02", 1, 5.0),
                     ("o3", "a", "c1", "2024-03-01", 1, 5.0)])
    catalog = pd.DataFrame({"product_id": ["a"], "price": [7.0]})
    table = order_table(orders, catalog, as_of=pd.Timestamp("2024-02-01"))
    assert table.lines_without_customer == 1 and table.lines_after_end == 1
    assert table.orders["revenue"].tolist() == [14.0]  # 2 x the catalog price
    with pytest.raises(InputError, match="customer_id"):
        order_table(orders.drop(columns="customer_id"))


def test_lifetime_from_two_windows() -> None:
    # Windows of 60 days before 2024-05-10: 4 customers order in the earlier one, 3 of them
    # again in the last one: q = 1/4; rho = 0.75^(365.25/60); lifetime = 1 / (1 - rho).
    rows = [(f"e{i}", "p", f"c{i}", "2024-02-01", 1, 10.0) for i in range(4)]
    rows += [(f"l{i}", "p", f"c{i}", "2024-05-01", 1, 10.0) for i in range(3)]
    rows += [("n", "p", "c9", "2024-05-02", 1, 10.0), ("x", "p", "c8", "2023-12-01", 1, 10.0)]
    end = pd.Timestamp("2024-05-10")
    orders = order_table(_lines(rows), as_of=end).orders
    est = estimate_lifetime_years(orders, end, window_days=60, fallback_years=3.0,
                                  max_years=10.0)
    rho = 0.75 ** (365.25 / 60)
    assert est.method == "estimated" and est.window_customers == 4
    assert est.window_churn == pytest.approx(0.25)
    assert est.years == pytest.approx(1 / (1 - rho))
    capped = estimate_lifetime_years(orders, end, window_days=60, fallback_years=1.0,
                                     max_years=1.1)
    assert (capped.method, capped.years) == ("capped", 1.1)
    short = estimate_lifetime_years(orders, end, window_days=200, fallback_years=3.0,
                                    max_years=10.0)
    assert (short.method, short.years) == ("fallback", 3.0)


def test_churn_risk_is_past_the_expected_next_order() -> None:
    # c1 orders every 10 days and was last seen 12 days ago (< 1.5 x 10): not at risk;
    # c2 every 10 days, last seen 40 days ago: at risk; c3 once, 5 days ago: median gap 10.
    orders = _lines([("a1", "p", "c1", "2024-01-01", 1, 1.0), ("a2", "p", "c1", "2024-01-11", 1, 1.0),
                     ("b1", "p", "c2", "2023-12-01", 1, 1.0), ("b2", "p", "c2", "2023-12-11", 1, 1.0),
                     ("c1", "p", "c3", "2024-01-18", 1, 1.0)])
    config = AnalyticsConfig(lifetime_years=1, as_of="2024-01-23")
    table = order_table(orders, as_of=pd.Timestamp("2024-01-23"))
    from recsys.analytics.clv import LifetimeEstimate

    customers = customer_table(table, config, LifetimeEstimate(1.0, "configured"))
    risk = customers.set_index("customer_id")["churn_risk"]
    assert risk.to_dict() == {"c1": False, "c2": True, "c3": False}
    expected = customers.set_index("customer_id")["expected_days_between_orders"]
    assert expected["c3"] == pytest.approx(10.0)


def test_quintile_scores_split_in_fifths_and_keep_ties_together() -> None:
    scores = quintile_scores(np.arange(100))
    assert np.bincount(scores)[1:].tolist() == [20] * 5
    assert scores[0] == 1 and scores[-1] == 5
    tied = quintile_scores(np.array([1, 1, 1, 1, 1, 1, 2, 3, 4, 5]))
    assert len(set(tied[:6].tolist())) == 1
    assert quintile_scores(np.arange(10), higher_is_better=False)[0] == 5


def test_every_rfm_cell_has_exactly_one_segment() -> None:
    r, fm = np.meshgrid(np.arange(1, 6), np.arange(1, 6), indexing="ij")
    names = segment_of(r.ravel(), fm.ravel()).reshape(5, 5)
    assert set(names.ravel()) == set(SEGMENTS)
    assert names[4, 4] == "champions" and names[0, 0] == "lost"
    assert names[1, 4] == "at_risk" and names[4, 0] == "potential"
    assert names[2, 2] == "loyal" and names[1, 1] == "hibernating"


def test_rfm_table_scores_the_best_customer_highest() -> None:
    n = 50
    customers = pd.DataFrame({"customer_id": [f"c{i}" for i in range(n)],
                              "recency_days": np.arange(n)[::-1].astype(float),
                              "orders": np.arange(1, n + 1), "revenue": np.arange(n) * 10.0})
    rfm = rfm_table(customers).set_index("customer_id")
    assert rfm.loc[f"c{n - 1}", "rfm_score"] == "555"
    assert rfm.loc[f"c{n - 1}", "segment"] == "champions"
    assert rfm.loc["c0", "segment"] == "lost"


def _brute_force_cohorts(orders: pd.DataFrame) -> dict[tuple[str, int], int]:
    """Cohort counts with plain Python: per customer, the first month and the set of months."""
    months: dict[str, set[tuple[int, int]]] = {}
    for customer, when in zip(orders["customer_id"], orders["ordered_at"], strict=True):
        months.setdefault(customer, set()).add((when.year, when.month))
    counts: dict[tuple[str, int], int] = {}
    for active in months.values():
        y0, m0 = min(active)
        for y, m in active:
            key = (f"{y0:04d}-{m0:02d}", (y - y0) * 12 + (m - m0))
            counts[key] = counts.get(key, 0) + 1
    return counts


def test_cohorts_on_a_small_log() -> None:
    orders = order_table(_lines([
        ("1", "p", "a", "2024-01-05", 1, 1.0), ("2", "p", "a", "2024-01-20", 1, 1.0),
        ("3", "p", "a", "2024-03-02", 1, 1.0), ("4", "p", "b", "2024-01-31", 1, 1.0),
        ("5", "p", "c", "2024-02-10", 1, 1.0), ("6", "p", "c", "2024-03-10", 1, 1.0)])).orders
    cohorts = cohort_counts(orders)
    matrix = cohort_matrix(cohorts, "customers")
    assert matrix.loc["2024-01"].tolist() == [2, 0, 1]
    assert matrix.loc["2024-02"].tolist()[:2] == [1, 1]
    assert np.isnan(matrix.loc["2024-02", 2])  # after the data ends
    assert cohorts.loc[cohorts["period"] == 0, "retention"].eq(1.0).all()
    gaps = np.sort(order_gaps(orders))
    np.testing.assert_allclose(gaps, [15.0, 29.0, 42.0])  # 2024 is a leap year


@pytest.mark.datasets
def test_cohort_counts_on_online_retail_match_brute_force(online_retail_path: Path) -> None:
    raw = pd.read_parquet(online_retail_path)
    invoice = raw["Invoice"].astype(str)
    keep = (~invoice.str.startswith("C") & (raw["Quantity"] > 0) & (raw["Price"] > 0)
            & raw["Customer ID"].notna()).to_numpy()
    lines = pd.DataFrame({
        "order_id": invoice[keep].to_numpy(), "product_id": raw["StockCode"][keep].to_numpy(),
        "customer_id": raw["Customer ID"][keep].astype("int64").astype(str).to_numpy(),
        "ordered_at": pd.to_datetime(raw["InvoiceDate"][keep]).to_numpy(),
        "quantity": raw["Quantity"][keep].to_numpy(np.float64),
        "unit_price": raw["Price"][keep].to_numpy(np.float64)})
    orders = order_table(lines).orders
    cohorts = cohort_counts(orders)
    expected = _brute_force_cohorts(orders)
    got = {(c, int(p)): int(n) for c, p, n in
           cohorts.loc[cohorts["customers"] > 0, ["cohort", "period", "customers"]].itertuples(
               index=False)}
    assert got == expected
    assert cohorts.loc[cohorts["period"] == 0, "customers"].sum() == orders["customer_id"].nunique()
    # Online Retail II 2009-2010: 13 monthly cohorts, December 2009 the largest.
    first = cohorts[cohorts["period"] == 0].set_index("cohort")["customers"]
    assert len(first) == 13 and first.idxmax() == "2009-12"


def small_shop_orders() -> tuple[pd.DataFrame, pd.DataFrame]:
    """A small generated shop: 300 customers with Poisson purchase days over a year."""
    rng = np.random.default_rng(3)
    rows = []
    start = pd.Timestamp("2024-01-01")
    for c in range(300):  # a test fixture, not a hot path
        first = rng.uniform(0, 300)
        rate = rng.gamma(1.0, 1 / 30)
        alive_until = first + rng.exponential(200)
        t = first
        k = 0
        while t < min(alive_until, 365):
            rows.append((f"o{c}-{k}", f"p{rng.integers(20)}", f"c{c:03d}",
                         start + pd.Timedelta(days=float(t)), float(rng.integers(1, 4)),
                         float(rng.gamma(4, 10))))
            k += 1
            t += rng.exponential(1 / rate)
    catalog = pd.DataFrame({"product_id": [f"p{i}" for i in range(20)],
                            "margin": np.linspace(0.1, 0.5, 20)})
    return _lines(rows), catalog


def test_clv_job_writes_its_tables(tmp_path: Path) -> None:
    orders, catalog = small_shop_orders()
    figures = run_clv_job(orders, catalog, tmp_path / "clv", config=AnalyticsConfig())
    for name in OUTPUT_FILES:
        assert (tmp_path / "clv" / name).is_file(), name
    json.dumps(figures, allow_nan=False)  # manifest-safe
    assert figures == json.loads((tmp_path / "clv" / "clv_report.json").read_text())
    segments = pd.read_parquet(tmp_path / "clv" / "customer_segments.parquet")
    assert tuple(segments.columns) == SEGMENT_COLUMNS
    assert len(segments) == figures["customers"] == orders["customer_id"].nunique()
    assert set(segments["segment"]) <= set(SEGMENTS)
    assert segments["churn_risk"].dtype == bool
    assert (segments["predicted_clv"] >= 0).all() and segments["p_alive"].between(0, 1).all()
    rfm = pd.read_parquet(tmp_path / "clv" / "rfm_segments.parquet")
    assert rfm["segment"].tolist() == list(SEGMENTS)
    assert rfm["customers"].sum() == len(segments)
    assert rfm["revenue_share"].sum() == pytest.approx(1.0)
    customers = pd.read_parquet(tmp_path / "clv" / "customers.parquet")
    assert customers["revenue"].sum() == pytest.approx(
        (orders["quantity"] * orders["unit_price"]).sum())
    assert figures["bgnbd"]["converged"] and figures["gamma_gamma"] is not None
    assert figures["margins_known"] and (customers["predicted_clv_margin"]
                                         <= customers["predicted_clv"] + 1e-9).all()
    cohorts = pd.read_parquet(tmp_path / "clv" / "cohorts.parquet")
    assert cohorts.loc[cohorts["period"] == 0, "customers"].sum() == len(segments)


def test_config_is_checked() -> None:
    with pytest.raises(ValueError, match="control_arm"):
        AnalyticsConfig.model_validate({"experiment": {"split": {"a": 1.0}}})
    with pytest.raises(ValueError, match="extra"):
        AnalyticsConfig.model_validate({"lifetime": 3})
    with pytest.raises(ValueError, match="max_lifetime_years"):
        AnalyticsConfig(fallback_lifetime_years=20, max_lifetime_years=10)


def test_one_order_per_customer_gives_no_predictions_but_says_why() -> None:
    orders = _lines([(f"o{i}", "p", f"c{i}", f"2024-0{1 + i % 6}-1{i % 9}", 1, 10.0 + i)
                     for i in range(12)])
    result = compute_clv(orders, None, config=AnalyticsConfig())
    assert result.bgnbd is None and result.gamma_gamma is None
    assert (result.customers["predicted_clv"] == 0).all()
    assert any("BG/NBD not fitted" in note for note in result.figures["notes"])
    assert result.figures["repeat_purchase_rate"] == 0.0
    assert not result.customers["churn_risk"].any()  # no gap to be late against
    json.dumps(result.figures, allow_nan=False)


def test_missing_inputs_are_named_before_running() -> None:
    from recsys.analytics.job import clv_inputs_missing

    orders, catalog = small_shop_orders()
    assert clv_inputs_missing(orders, catalog) is None
    assert clv_inputs_missing(orders.drop(columns="customer_id")) == "orders have no customer_id"
    assert "prices" in str(clv_inputs_missing(orders.drop(columns="unit_price"), catalog))
    import recsys.analytics as analytics

    assert analytics.clv_inputs_missing is clv_inputs_missing  # the package exports it lazily


def test_predictions_that_break_an_invariant_are_withheld(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    from recsys.analytics import btyd

    orders, catalog = small_shop_orders()
    ok = run_clv_job(orders, catalog, tmp_path / "ok", config=AnalyticsConfig())
    assert ok["predicted_clv_status"] == "ok" and ok["predicted_clv_total"] > 0

    def negative(*args: object, **kwargs: object) -> np.ndarray:
        return -np.ones(len(np.asarray(args[2])))  # what scipy's hyp2f1 produced on real fits

    monkeypatch.setattr(btyd, "discounted_clv", negative)
    figures = run_clv_job(orders, catalog, tmp_path / "bad", config=AnalyticsConfig())
    assert figures["predicted_clv_status"].startswith(
        "failed: predicted_clv outside [0, expected_purchases x expected_order_value]: 300 customers")
    assert figures["predicted_clv_total"] is None and figures["predicted_clv_mean"] is None
    assert figures["predicted_clv_margin_total"] is None
    assert any("withheld" in note for note in figures["notes"])
    assert any(r.levelname == "ERROR" and "withheld" in r.getMessage() for r in caplog.records)
    customers = pd.read_parquet(tmp_path / "bad" / "customers.parquet")
    for column in ("p_alive", "expected_purchases", "expected_order_value", "predicted_clv",
                   "predicted_clv_margin"):
        assert customers[column].isna().all(), column
    assert customers["historical_clv"].notna().all()  # the rest of the job is published
    segments = pd.read_parquet(tmp_path / "bad" / "rfm_segments.parquet")
    assert segments["mean_predicted_clv"].isna().all()


def _assert_predictions_in_range(customers: pd.DataFrame, figures: dict[str, object],
                                 horizon_weeks: float) -> None:
    """The invariants, written out independently of btyd.prediction_problems."""
    assert figures["predicted_clv_status"] == "ok"
    model = figures["bgnbd"]
    assert isinstance(model, dict) and model["converged"]
    x, T = customers["frequency"], customers["T_weeks"]
    for column in ("p_alive", "expected_purchases", "expected_order_value", "predicted_clv"):
        assert np.isfinite(customers[column]).all(), column
    assert customers["p_alive"].between(0, 1).all()
    ceiling = (model["r"] + x) / (model["alpha"] + T) * horizon_weeks
    assert (customers["expected_purchases"] >= 0).all()
    assert (customers["expected_purchases"] <= ceiling * (1 + 1e-9)).all()
    assert (customers["expected_order_value"] > 0).all()
    assert (customers["predicted_clv"] >= 0).all()
    assert (customers["predicted_clv"] <= customers["expected_purchases"]
            * customers["expected_order_value"] * (1 + 1e-9)).all()
    total = figures["predicted_clv_total"]
    assert isinstance(total, float) and 0 < total == pytest.approx(customers["predicted_clv"].sum())


@pytest.mark.datasets
@pytest.mark.slow
def test_predictions_are_in_range_on_online_retail(online_retail_path: Path) -> None:
    raw = pd.read_parquet(online_retail_path)
    invoice = raw["Invoice"].astype(str)
    keep = (~invoice.str.startswith("C") & (raw["Quantity"] > 0) & (raw["Price"] > 0)
            & raw["Customer ID"].notna()).to_numpy()
    lines = pd.DataFrame({
        "order_id": invoice[keep].to_numpy(), "product_id": raw["StockCode"][keep].to_numpy(),
        "customer_id": raw["Customer ID"][keep].astype("int64").astype(str).to_numpy(),
        "ordered_at": pd.to_datetime(raw["InvoiceDate"][keep]).to_numpy(),
        "quantity": raw["Quantity"][keep].to_numpy(np.float64),
        "unit_price": raw["Price"][keep].to_numpy(np.float64)})
    config = AnalyticsConfig()
    result = compute_clv(lines, None, config=config)
    _assert_predictions_in_range(result.customers, result.figures,
                                 config.horizon_months * 365.25 / 12 / 7)
    assert result.figures["customers"] == 4312


@pytest.mark.datasets
@pytest.mark.slow
def test_predictions_are_in_range_on_dunnhumby(datasets: Path) -> None:
    raw = pd.read_csv(datasets / "dunnhumby_complete_journey" / "transactions_sample.csv.gz",
                      dtype={"household_id": str, "basket_id": str, "product_id": str})
    raw = raw[(raw["quantity"] > 0) & (raw["sales_value"] > 0)]
    lines = pd.DataFrame({
        "order_id": raw["basket_id"].to_numpy(), "product_id": raw["product_id"].to_numpy(),
        "customer_id": raw["household_id"].to_numpy(),
        "ordered_at": pd.to_datetime(raw["transaction_timestamp"]).to_numpy(),
        "quantity": raw["quantity"].to_numpy(np.float64),
        "unit_price": (raw["sales_value"] / raw["quantity"]).to_numpy(np.float64)})
    config = AnalyticsConfig()
    result = compute_clv(lines, None, config=config)
    _assert_predictions_in_range(result.customers, result.figures,
                                 config.horizon_months * 365.25 / 12 / 7)


def test_summary_lines_are_readable() -> None:
    from recsys.analytics.clv import summary_lines

    lines = summary_lines({"customers": 4312, "revenue": 9336935.719999999,
                           "repeat_purchase_rate": 0.7133333, "margins_known": False,
                           "lifetime_method": "estimated", "predicted_clv_total": None,
                           "bgnbd": {"r": 0.87}, "notes": ["BG/NBD fit did not converge"]})
    assert lines == ["customers: 4,312", "revenue: 9,336,935.72", "repeat_purchase_rate: 71.3%",
                     "margins_known: False", "lifetime_method: estimated",
                     "predicted_clv_total: n/a", "note: BG/NBD fit did not converge"]


def test_recsys_clv_prints_money_readably(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    from recsys.cli import main

    orders, catalog = small_shop_orders()
    (tmp_path / "data").mkdir()
    orders.to_parquet(tmp_path / "data" / "orders.parquet")
    catalog.to_parquet(tmp_path / "data" / "catalog.parquet")
    assert main(["-q", "clv", "--data", str(tmp_path / "data"), "--out",
                 str(tmp_path / "out")]) == 0
    printed = dict(line.split(": ", 1) for line in capsys.readouterr().out.splitlines()
                   if ": " in line and not line.startswith("written"))
    figures = json.loads((tmp_path / "out" / "clv_report.json").read_text())
    assert printed["revenue"] == f"{figures['revenue']:,.2f}"
    assert printed["orders"] == f"{figures['orders']:,}" and printed["predicted_clv_status"] == "ok"
    assert all(len(v.rsplit(".", 1)[-1]) <= 2 for k, v in printed.items()
               if "clv" in k and k != "predicted_clv_status")
