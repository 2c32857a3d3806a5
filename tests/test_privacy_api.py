"""Issue #14, privacy on the serving side: ``POST /admin/forget`` erases customers everywhere
(their buffered events too) and the server then serves a version without them; the access log
holds a keyed hash of customer ids, never the id."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from recsys.app import create_app
from recsys.cli import main
from recsys.config import ServingSettings, load_config
from recsys.serving.observe import log_key, logged_path
from recsys.serving.state import ServingState
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
                            "session_id": SESSION})
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
        assert done["version"] != before and done["versions"][before] == done["version"]
        assert client.get("/readyz").json()["version"] == done["version"]
        assert state.store.count_events(customer_id=GONE) == 0
        assert state.store.count_events(customer_id=KEPT[0]) == 1
        model = state.index.customer_model if state.index else None
        assert model is not None and GONE not in model.customers and KEPT[0] in model.customers
    assert findable(tmp_path / "artifacts", [GONE, SESSION]) == []
    assert findable(tmp_path / "data", [GONE, SESSION]) == []
