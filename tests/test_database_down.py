"""Issue #14 point 8: serving never depends on the database being up.

The server starts with PostgreSQL refusing connections (a closed port), serves
recommendations, buffers events on disk (202), answers 503 with Retry-After for what needs the
database (admin decisions, a full buffer), reports ``database: degraded`` in /readyz, and
writes the buffered events when the database is back (SQLite, and the real PostgreSQL).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine

from recsys.app import create_app
from recsys.config import ServingSettings
from recsys.serving.spool import EventSpool, SpoolFull
from recsys.serving.state import ServingState

KEY = "database-down-admin-key-0123456789"
REFUSED = "postgresql+psycopg://postgres@127.0.0.1:1/test"  # nothing listens on port 1


@pytest.fixture(scope="module")
def artifacts(demo_artifact: Path) -> Path:
    return demo_artifact  # served read only; the event buffer is each test's own


@pytest.fixture
def serve(artifacts: Path, tmp_path: Path) -> Callable[..., AbstractContextManager[TestClient]]:
    @contextmanager
    def make(**settings: object) -> Iterator[TestClient]:
        values: dict[str, Any] = {
            "artifacts": str(artifacts), "api_key": KEY, "reload_interval_s": 0,
            "database_url": REFUSED, "data_dir": str(tmp_path / "data"),
            "session_secret_file": str(tmp_path / "secret"),  # not in the shared store
            "decisions_refresh_s": 0, "database_retry_s": 3600, **settings}
        with TestClient(create_app(ServingSettings(**values))) as client:
            yield client

    return make


def event(session: str) -> dict[str, object]:
    return {"event_type": "view", "product_id": "P00001", "session_id": session,
            "customer_id": "C000042"}


def serving_state(client: TestClient) -> ServingState:
    state: ServingState = client.app.state.serving  # type: ignore[attr-defined]
    return state


def test_serves_buffers_and_recovers(serve: Callable[..., AbstractContextManager[TestClient]],
                                     tmp_path: Path) -> None:
    with serve() as client:
        ready = client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["database"] == "degraded" and ready.json()["status"] == "ready"
        assert client.get("/v1/popular", params={"k": 3}).status_code == 200
        assert client.get("/v1/items/P00001/bought-together").status_code == 200
        assert client.post("/v1/cart/add-ons", json={"items": [{"product_id": "P00001"}]}
                           ).status_code == 200
        session = uuid.uuid4().hex
        for _ in range(3):
            answer = client.post("/v1/events", json=event(session))
            assert answer.status_code == 202
            assert answer.json()["buffered"] is True and answer.json()["id"] is None
        assert client.get("/readyz").json()["buffered_events"] == 3
        decisions = client.get("/admin/decisions", headers={"X-API-Key": KEY})
        assert decisions.status_code == 503 and decisions.headers["Retry-After"] == "3600"
        # the database comes back (here: the URL switched to a working one)
        state = serving_state(client)
        state.store.engine = create_engine(f"sqlite:///{tmp_path / 'back.db'}")
        state.keep_database()
        ready = client.get("/readyz").json()
        assert ready["database"] == "ok" and ready["buffered_events"] == 0
        assert state.store.count_events(session_id=session) == 3
        assert client.get("/admin/decisions", headers={"X-API-Key": KEY}).status_code == 200
        stored = client.post("/v1/events", json=event(session))
        assert stored.status_code == 201 and stored.json()["buffered"] is False


def test_a_full_buffer_answers_503_with_retry_after(
        serve: Callable[..., AbstractContextManager[TestClient]]) -> None:
    with serve(event_buffer_bytes=1024, database_retry_s=7) as client:
        answers = [client.post("/v1/events", json=event("s1")) for _ in range(10)]
        codes = [a.status_code for a in answers]
        buffered = codes.count(202)
        assert buffered >= 1 and codes == [202] * buffered + [503] * (10 - buffered)
        full = answers[-1]
        assert full.headers["Retry-After"] == "7"
        assert "buffer" in full.json()["detail"] and "full" in full.json()["detail"]
        assert client.get("/readyz").json()["buffered_events"] == buffered


def test_buffered_events_reach_postgresql(serve: Callable[..., AbstractContextManager[TestClient]],
                                          postgres_url: str) -> None:
    with serve() as client:
        session = uuid.uuid4().hex
        assert client.post("/v1/events", json=event(session)).status_code == 202
        state = serving_state(client)
        state.store.engine = create_engine(postgres_url)
        state.keep_database()
        assert client.get("/readyz").json()["database"] == "ok"
        assert state.store.count_events(session_id=session) == 1


def test_the_buffer_file(tmp_path: Path) -> None:
    spool = EventSpool(tmp_path / "d" / "buffer.jsonl", max_bytes=10_000)
    spool.append({"customer_id": "C1", "session_id": "s1", "event_type": "view"})
    spool.append({"customer_id": None, "session_id": "s1", "event_type": "view"})
    spool.append({"customer_id": "C2", "session_id": "s2", "event_type": "view"})
    assert (spool.path.stat().st_mode & 0o777) == 0o600
    assert spool.erase(["C1"]) == 2 and spool.count() == 1
    with spool.path.open("ab") as handle:
        handle.write(b'{"torn": ')  # a crash mid-write
    seen: list[list[dict[str, object]]] = []

    def fail(events: list[dict[str, object]]) -> None:
        raise OSError("still down")

    with pytest.raises(OSError):
        spool.drain(fail)
    assert spool.count() == 2  # a failed write keeps everything
    assert spool.drain(seen.append) == 1 and seen[0][0]["customer_id"] == "C2"
    assert spool.count() == 0
    small = EventSpool(tmp_path / "small.jsonl", max_bytes=10)
    with pytest.raises(SpoolFull, match="full"):
        small.append({"customer_id": "C1"})
