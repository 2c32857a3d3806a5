"""The session_tuning job (``recsys.session_tuning``): its cases are the next cart adds of
sessions the served version never saw; it scores exactly what the API serves; its choice
follows the shop (a planted shop whose next cart add goes with the older basket product
gets a heavy session, one whose next add goes with the product on screen a light one); the
server applies the choice unless the config pins a value; quiet days keep the last choice."""

from __future__ import annotations

import json
import shutil
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from recsys import layout
from recsys.app import create_app
from recsys.config import Config, ServingSettings
from recsys.pipeline import run_pipeline
from recsys.serving.session_weights import SessionWeights, line_decay_of, session_weights_of
from recsys.session_tuning import (
    Previous,
    basket_events,
    baskets_after,
    cases_of,
    data_until,
    latest_time,
    previous_version,
    run_session_tuning_job,
)

GROUPS, PER_GROUP = 6, 15
START = pd.Timestamp("2025-01-01")


def product(group: int, n: int) -> str:
    return f"g{group}p{n:02d}"


def write_shop(folder: Path, orders: int = 3000, seed: int = 3) -> dict[str, Path]:
    """Products in groups of 15 always bought within their group (2-4 at a time): each
    product's bought-together list is ten of its group, and nothing of another group."""
    rng = np.random.default_rng(seed)
    rows = []
    for o in range(orders):
        group = int(rng.integers(GROUPS))
        for n in rng.choice(PER_GROUP, size=int(rng.integers(2, 5)), replace=False):
            rows.append((f"o{o}", product(group, int(n)), f"c{o % 400}",
                         START + pd.Timedelta(minutes=30 * o), 1, 5.0))
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=["order_id", "product_id", "customer_id", "ordered_at",
                                "quantity", "unit_price"]).to_csv(folder / "orders.csv",
                                                                   index=False)
    pd.DataFrame([(product(g, n), f"Product {g}-{n}", f"Group {g}", 5.0, True)
                  for g in range(GROUPS) for n in range(PER_GROUP)],
                 columns=["product_id", "name", "category", "price", "in_stock"]).to_csv(
        folder / "catalog.csv", index=False)
    return {"orders": folder / "orders.csv", "catalog": folder / "catalog.csv"}


def config_of(tmp: Path, models: dict[str, Any] | None = None, server_events: bool = False,
              **serving: Any) -> Config:
    files = write_shop(tmp / "raw") if not (tmp / "raw").exists() else {
        "orders": tmp / "raw" / "orders.csv", "catalog": tmp / "raw" / "catalog.csv"}
    ingest = {"orders": str(files["orders"]), "catalog": str(files["catalog"]),
              "server_events": server_events}
    return Config.model_validate({
        "data_dir": str(tmp / "data"), "artifacts": {"root": str(tmp / "artifacts")},
        "popularity": {"window_days": 0}, "ingest": ingest,
        "models": {"session_tune_min_cases": 50, **(models or {})},
        "serving": {"database_url": f"sqlite:///{tmp / 'ev.db'}", **serving}})


def baskets(kind: str, sessions: int = 150, seed: int = 7) -> list[list[str]]:
    """Baskets of three cart adds: x of one group, y of another (then on screen), and the
    target: another of x's group (``older``) or of y's (``on_screen``). (The second add, y,
    is a case too, one no list can hit: half the cases.)"""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(sessions):
        a, b = rng.choice(GROUPS, size=2, replace=False)
        x, y, t = rng.choice(PER_GROUP, size=3, replace=False)
        target = product(int(a), int(t)) if kind == "older" else product(int(b), int(t))
        out.append([product(int(a), int(x)), product(int(b), int(y)), target])
    return out


def cart_events(baskets_: list[list[str]], after: pd.Timestamp) -> pd.DataFrame:
    rows = []
    for s, basket in enumerate(baskets_):
        for i, pid in enumerate(basket):
            rows.append((pid, "add_to_cart", after + pd.Timedelta(hours=1 + s, seconds=i),
                         f"s{s}", None))
    return pd.DataFrame(rows, columns=["product_id", "event_type", "occurred_at",
                                       "session_id", "customer_id"])


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The planted shop's first version (no cart events yet)."""
    tmp = tmp_path_factory.mktemp("tuning_shop")
    _, manifest = run_pipeline(config_of(tmp), show_progress=False)
    assert manifest.metrics["session_tuning"]["skipped"] == "no version served yet"
    return tmp


UNTIL = pd.Timestamp("2026-01-01")  # this run's data_until, as the pipeline gives it


def tune(shop: Path, tmp: Path, kind: str, sessions: int = 150,
         previous: Previous | None = None, models: dict[str, Any] | None = None,
         **serving: Any) -> dict[str, Any]:
    """The job on ``kind`` baskets after the shop's first version, scored with it."""
    previous = previous or previous_version(shop / "artifacts")
    assert previous is not None
    events = cart_events(baskets(kind, sessions), previous.since)
    (tmp / "out").mkdir(parents=True, exist_ok=True)
    return run_session_tuning_job(config_of(shop, models=models, **serving), tmp / "out",
                                  previous,
                                  partial(baskets_after, events), UNTIL)


def test_cases_are_the_next_cart_adds_of_sessions_the_version_never_saw() -> None:
    since = pd.Timestamp("2025-03-01")
    later = since + pd.Timedelta(hours=1)
    events = pd.DataFrame({
        "session_id": ["s1", "s1", "s1", "s1", "old", "old", "s2", "s2", "s3", "s3", "s1"],
        "product_id": ["b", "a", "b", "x", "a", "b", "a", "c", "c", "a", "c"],
        "occurred_at": [later + pd.Timedelta(minutes=m) for m in (1, 0, 2, 3)]
        + [since, later, later, later, later, later + pd.Timedelta(minutes=1),
           later + pd.Timedelta(minutes=9)]})
    known = {"a": 0, "b": 1, "c": 2}
    cases = cases_of(events, since, known, limit=100)
    # s1: a, b (again: once), x (unknown: no case with it), c; "old" began at `since`;
    # s2's two adds at the same time keep the table's order
    assert sorted(cases) == sorted([("s1", ("a",), "b"), ("s2", ("a",), "c"),
                                    ("s3", ("c",), "a")])
    assert len({c.session for c in cases_of(events, since, known, limit=1)}) == 1


def test_the_data_directory_and_memory_give_the_same_events_and_times(tmp_path: Path) -> None:
    """The Spark engine's reads (the data directory, filtered) equal the local engine's."""
    orders = pd.DataFrame({"ordered_at": [START, START + pd.Timedelta(days=3)]})
    orders.to_parquet(tmp_path / "orders.parquet")
    assert data_until(tmp_path) == latest_time(orders, None) == START + pd.Timedelta(days=3)
    events = cart_events(baskets("older", sessions=5), START + pd.Timedelta(days=5))
    events.loc[3, "event_type"] = "view"
    events.loc[4, "session_id"] = None
    events.to_parquet(tmp_path / "events.parquet")
    assert data_until(tmp_path) == latest_time(orders, events) == events["occurred_at"].max()
    timeless = pd.DataFrame({"order_id": ["o1"]})  # orders may have no times
    assert latest_time(timeless, None) is None
    timeless.to_parquet(tmp_path / "orders.parquet")
    assert data_until(tmp_path) == latest_time(timeless, events) == events["occurred_at"].max()
    since = events["occurred_at"].iloc[2]
    read, held = basket_events(tmp_path, since), baskets_after(events, since)
    pd.testing.assert_frame_equal(read, held, check_dtype=False)
    assert len(held) == len(events) - 3 - 2  # three before or at since, a view, no session


@pytest.mark.parametrize(("kind", "heavy"), [("older", True), ("on_screen", False)])
def test_the_choice_follows_the_shop(shop: Path, tmp_path: Path, kind: str,
                                     heavy: bool) -> None:
    report = tune(shop, tmp_path, kind)
    assert report["cases"] == 300 and report["sessions"] == report["sessions_read"] == 150
    grid, lines = report["bought_together hr@10 by weight/decay"], report[
        "cart hr@10 by line_decay"]
    weight = report["bought_together"]["session_weight"]
    line_decay = report["cart"]["line_decay"]
    assert report["bought_together"]["chosen_by"] == report["cart"]["chosen_by"] == "validation"
    assert grid[f"{weight}/{report['bought_together']['session_decay']}"] == max(grid.values())
    assert lines[str(line_decay)] == max(lines.values())
    if heavy:  # the next add goes with the older product: weigh the session, every line alike
        assert weight >= 1.0 and line_decay >= 0.8
        assert grid["4.0/1.0"] > grid["0.1/0.5"] + 0.2 and lines["1.0"] > lines["0.1"] + 0.1
    else:  # with the product on screen: a light session, the latest line first
        assert weight <= 0.3 and line_decay <= 0.5
        assert grid["0.1/0.5"] > grid["4.0/1.0"] + 0.2 and lines["0.1"] > lines["1.0"] + 0.1
    written = json.loads((tmp_path / "out" / "session_weights.json").read_text())
    assert written["bought_together"]["session_weight"] == weight
    assert written["data_until"] == str(UNTIL)


def test_the_job_scores_what_the_api_serves(shop: Path, tmp_path: Path) -> None:
    """The report's hit rates at the settings in force equal those of the API itself, fed
    the same sessions one cart add at a time (the live store, the placements' evidence)."""
    report = tune(shop, tmp_path, "older")
    settings = ServingSettings(artifacts=str(shop / "artifacts"),
                               database_url=f"sqlite:///{tmp_path / 'api.db'}",
                               reload_interval_s=0, decisions_refresh_s=0, events_per_minute=0)
    hits = {"bought": 0, "cart": 0}
    cases = 0
    with TestClient(create_app(settings)) as client:
        for s, basket in enumerate(baskets("older")):
            for i, pid in enumerate(basket):
                if i:
                    shown = client.get(f"/v1/items/{basket[i - 1]}/bought-together",
                                       params={"session_id": f"api{s}", "in_stock_only": False})
                    cart = client.post("/v1/cart/add-ons?in_stock_only=false", json={
                        "items": [{"product_id": p} for p in basket[:i]],
                        "session_id": f"api{s}"})
                    hits["bought"] += pid in {x["product_id"] for x in shown.json()["items"]}
                    hits["cart"] += pid in {x["product_id"] for x in cart.json()["items"]}
                    cases += 1
                response = client.post("/v1/events", json={
                    "event_type": "add_to_cart", "product_id": pid, "session_id": f"api{s}"})
                assert response.status_code == 201, response.text
    assert cases == report["cases"]
    assert report["bought_together hr@10 by weight/decay"]["0.3/0.5"] == round(
        hits["bought"] / cases, 4)
    assert report["cart hr@10 by line_decay"]["0.8"] == round(hits["cart"] / cases, 4)


def test_the_nightly_run_chooses_and_the_server_applies_it(shop: Path, tmp_path: Path) -> None:
    """The cart adds the storefront posts to the server tune the next run (no configuration:
    the run reads the server's stored events) with the first version; the server then weighs
    the session as chosen, unless the config pins it."""
    store = tmp_path / "shop"
    shutil.copytree(shop, store, ignore=shutil.ignore_patterns(".lock", ".staging*"))
    first = previous_version(store / "artifacts")
    assert first is not None
    config = config_of(store, server_events=True)
    storefront = ServingSettings(artifacts=str(store / "artifacts"),
                                 database_url=config.serving.database_url, reload_interval_s=0,
                                 decisions_refresh_s=0, events_per_minute=0)
    with TestClient(create_app(storefront)) as client:
        for n, basket in enumerate(baskets("older")):
            for pid in basket:
                assert client.post("/v1/events", json={
                    "event_type": "add_to_cart", "product_id": pid,
                    "session_id": f"s{n}"}).status_code == 201
    _, manifest = run_pipeline(config, show_progress=False)
    report = manifest.metrics["session_tuning"]
    assert report["previous_version"] == first.version and report["cases"] == 300
    chosen = report["bought_together"]["session_weight"]
    assert chosen >= 1.0
    session = "planted"
    x, y = product(0, 0), product(1, 0)

    def served(**serving: Any) -> list[str]:
        settings = ServingSettings(artifacts=str(store / "artifacts"),
                                   database_url=f"sqlite:///{tmp_path / 'served.db'}",
                                   reload_interval_s=0, decisions_refresh_s=0, **serving)
        with TestClient(create_app(settings)) as client:
            assert client.app.state.serving.index.session_weights.session_weight == chosen  # type: ignore[attr-defined]
            for pid in (x, y):
                client.post("/v1/events", json={"event_type": "add_to_cart", "product_id": pid,
                                                "session_id": session})
            return [i["product_id"] for i in client.get(
                f"/v1/items/{y}/bought-together",
                params={"session_id": session, "in_stock_only": False}).json()["items"]]

    heavy = served()
    light = served(placements={"bought_together": {"session_weight": 0.1}})
    assert sum(p.startswith("g0") for p in heavy) > sum(p.startswith("g0") for p in light)
    # a third run without new sessions keeps the choice (a quiet day)
    _, manifest = run_pipeline(config, show_progress=False)
    kept = manifest.metrics["session_tuning"]
    assert kept["cases"] == 0 and kept["bought_together"]["chosen_by"] == "previous"
    assert kept["bought_together"]["session_weight"] == chosen
    assert kept["chosen_on"] == report["chosen_on"]


def test_a_pinned_setting_is_not_tuned(shop: Path, tmp_path: Path) -> None:
    report = tune(shop, tmp_path, "older", placements={
        "bought_together": {"session_weight": 0.3, "session_decay": 0.5},
        "cart": {"line_decay": 0.8}})
    assert report["skipped"] == "every session weight is pinned in the config"
    assert report["bought_together"]["chosen_by"] == report["cart"]["chosen_by"] == "config"
    half = tune(shop, tmp_path / "half", "older",
                placements={"bought_together": {"session_weight": 0.3}})
    assert set(half["bought_together hr@10 by weight/decay"]) == {"0.3/0.5", "0.3/0.8",
                                                                  "0.3/1.0"}
    assert half["bought_together"]["session_weight"] is None  # the config's applies


def test_the_config_wins_over_the_artifact_over_the_defaults() -> None:
    chosen = SessionWeights(session_weight=2.0, session_decay=0.8, line_decay=0.3)
    plain = ServingSettings()
    assert session_weights_of(plain, chosen, "bought_together") == (2.0, 0.8)
    assert session_weights_of(plain, chosen, "also_viewed") == (0.3, 0.5)  # not tuned
    assert session_weights_of(plain, SessionWeights(), "bought_together") == (0.3, 0.5)
    assert line_decay_of(plain, chosen) == 0.3 and line_decay_of(plain, SessionWeights()) == 0.8
    pinned = ServingSettings(placements={"bought_together": {"session_decay": 1.0},
                                         "cart": {"line_decay": 1.0}})
    assert session_weights_of(pinned, chosen, "bought_together") == (2.0, 1.0)
    assert line_decay_of(pinned, chosen) == 1.0


def test_no_served_version_or_too_few_cases_choose_nothing(shop: Path, tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    report = run_session_tuning_job(config_of(shop), tmp_path / "out", None,
                                    partial(baskets_after, None), None)
    assert report["skipped"] == "no version served yet"
    assert report["bought_together"] == {"session_weight": None, "session_decay": None,
                                         "chosen_by": "default"}
    assert report["data_until"] is None
    ahead = run_session_tuning_job(config_of(shop), tmp_path / "out", None,
                                   partial(baskets_after, None), pd.Timestamp("2999-01-01"))
    assert pd.Timestamp(ahead["data_until"]) <= pd.Timestamp.now(tz="UTC").tz_localize(None)
    previous = previous_version(shop / "artifacts")
    assert previous is not None
    few = Previous(previous.version, previous.root, previous.since, {})
    report = tune(shop, tmp_path, "older", sessions=10, previous=few)
    assert report["cases"] == 20 and "fewer than session_tune_min_cases (50)" in report["skipped"]
    assert report["cart"] == {"line_decay": None, "chosen_by": "default"}
    assert layout.SESSION_WEIGHTS.at(tmp_path / "out").exists()
    # a quiet day keeps the last choice; with the tuning switched off the config applies
    chose = Previous(previous.version, previous.root, previous.since, {
        "cart": {"line_decay": 0.3, "chosen_by": "validation"}, "chosen_on": {"cases": 900}})
    kept = tune(shop, tmp_path, "older", sessions=10, previous=chose)
    assert kept["cart"] == {"line_decay": 0.3, "chosen_by": "previous"}
    assert kept["chosen_on"] == {"cases": 900}
    # a value pinned since the last choice is the config's (null in the file), the other kept
    both = Previous(previous.version, previous.root, previous.since, {"bought_together": {
        "session_weight": 2.0, "session_decay": 0.8, "chosen_by": "validation"}})
    pinned = tune(shop, tmp_path, "older", sessions=10, previous=both,
                  placements={"bought_together": {"session_weight": 0.3}})
    assert pinned["bought_together"] == {"session_weight": None, "session_decay": 0.8,
                                         "chosen_by": "previous"}
    # with no cart event since, the served version is not even loaded
    gone = Previous("missing", tmp_path / "nowhere", previous.since, chose.chosen)
    quiet = run_session_tuning_job(config_of(shop), tmp_path / "out", gone,
                                   partial(baskets_after, None), UNTIL)
    assert quiet["sessions_read"] == 0 and "0 cases, fewer than" in quiet["skipped"]
    assert quiet["cart"] == {"line_decay": 0.3, "chosen_by": "previous"}
    off = tune(shop, tmp_path, "older", sessions=10, previous=chose,
               models={"session_tune_cases": 0})
    assert off["skipped"] == "session_tune_cases = 0"
    assert off["cart"] == {"line_decay": None, "chosen_by": "default"}
