"""Issue #14, privacy on the serving side: ``POST /admin/forget`` erases customers everywhere
(their buffered events and live session lists too) and the server then serves a version
without them; ``recsys forget`` erases the live lists in Redis, and erases nothing while Redis
is down; the access log holds a keyed hash of customer ids, never the id."""

from __future__ import annotations

import json
import logging
import uuid
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from recsys.app import create_app
from recsys.cli import main
from recsys.config import ServingSettings, load_config
from recsys.serving.live import RedisLive
from recsys.serving.observe import log_key, logged_path
from recsys.serving.state import ServingState
from recsys.serving.store import ServingStore
from tests.test_forget import GONE, KEPT, SESSION, findable, store_events, write_shop

KEY = "privacy-admin-key-0123456789abcdefgh"


def test_the_access_log_holds_a_keyed_hash_not_the_id(tmp_path: Path,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    settings = ServingSettings(artifacts=str(tmp_path / "none"), api_key=KEY,
                               reload_interval_s=0,
                               database_url=f"sqlite:///{tmp_path / 'recsys.db'}")
    with TestClient(create_app(settings)) as client, caplog.at_level(logging.INFO,
                                                                     "recsys.access"):
        client.get(f"/v1/customers/{GONE}/recommendations")
        client.get(f"/v1/customers/{GONE}/no-such-thing")
    lines = [json.dumps(getattr(r, "fields", {})) for r in caplog.records
             if r.name == "recsys.access"]
    assert len(lines) == 2
    assert all(GONE not in line for line in lines)
    hashed = logged_path(f"/v1/customers/{GONE}/recommendations", log_key(KEY))
    assert hashed.startswith("/v1/customers/h:") and hashed in lines[0]
    # keyed: without the server's secret, hashing candidate ids does not find the line
    assert logged_path(f"/v1/customers/{GONE}/recommendations", log_key("other-key")) != hashed


def test_admin_forget_erases_everywhere_and_serves_without_them(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'recsys.db'}"
    config = write_shop(tmp_path, url)
    assert main(["-q", "run", "--config", str(config)]) == 0
    store_events(url)
    settings = load_config(config).serving_settings(api_key=KEY, reload_interval_s=0)
    with TestClient(create_app(settings)) as client:
        before = client.get("/readyz").json()["version"]
        state: ServingState = client.app.state.serving  # type: ignore[attr-defined]
        state.spool.append({"event_type": "view", "product_id": "mug", "customer_id": GONE,
                            "session_id": "s-buffered"})
        for session, customer in ((SESSION, None), (None, GONE), ("s-buffered", None),
                                  ("s2", KEPT[0])):  # the live lists (this worker's memory)
            state.live.record("view", "mug", session, customer)
        body = {"customer_ids": [GONE]}
        assert client.post("/admin/forget", json=body).status_code == 401
        assert client.post("/admin/forget", json={"customer_ids": []},
                           headers={"X-API-Key": KEY}).status_code == 422
        answer = client.post("/admin/forget", json=body, headers={"X-API-Key": KEY})
        assert answer.status_code == 200, answer.text
        assert GONE not in answer.text and SESSION not in answer.text
        done = answer.json()
        assert done["customers"] == 1
        assert done["rows"]["database: events"] == 3 and done["rows"]["buffered events"] == 1
        assert done["rows"]["live: recent products"] == 3  # GONE's, SESSION's, s-buffered's
        assert [state.live.recent(session_id=s).products for s in (SESSION, "s-buffered")] == [
            [], []]
        assert client.get(f"/v1/customers/{GONE}/recently-viewed",
                          headers={"X-API-Key": KEY}).json()["items"] == []
        assert state.live.recent(customer_id=KEPT[0]).products == ["mug"]
        assert state.live.recent(session_id="s2").products == ["mug"]
        assert done["version"] != before and done["versions"][before] == done["version"]
        assert client.get("/readyz").json()["version"] == done["version"]
        assert state.store.count_events(customer_id=GONE) == 0
        assert state.store.count_events(customer_id=KEPT[0]) == 1
        model = state.index.customer_model if state.index else None
        assert model is not None and GONE not in model.customers and KEPT[0] in model.customers
    assert findable(tmp_path / "artifacts", [GONE, SESSION]) == []
    assert findable(tmp_path / "data", [GONE, SESSION]) == []


def redis_config(tmp_path: Path, database_url: str, redis_url: str) -> Path:
    config = write_shop(tmp_path, database_url)  # its last table is [serving]
    config.write_text(config.read_text() + f'redis_url = "{redis_url}"\n'
                      f'redis_prefix = "recsys-test-{uuid.uuid4().hex}"\n')
    return config


def test_recsys_forget_drops_the_live_lists_in_redis(tmp_path: Path, redis_url: str,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'recsys.db'}"
    config = redis_config(tmp_path, url, redis_url)
    store_events(url)  # GONE's purchase in SESSION
    settings = load_config(config).serving_settings()
    live = RedisLive(settings, redis_url)
    for session, customer in ((SESSION, None), (None, GONE), ("s2", KEPT[0])):
        live.record("add_to_cart", "mug", session, customer)
    assert main(["-q", "forget", "--config", str(config), GONE]) == 0
    assert json.loads(capsys.readouterr().out)["rows"]["live: recent products"] == 2
    assert live.recent(session_id=SESSION).products == live.recent(customer_id=GONE).products == []
    assert live.recent(session_id="s2").products == live.recent(customer_id=KEPT[0]).products == [
        "mug"]
    live.close()


def test_forget_with_redis_down_erases_nothing(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'recsys.db'}"
    config = redis_config(tmp_path, url, "redis://127.0.0.1:1/0")  # nothing listens there
    store_events(url)
    assert main(["-q", "forget", "--config", str(config), GONE]) == 1
    assert "did not erase the live session lists" in capsys.readouterr().err
    store = ServingStore(url)
    try:
        assert store.count_events(customer_id=GONE) == 2  # a retry finds everything again
    finally:
        store.dispose()
