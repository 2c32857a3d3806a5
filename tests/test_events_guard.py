"""POST /v1/events (issue #14, point 7): the storefront key, a rate limit per client shared
through the real Redis (two app instances, as two workers), per worker without it or while it
is down, plausibility checks, idempotency keys on SQLite and PostgreSQL, and retention.
Events need no artifact: these apps serve none."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text, update

from recsys.app import create_app
from recsys.config import ServingSettings
from recsys.serving.event_guard import WINDOW_S, RateLimiter
from recsys.serving.store import EVENTS, ServingStore

STOREFRONT_KEY = "events-storefront-key"
KEYED = {"X-Storefront-Key": STOREFRONT_KEY}
VIEW = {"event_type": "view", "product_id": "P1", "session_id": "s-1"}


def settings(tmp: Path, database_url: str | None = None, **values: Any) -> ServingSettings:
    return ServingSettings(artifacts=str(tmp / "artifacts"), reload_interval_s=0,
                           database_url=database_url or f"sqlite:///{tmp / 'events.db'}",
                           api_key="events-server-key", storefront_key=STOREFRONT_KEY,
                           **values)


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(settings(tmp_path))) as test_client:
        yield test_client


def post(client: TestClient, event: dict[str, Any], **headers: str) -> Any:
    return client.post("/v1/events", json=event, headers={**KEYED, **headers})


def test_events_need_the_storefront_key(client: TestClient) -> None:
    assert client.post("/v1/events", json=VIEW).status_code == 401
    assert client.post("/v1/events", json=VIEW,
                       headers={"X-Storefront-Key": "guess"}).status_code == 401
    assert post(client, VIEW).status_code == 201
    assert client.app.state.serving.store.count_events() == 1  # type: ignore[attr-defined]


def problems(response: Any) -> dict[str, str]:
    assert response.status_code == 422, response.text
    return {p["where"]: p["problem"] for p in response.json()["detail"]}


def test_implausible_events_are_refused_with_the_field_named(client: TestClient) -> None:
    purchase = {**VIEW, "event_type": "purchase", "order_id": "o-1", "quantity": 1,
                "price": 19.9}
    assert post(client, purchase).status_code == 201
    assert "largest plausible price" in problems(post(client, {**purchase, "price": 1e9}))[
        "body.price"]
    assert "event_max_quantity" in problems(post(client, {**purchase, "quantity": 5000}))[
        "body.quantity"]
    now = datetime.now(UTC)
    ahead = (now + timedelta(minutes=10)).isoformat()
    assert "future" in problems(post(client, {**VIEW, "occurred_at": ahead}))["body.occurred_at"]
    naive = (now + timedelta(hours=2)).replace(tzinfo=None).isoformat()  # read as UTC
    assert "body.occurred_at" in problems(post(client, {**VIEW, "occurred_at": naive}))
    skewed = (now + timedelta(minutes=4)).isoformat()  # a client clock a little ahead
    assert post(client, {**VIEW, "occurred_at": skewed}).status_code == 201
    both = problems(post(client, {**purchase, "price": 2e5, "quantity": 2e3}))
    assert set(both) == {"body.price", "body.quantity"}
    assert client.app.state.serving.store.count_events() == 2  # type: ignore[attr-defined]


DATABASES = ["sqlite", pytest.param("postgresql", marks=pytest.mark.services)]


def database_url(database: str, tmp_path: Path, request: pytest.FixtureRequest) -> str | None:
    """A fresh PostgreSQL schema (dropped afterwards) for "postgresql", else None (SQLite)."""
    if database != "postgresql":
        return None
    schema = f"ev_{uuid.uuid4().hex[:10]}"
    base = str(request.getfixturevalue("postgres_url"))
    admin = create_engine(base)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    admin.dispose()
    request.addfinalizer(lambda: _drop(base, schema))
    return f"{base}?options=-csearch_path%3D{schema}"


@pytest.mark.parametrize("database", DATABASES)
def test_a_retried_event_is_stored_once(database: str, tmp_path: Path,
                                        request: pytest.FixtureRequest) -> None:
    url = database_url(database, tmp_path, request)
    with TestClient(create_app(settings(tmp_path, url))) as client:
        store = client.app.state.serving.store  # type: ignore[attr-defined]
        first = post(client, {**VIEW, "event_id": "beacon-1"})
        again = post(client, {**VIEW, "event_id": "beacon-1"})
        assert first.status_code == again.status_code == 201
        assert first.json()["id"] == again.json()["id"]
        by_header = post(client, VIEW, **{"Idempotency-Key": "beacon-2"}).json()["id"]
        assert post(client, VIEW, **{"Idempotency-Key": "beacon-2"}).json()["id"] == by_header
        assert post(client, {**VIEW, "event_id": "beacon-2"}).json()["id"] == by_header
        assert post(client, VIEW).json()["id"] != post(client, VIEW).json()["id"]  # no key
        assert store.count_events() == 4
        assert store.count_events(event_key="beacon-1") == 1
        mismatch = post(client, {**VIEW, "event_id": "a"}, **{"Idempotency-Key": "b"})
        assert mismatch.status_code == 422 and "differ" in mismatch.text
        assert post(client, VIEW, **{"Idempotency-Key": "bad\nkey"}).status_code == 422


@pytest.mark.parametrize("database", DATABASES)
def test_concurrent_writers_store_each_event_once(database: str, tmp_path: Path,
                                                  request: pytest.FixtureRequest) -> None:
    """Two stores (two workers) on one database, eight threads writing at once, each event
    id sent four times: no write fails (SQLite: WAL and a busy timeout, not "database is
    locked"), every id is stored once and answers one row id, unkeyed events all count."""
    url = database_url(database, tmp_path, request) or f"sqlite:///{tmp_path / 'events.db'}"
    stores = [ServingStore(url), ServingStore(url)]
    keyed = [f"k-{i % 40}" for i in range(160)]
    answers: dict[str, set[int]] = {key: set() for key in keyed}
    failures: list[BaseException] = []

    def write(worker: int) -> None:
        store = stores[worker % 2]
        try:
            for i in range(worker, len(keyed), 8):
                answers[keyed[i]].add(store.add_event({**VIEW, "event_key": keyed[i]}))
                store.add_event(VIEW)
        except BaseException as exc:  # noqa: BLE001 - reported below, with the thread's count
            failures.append(exc)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert not failures, failures[:3]
        assert all(len(ids) == 1 for ids in answers.values())
        assert len({ids.pop() for ids in answers.values()}) == 40
        assert stores[0].count_events() == 40 + 160
        assert stores[1].count_events(event_key="k-7") == 1
    finally:
        for store in stores:
            store.dispose()


def test_concurrent_posts_are_never_answered_500(tmp_path: Path) -> None:
    """Concurrent POST /v1/events on the default SQLite store: every one stored (201; WAL
    and the busy timeout: none "database is locked", which was answered 500), each event
    id once."""
    with TestClient(create_app(settings(tmp_path, events_per_minute=0))) as client:
        codes: list[int] = []

        def send(worker: int) -> None:
            for i in range(15):
                codes.append(post(client, {**VIEW, "event_id": f"c-{worker}-{i % 10}"})
                             .status_code)

        threads = [threading.Thread(target=send, args=(w,)) for w in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert codes == [201] * 120, sorted(set(codes))
        store = client.app.state.serving.store  # type: ignore[attr-defined]
        assert store.count_events() == 80


def _drop(base: str, schema: str) -> None:
    engine = create_engine(base)
    with engine.begin() as conn:
        conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    engine.dispose()


def wait_for_a_fresh_window(seconds: float = 10) -> None:
    """Sleep past the next minute boundary if it comes within ``seconds`` (fixed windows)."""
    left = WINDOW_S - time.time() % WINDOW_S
    if left < seconds:
        time.sleep(left + 0.1)


@pytest.mark.services
def test_two_instances_share_the_limit_through_redis(redis_url: str, tmp_path: Path) -> None:
    shared = settings(tmp_path, events_per_minute=5, redis_url=redis_url,
                      redis_prefix=f"test-{uuid.uuid4().hex}")
    wait_for_a_fresh_window()
    with TestClient(create_app(shared)) as one, TestClient(create_app(shared)) as two:
        answers = [post(c, VIEW).status_code for c in (one, two, one, two, one)]
        assert answers == [201] * 5
        refused = post(two, VIEW)
        assert refused.status_code == 429
        assert 1 <= int(refused.headers["Retry-After"]) <= WINDOW_S + 1
        assert "5 events a minute" in refused.json()["detail"]
        assert post(one, VIEW).status_code == 429
        assert one.app.state.serving.store.count_events() == 5  # type: ignore[attr-defined]


def test_without_redis_each_worker_counts_alone(tmp_path: Path) -> None:
    alone = settings(tmp_path, events_per_minute=3)
    wait_for_a_fresh_window()
    with TestClient(create_app(alone)) as one, TestClient(create_app(alone)) as two:
        assert [post(one, VIEW).status_code for _ in range(4)] == [201] * 3 + [429]
        assert [post(two, VIEW).status_code for _ in range(4)] == [201] * 3 + [429]


def test_while_redis_is_down_the_limit_is_per_worker(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    down = settings(tmp_path, events_per_minute=2, redis_url="redis://127.0.0.1:1/0")
    wait_for_a_fresh_window()
    with caplog.at_level(logging.WARNING, logger="recsys.serving"):
        limiter = RateLimiter(down)
        assert [limiter.wait_s("a") for _ in range(2)] == [0, 0]
        assert limiter.wait_s("a") > 0 and limiter.wait_s("b") == 0
    warnings = [r for r in caplog.records if "Redis does not answer" in r.getMessage()]
    assert len(warnings) == 1  # once, not per event
    assert RateLimiter(settings(tmp_path, events_per_minute=0)).wait_s("a") == 0


def test_old_events_are_deleted_at_start_by_the_retention_setting(tmp_path: Path) -> None:
    kept = settings(tmp_path, events_retention_days=30)
    store = ServingStore(kept.database_url)
    old, recent = store.add_event(VIEW), store.add_event(VIEW)
    with store.engine.begin() as conn:
        conn.execute(update(EVENTS).where(EVENTS.c.id == old).values(
            received_at=datetime.now(UTC) - timedelta(days=31)))
        conn.execute(update(EVENTS).where(EVENTS.c.id == recent).values(
            received_at=datetime.now(UTC) - timedelta(days=29)))
    with TestClient(create_app(kept)):
        deadline = time.monotonic() + 10
        while store.count_events() == 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    assert store.count_events() == 1 and store.count_events(id=recent) == 1
    store.dispose()
    forever = settings(tmp_path)  # 0: kept
    with TestClient(create_app(forever)):
        time.sleep(0.2)
    assert ServingStore(forever.database_url).count_events() == 1
