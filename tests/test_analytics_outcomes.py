"""Attribution and outcome metrics on event logs with a known answer; events read from the
serving database; the HTML report."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recsys.analytics.experiments import assign_arms
from recsys.analytics.outcomes import EXPOSED, NOT_EXPOSED, load_events, measure_outcomes
from recsys.analytics.report import build_report
from recsys.analytics.settings import AnalyticsConfig, ExperimentConfig

T0 = pd.Timestamp("2025-03-01 10:00")
ONE_ARM = ExperimentConfig(split={"control": 1.0}, bootstrap_samples=200)


def _event(kind: str, minutes: float, *, product: str | None = None, session: str | None = None,
           customer: str | None = None, request: str | None = None,
           placement: str | None = None, order: str | None = None, quantity: float | None = None,
           price: float | None = None) -> dict[str, object]:
    return {"event_type": kind, "product_id": product, "session_id": session,
            "customer_id": customer, "request_id": request, "placement": placement,
            "order_id": order, "quantity": quantity, "price": price,
            "occurred_at": T0 + pd.Timedelta(minutes=minutes)}


def small_log() -> pd.DataFrame:
    """Eight responses, seven orders; what is attributed, and why, is said on each line."""
    e = _event
    rows = [
        # c1: clicks P1 on a product page, adds it, buys it (2 x 10) with P9: o1 = 25, 20 attributed
        e("impression", 0, session="s1", customer="c1", request="r1", placement="product_page"),
        e("click", 1, product="P1", session="s1", customer="c1", request="r1",
          placement="product_page"),
        e("add_to_cart", 2, product="P1", session="s1", customer="c1"),
        e("purchase", 10, product="P1", session="s1", customer="c1", order="o1", quantity=2,
          price=10),
        e("purchase", 10, product="P9", session="s1", customer="c1", order="o1", quantity=1,
          price=5),
        # c2: clicks P2 in the cart, adds it at once, buys it 25 h later: outside the 24 h window
        e("impression", 0, session="s2", customer="c2", request="r2", placement="cart"),
        e("click", 1, product="P2", session="s2", customer="c2", request="r2", placement="cart"),
        e("add_to_cart", 2, product="P2", session="s2", customer="c2"),
        e("purchase", 25 * 60, product="P2", session="s2", customer="c2", order="o2", price=30),
        # guest s3: clicks and buys P3 in the same session (no customer id): attributed, 7
        e("impression", 0, session="s3", request="r3", placement="product_page"),
        e("click", 5, product="P3", session="s3", request="r3", placement="product_page"),
        e("purchase", 60, product="P3", session="s3", order="o3", quantity=1, price=7),
        # c4: clicks P4 on the customer page, buys it 3 h later in another session: attributed
        e("impression", 0, session="s4", customer="c4", request="r4", placement="customer_page"),
        e("click", 0, product="P4", session="s4", customer="c4", request="r4",
          placement="customer_page"),
        e("purchase", 180, product="P4", session="s5", customer="c4", order="o4", price=12),
        # c5: only sees P5 (an impression, no click), buys it: not attributed, 40
        e("impression", 0, product="P5", session="s6", customer="c5", request="r5",
          placement="product_page"),
        e("purchase", 60, product="P5", session="s6", customer="c5", order="o5", price=40),
        # c6: clicks P6 on a product page, then in the cart; buys P6 (8) and P10 (2): the cart
        # click is the last one
        e("impression", 0, session="s7", customer="c6", request="r6", placement="product_page"),
        e("click", 0, product="P6", session="s7", customer="c6", request="r6",
          placement="product_page"),
        e("impression", 60, session="s7", customer="c6", request="r7", placement="cart"),
        e("click", 60, product="P6", session="s7", customer="c6", request="r7", placement="cart"),
        e("purchase", 120, product="P6", session="s7", customer="c6", order="o6", price=8),
        e("purchase", 120, product="P10", session="s7", customer="c6", order="o6", price=2),
        # c7: buys P7 (3), clicks it an hour later: a click after the purchase does not count
        e("purchase", 0, product="P7", session="s8", customer="c7", order="o7", price=3),
        e("impression", 60, session="s8", customer="c7", request="r8", placement="product_page"),
        e("click", 60, product="P7", session="s8", customer="c7", request="r8",
          placement="product_page"),
    ]
    return pd.DataFrame(rows)


def _estimates(outcomes: object, placement: str, arm: str = "control") -> dict[str, float]:
    metrics = outcomes.metrics  # type: ignore[attr-defined]
    rows = metrics[(metrics["placement"] == placement) & (metrics["arm"] == arm)]
    return dict(zip(rows["metric"], rows["estimate"], strict=True))


def test_small_log_known_answer() -> None:
    outcomes = measure_outcomes(small_log(), ONE_ARM)
    assert outcomes.figures["responses"] == 8 and outcomes.figures["orders"] == 7
    assert outcomes.figures["units"] == 7  # six customers and the guest session s3
    assert outcomes.figures["attributed_purchase_lines"] == 4
    assert outcomes.figures["attributed_add_to_carts"] == 2
    every = _estimates(outcomes, "all")
    assert every["click_through_rate"] == pytest.approx(7 / 8)
    assert every["add_to_cart_rate"] == pytest.approx(2 / 8)
    assert every["attach_rate"] == pytest.approx(4 / 7)
    assert every["attributed_revenue"] == pytest.approx(20 + 7 + 12 + 8)
    assert every["order_value"] == pytest.approx(127 / 7)
    assert every["order_value_with_rec"] == pytest.approx((25 + 7 + 12 + 10) / 4)
    assert every["order_value_without_rec"] == pytest.approx((30 + 40 + 3) / 3)
    page = _estimates(outcomes, "product_page")
    assert page["click_through_rate"] == pytest.approx(4 / 5)
    assert page["add_to_cart_rate"] == pytest.approx(1 / 5)
    assert page["attach_rate"] == pytest.approx(2 / 7)
    assert page["attributed_revenue"] == pytest.approx(27)
    assert page["order_value_with_rec"] == pytest.approx(16)
    assert page["order_value_without_rec"] == pytest.approx(95 / 5)
    cart = _estimates(outcomes, "cart")
    assert cart["click_through_rate"] == 1.0 and cart["add_to_cart_rate"] == 0.5
    assert cart["attributed_revenue"] == pytest.approx(8)  # the last click won
    assert cart["order_value_with_rec"] == pytest.approx(10)
    customer_page = _estimates(outcomes, "customer_page")
    assert customer_page["attributed_revenue"] == pytest.approx(12)  # matched by customer
    table = outcomes.table().set_index("placement")
    assert table.loc["product_page", "impressions"] == 5
    assert table.loc["all", "orders"] == 7 and table.loc["all", "orders_with_rec"] == 4
    assert outcomes.uplift.empty  # one arm only


def test_window_and_unit_settings_change_the_answer() -> None:
    wide = ExperimentConfig(split={"control": 1.0}, bootstrap_samples=200,
                            attribution_window_hours=26)
    every = _estimates(measure_outcomes(small_log(), wide), "all")
    assert every["attributed_revenue"] == pytest.approx(47 + 30)  # o2 now inside the window
    by_session = ExperimentConfig(split={"control": 1.0}, bootstrap_samples=200, unit="session")
    outcomes = measure_outcomes(small_log(), by_session)
    assert outcomes.figures["units"] == 8  # sessions s1..s8 (c4 used two)


def _generated_log(n_units: int, seed: int, split: dict[str, float],
                   ctr: dict[str, float]) -> tuple[pd.DataFrame, dict[str, float]]:
    """Customers see 3 lists each; a click (probability by arm) is on a product of its own;
    half the clicked products are bought 0-48 h later (attributed when <= 24 h), half of those
    in another session; every customer also buys one product they never clicked."""
    rng = np.random.default_rng(seed)
    units = np.array([f"u{i}" for i in range(n_units)], dtype=object)
    arms = assign_arms(["c:" + u for u in units], salt="gen", split=split)
    k = 3
    unit = np.repeat(units, k)
    arm = np.repeat(arms, k)
    response = np.array([f"r{i}" for i in range(len(unit))], dtype=object)
    placement = rng.choice(["product_page", "cart", "customer_page"], size=len(unit))
    start = rng.uniform(0, 30 * 24 * 60, size=len(unit))  # minutes
    p_click = np.vectorize(ctr.get)(arm)
    clicked = rng.random(len(unit)) < p_click
    product = np.array([f"P{i}" for i in range(len(unit))], dtype=object)
    bought = clicked & (rng.random(len(unit)) < 0.5)
    delay = rng.uniform(0, 48 * 60, size=len(unit))
    other_session = rng.random(len(unit)) < 0.5
    price = rng.integers(5, 50, size=len(unit)).astype(float)
    session = np.array([f"{u}-s{j % k}" for j, u in enumerate(unit)], dtype=object)

    def frame(mask: np.ndarray, kind: str, minutes: np.ndarray, **cols: object) -> pd.DataFrame:
        data = {"event_type": kind, "customer_id": unit[mask],
                "occurred_at": T0 + pd.to_timedelta(minutes[mask], unit="min")}
        data.update({c: (v[mask] if isinstance(v, np.ndarray) else v) for c, v in cols.items()})
        return pd.DataFrame(data)

    every = np.ones(len(unit), dtype=bool)
    parts = [
        frame(every, "impression", start, session_id=session, request_id=response,
              placement=placement),
        frame(clicked, "click", start + 1, session_id=session, request_id=response,
              placement=placement, product_id=product),
        frame(bought, "purchase", start + 1 + delay,
              session_id=np.where(other_session, session + "-b", session), product_id=product,
              order_id=np.array([f"o{i}" for i in range(len(unit))], dtype=object),
              price=price, quantity=1.0),
    ]
    first = np.arange(0, len(unit), k)
    parts.append(pd.DataFrame({
        "event_type": "purchase", "customer_id": units, "session_id": units + "-x",
        "product_id": [f"N{i}" for i in range(n_units)],
        "order_id": [f"n{i}" for i in range(n_units)], "price": 20.0, "quantity": 2.0,
        "occurred_at": T0 + pd.to_timedelta(start[first], unit="min")}))
    events = pd.concat(parts, ignore_index=True).sample(frac=1.0, random_state=seed)
    inside = bought & (delay <= 24 * 60)
    truth = {"attributed_revenue": float(price[inside].sum()),
             "attributed_lines": int(inside.sum()),
             **{f"ctr_{a}": float(clicked[arm == a].mean()) for a in split},
             "orders_with_rec": int(inside.sum())}
    return events, truth


def test_generated_log_known_answer() -> None:
    split = {"control": 0.5, "recommendations": 0.5}
    events, truth = _generated_log(1500, 11, split, {"control": 0.2, "recommendations": 0.3})
    config = ExperimentConfig(salt="gen", split=split, bootstrap_samples=400)
    outcomes = measure_outcomes(events, config)
    assert outcomes.figures["attributed_purchase_lines"] == truth["attributed_lines"]
    m = outcomes.metrics.set_index(["placement", "arm", "metric"])
    attributed = m.xs(("all", "attributed_revenue"), level=("placement", "metric"))
    assert attributed["estimate"].sum() == pytest.approx(truth["attributed_revenue"])
    per_placement = m.xs("attributed_revenue", level="metric").drop(index="all", level=0)
    assert per_placement["estimate"].sum() == pytest.approx(truth["attributed_revenue"])
    attached = m.xs(("all", "attach_rate"), level=("placement", "metric"))
    assert attached["numerator"].sum() == truth["orders_with_rec"]
    for arm in split:
        row = m.loc[("all", arm, "click_through_rate")]
        assert row["estimate"] == pytest.approx(truth[f"ctr_{arm}"])
        assert row["low"] < row["estimate"] < row["high"]
    uplift = outcomes.uplift.set_index(["placement", "arm", "metric"])
    ctr_uplift = uplift.loc[("all", "recommendations", "click_through_rate")]
    assert ctr_uplift["low"] > 0  # 0.3 vs 0.2 clicks per list: a clear uplift
    assert ctr_uplift["uplift"] == pytest.approx(truth["ctr_recommendations"]
                                                 / truth["ctr_control"] - 1)


def test_a_stored_arm_column_wins() -> None:
    log = small_log()
    log["arm"] = np.where(log["customer_id"].isin(["c1", "c2"]), "treatment", np.array(None))
    config = ExperimentConfig(split={"control": 1.0, "treatment": 0.0}, bootstrap_samples=200)
    outcomes = measure_outcomes(log, config)
    treated = _estimates(outcomes, "all", "treatment")
    assert treated["order_value"] == pytest.approx((25 + 30) / 2)
    assert treated["attach_rate"] == pytest.approx(1 / 2)
    assert set(outcomes.uplift["arm"]) == {"treatment"}


def test_events_read_from_the_serving_database(tmp_path: Path) -> None:
    from recsys.serving.store import ServingStore

    url = f"sqlite:///{tmp_path / 'events.db'}"
    store = ServingStore(url)
    log = small_log()
    for row in log.to_dict("records"):  # 26 events through the API's own writer
        store.add_event({k: (None if pd.isna(v) else v) for k, v in row.items()})
    store.dispose()
    stored = load_events(url)
    assert len(stored) == len(log)
    from_db = measure_outcomes(stored, ONE_ARM).metrics
    from_frame = measure_outcomes(log, ONE_ARM).metrics
    pd.testing.assert_frame_equal(from_db, from_frame)


def test_report_is_self_contained(tmp_path: Path) -> None:
    from tests.test_analytics_clv import small_shop_orders

    orders, catalog = small_shop_orders()
    data = tmp_path / "data"
    data.mkdir()
    orders.to_parquet(data / "orders.parquet", index=False)
    catalog.to_parquet(data / "catalog.parquet", index=False)
    events, _ = _generated_log(300, 5, {"control": 0.5, "recommendations": 0.5},
                               {"control": 0.2, "recommendations": 0.3})
    config = AnalyticsConfig(experiment=ExperimentConfig(salt="gen", bootstrap_samples=200,
                                                         split={"control": 0.5,
                                                                "recommendations": 0.5}))
    out = build_report(data, tmp_path / "report.html", events=events, config=config,
                       ab_test=True)
    text = out.read_text(encoding="utf-8")
    assert text.count("<svg") == 5  # cohorts, CLV, segments, order value, uplift
    for heading in ("Cohort retention", "Customer lifetime value", "RFM segments",
                    "Repurchase cycles", "Recommendation outcomes", "Definitions"):
        assert f"<h2>{heading}</h2>" in text
    assert "<script" not in text and "@import" not in text and "<link" not in text
    assert not re.search(r"""(src|href)\s*=\s*["'](https?:)?//""", text)
    assert "http://" not in text and "https://" not in text
    without = build_report(data, tmp_path / "plain.html", config=config).read_text()
    assert "No recommendation events" in without and without.count("<svg") == 3


# -- without an experiment (ab_test = false): exposure groups, labelled observational ----------

def _with_unexposed_buyer(log: pd.DataFrame) -> pd.DataFrame:
    """The log plus customer c8, who buys P8 (2 x 25) and was never shown a list."""
    extra = _event("purchase", 30, product="P8", session="s9", customer="c8", order="o8",
                   quantity=2, price=25)
    return pd.concat([log, pd.DataFrame([extra])], ignore_index=True)


def test_without_an_experiment_units_are_grouped_by_exposure() -> None:
    """No arm is drawn: the exposed group is every unit that saw a list (all of the small log),
    with the small log's figures; c8 alone is not exposed; no uplift."""
    config = ExperimentConfig(bootstrap_samples=200)  # two arms configured, none used
    outcomes = measure_outcomes(_with_unexposed_buyer(small_log()), config, experiment=False)
    assert outcomes.observational and outcomes.control_arm == ""
    assert set(outcomes.metrics["arm"]) == {EXPOSED, NOT_EXPOSED}
    assert outcomes.figures["design"] == "observational"
    assert outcomes.uplift.empty
    exposed = _estimates(outcomes, "all", EXPOSED)
    reference = _estimates(measure_outcomes(small_log(), ONE_ARM), "all")
    assert exposed == pytest.approx(reference, nan_ok=True)
    unexposed = _estimates(outcomes, "all", NOT_EXPOSED)
    assert np.isnan(unexposed["click_through_rate"])  # it was shown nothing
    assert unexposed["order_value"] == 50 and unexposed["attach_rate"] == 0.0
    assert unexposed["revenue_per_unit"] == 50


def _report_data(tmp_path: Path) -> Path:
    from tests.test_analytics_clv import small_shop_orders

    orders, catalog = small_shop_orders()
    data = tmp_path / "data"
    data.mkdir()
    orders.to_parquet(data / "orders.parquet", index=False)
    catalog.to_parquet(data / "catalog.parquet", index=False)
    return data


def _tables(text: str) -> list[tuple[list[str], list[list[str]]]]:
    """Each table's header cells and body rows, as the raw <th>/<td> tags."""
    found = []
    for body in re.findall(r"<table>(.*?)</table>", text, flags=re.S):
        head = re.findall(r"<th(?:\s[^>]*)?>", body.split("</thead>")[0])
        rows = [re.findall(r"<td(?:\s[^>]*)?>", row) for row in
                re.findall(r"<tr>(.*?)</tr>", body.split("<tbody>")[1], flags=re.S)]
        found.append((head, rows))
    return found


def test_report_without_an_experiment_shows_no_arms(tmp_path: Path) -> None:
    events, _ = _generated_log(300, 5, {"control": 0.5, "recommendations": 0.5},
                               {"control": 0.2, "recommendations": 0.3})
    never_shown = pd.DataFrame({
        "event_type": "purchase", "customer_id": [f"z{i}" for i in range(20)],
        "session_id": [f"z{i}-s" for i in range(20)], "product_id": "N0",
        "order_id": [f"z{i}" for i in range(20)], "price": 15.0, "quantity": 1.0,
        "occurred_at": T0})
    events = pd.concat([events, never_shown], ignore_index=True)
    config = AnalyticsConfig(experiment=ExperimentConfig(salt="gen", bootstrap_samples=200))
    text = build_report(_report_data(tmp_path), tmp_path / "report.html", events=events,
                        config=config).read_text(encoding="utf-8")
    section = text.split("<h2>Recommendation outcomes</h2>")[1].split("<h2>Definitions")[0]
    assert "observational, no experiment (ab_test = false)" in section
    assert "Orders per group (observational)" in section
    assert "<td>control</td>" not in section and "<td>recommendations</td>" not in section
    assert "(control:" not in section
    assert "best sellers" not in section and "uplift over" not in section
    assert f"<td>{EXPOSED}</td>" in section and f"<td>{NOT_EXPOSED}</td>" in section
    assert "No uplift is computed" in section
    assert text.count("<svg") == 4  # cohorts, CLV, segments, order value: no uplift chart
    assert "Not enough data to draw this chart." not in text


def test_report_leaves_out_empty_uplift_rows_and_names_undrawn_charts(tmp_path: Path) -> None:
    """A/B log without purchases: order-value metrics cannot be computed, so their uplift rows
    are left out and the order-value chart is named as not drawn, above the uplift chart that
    is; click-through uplift is there."""
    events, _ = _generated_log(300, 5, {"control": 0.5, "recommendations": 0.5},
                               {"control": 0.2, "recommendations": 0.3})
    events = events[events["event_type"] != "purchase"]
    split = {"control": 0.5, "recommendations": 0.5}
    config = AnalyticsConfig(experiment=ExperimentConfig(salt="gen", bootstrap_samples=200,
                                                         split=split))
    outcomes = measure_outcomes(events, config.experiment)
    assert outcomes.uplift["uplift"].isna().any()  # what the report must not show
    text = build_report(_report_data(tmp_path), tmp_path / "report.html", events=events,
                        config=config, ab_test=True).read_text(encoding="utf-8")
    assert "Not enough data to draw this chart." not in text
    assert "No order value chart: not enough data to draw it." in text
    assert text.count("<svg") == 4  # cohorts, CLV, segments, uplift
    last = text.split("Relative uplift of each arm")[1]
    head = re.findall(r"<th(?:\s[^>]*)?>([^<]*)</th>", last)
    assert head == ["placement", "arm", "metric", "uplift"]
    uplift_cells = re.findall(r'<td class="num">([^<]*)</td></tr>', last)
    assert uplift_cells and all(c.strip() for c in uplift_cells)
    assert len(uplift_cells) == int(outcomes.uplift["uplift"].notna().sum())
    assert "<td>Click-through rate</td>" in last


def test_report_table_headers_align_with_their_columns(tmp_path: Path) -> None:
    """Numeric columns are right-aligned headers included (the repurchase table's were not)."""
    events, _ = _generated_log(100, 5, {"control": 0.5, "recommendations": 0.5},
                               {"control": 0.2, "recommendations": 0.3})
    text = build_report(_report_data(tmp_path), tmp_path / "report.html", events=events,
                        ab_test=True).read_text(encoding="utf-8")
    assert "th.num{text-align:right}" in text
    cycles = text.split("<h2>Repurchase cycles</h2>")[1].split("<h2>")[0]
    assert "<table>" in cycles  # the small shop has repurchase cycles
    tables = _tables(text)
    assert len(tables) >= 5
    for head, rows in tables:
        aligned = ['class="num"' in th for th in head]
        for row in rows:
            assert ['class="num"' in td for td in row] == aligned


@pytest.mark.parametrize("ab_test", [False, True])
def test_recsys_report_follows_the_servers_ab_test(tmp_path: Path, ab_test: bool) -> None:
    """`recsys report` reads [serving] ab_test: arms only when the experiment ran."""
    from recsys.cli import main
    from recsys.serving.store import ServingStore

    url = f"sqlite:///{tmp_path / 'events.db'}"
    store = ServingStore(url)
    for row in small_log().to_dict("records"):
        store.add_event({k: (None if pd.isna(v) else v) for k, v in row.items()})
    store.dispose()
    config = tmp_path / "recsys.toml"
    config.write_text(f'[serving]\ndatabase_url = "{url}"\nab_test = {str(ab_test).lower()}\n'
                      "[analytics.experiment]\nbootstrap_samples = 100\n", encoding="utf-8")
    out = tmp_path / "report.html"
    assert main(["-q", "report", "--config", str(config), "--data", str(_report_data(tmp_path)),
                 "--out", str(out)]) == 0
    section = out.read_text(encoding="utf-8").split("<h2>Recommendation outcomes</h2>")[1]
    assert ("observational, no experiment" in section) is not ab_test
    assert ("<td>control</td>" in section) is ab_test


def test_recsys_report_before_the_server_stored_any_event(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The server's database does not exist yet (a shop that has not served): the report is
    written without the outcomes, says why, and creates no database file."""
    from recsys.cli import main

    missing = tmp_path / "var" / "recsys.db"
    config = tmp_path / "recsys.toml"
    config.write_text(f'[serving]\ndatabase_url = "sqlite:///{missing}"\n', encoding="utf-8")
    out = tmp_path / "report.html"
    assert main(["-q", "report", "--config", str(config), "--data", str(_report_data(tmp_path)),
                 "--out", str(out)]) == 0
    assert "holds no events yet" in capsys.readouterr().err
    text = out.read_text(encoding="utf-8")
    assert "<h2>Customer lifetime value</h2>" in text and "<h2>Cohort retention</h2>" in text
    assert "no outcomes are measured" in text and not missing.exists()
