"""Keys, console sessions and docs (issue #14, points 3, 4, 9 and 10's serving part), over the
small shop of conftest: the storefront and server keys and the customer token on every list
route (fast path and routes alike), purchase details only for the server key, a session secret
nobody knows, sessions revoked by sign-out and by `recsys users`, docs off in production."""

from __future__ import annotations

import hashlib
import hmac
import io
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from itsdangerous import URLSafeTimedSerializer
from sqlalchemy import create_engine, text

from recsys.app import create_app
from recsys.cli import main
from recsys.config import DEFAULT_API_KEY, Config, ServingSettings, load_config
from recsys.console.passwords import hash_password
from recsys.console.secret import secret_path, session_secret
from recsys.console.session import COOKIE
from recsys.errors import ConfigError
from recsys.pipeline import run_pipeline
from recsys.serving.keys import PURCHASE_DETAILS, customer_token
from recsys.serving.store import ServingStore
from tests.conftest import write_small_config

SERVER_KEY = "server-key-for-the-auth-tests-0123456789"
STOREFRONT_KEY = "public-storefront-key-1"
SERVER = {"X-API-Key": SERVER_KEY}
STOREFRONT = {"X-Storefront-Key": STOREFRONT_KEY}
PASSWORD = "alice-password-1"
CUSTOMER = "c1"  # the small shop's customer with repeat purchases (tea twice)


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small shop published once; its config."""
    # not the shared demo shop: the tests name the small shop's customers and products
    config = write_small_config(tmp_path_factory.mktemp("auth"))
    run_pipeline(load_config(config), show_progress=False)
    return config


def settings_for(config: Path, tmp: Path, **values: Any) -> ServingSettings:
    base = load_config(config).serving_settings()
    return base.model_copy(update={"database_url": f"sqlite:///{tmp / 'recsys.db'}", **values})


@pytest.fixture(scope="module")
def keyed(small: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """The small shop served with a storefront key and a server key."""
    settings = settings_for(small, tmp_path_factory.mktemp("keyed"), api_key=SERVER_KEY,
                            storefront_key=STOREFRONT_KEY)
    with TestClient(create_app(settings)) as client:
        yield client


# -- the storefront key --------------------------------------------------------------------------


STOREFRONT_CALLS: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", "/v1/items/tea/also-viewed", None),
    ("GET", "/v1/items/tea/bought-together", None),
    ("GET", "/v1/items/tea/bundles", None),
    ("GET", "/v1/popular", None),
    ("POST", "/v1/cart/add-ons", {"items": [{"product_id": "tea", "quantity": 1}]}),
    ("POST", "/v1/events", {"event_type": "view", "product_id": "tea", "session_id": "s-1"}),
]


@pytest.mark.parametrize(("method", "path", "body"), STOREFRONT_CALLS,
                         ids=[f"{m} {p}" for m, p, _ in STOREFRONT_CALLS])
def test_storefront_routes_need_the_storefront_or_the_server_key(
        keyed: TestClient, method: str, path: str, body: dict[str, Any] | None) -> None:
    for headers in ({}, {"X-Storefront-Key": "wrong-key"}, {"X-Storefront-Key": SERVER_KEY + "x"},
                    {"X-API-Key": STOREFRONT_KEY}):
        response = keyed.request(method, path, json=body, headers=headers)
        assert response.status_code == 401, (headers, response.text)
        assert "X-Storefront-Key" in response.json()["detail"]
    for headers in (STOREFRONT, SERVER):
        response = keyed.request(method, path, json=body, headers=headers)
        assert response.status_code in (200, 201), (headers, response.text)


def test_the_fast_path_applies_the_same_key_check(small: Path, tmp_path: Path) -> None:
    settings = settings_for(small, tmp_path, api_key=SERVER_KEY, storefront_key=STOREFRONT_KEY)
    with TestClient(create_app(settings)) as fast, \
            TestClient(create_app(settings, fast_path=False)) as routed:
        calls = [("GET", "/v1/items/tea/also-viewed", None),
                 ("POST", "/v1/cart/add-ons", {"items": [{"product_id": "tea"}]})]
        doubled = [(b"x-storefront-key", STOREFRONT_KEY.encode())] * 2
        for method, path, body in calls:
            for headers in ({}, STOREFRONT, SERVER, {"X-Storefront-Key": "nope"}):
                a = fast.request(method, path, json=body, headers=headers)
                b = routed.request(method, path, json=body, headers=headers)
                assert a.status_code == b.status_code, (path, headers)
                assert a.json()["detail" if a.status_code == 401 else "items"] == b.json()[
                    "detail" if b.status_code == 401 else "items"]
            # a repeated key header goes to the route, which reads one of them
            assert fast.request(method, path, json=body,
                                headers=doubled).status_code == routed.request(
                method, path, json=body, headers=doubled).status_code


def test_without_a_storefront_key_the_storefront_routes_are_open(small: Path,
                                                                 tmp_path: Path) -> None:
    with TestClient(create_app(settings_for(small, tmp_path))) as client:
        assert client.get("/v1/items/tea/also-viewed").status_code == 200
        assert client.get("/v1/popular").status_code == 200


def test_production_needs_a_storefront_key_other_than_the_server_key(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECSYS_SERVING_API_KEY", SERVER_KEY)
    config = Config.model_validate({"serving": {"environment": "production"}})
    with pytest.raises(ConfigError, match="storefront_key"):
        config.serving_settings()
    monkeypatch.setenv("RECSYS_SERVING_STOREFRONT_KEY", SERVER_KEY)
    with pytest.raises(ConfigError, match="must differ"):
        config.serving_settings()
    monkeypatch.setenv("RECSYS_SERVING_STOREFRONT_KEY", STOREFRONT_KEY)
    assert config.serving_settings().storefront_key == STOREFRONT_KEY


# -- customer lists: the server key or a customer token ------------------------------------------


def test_a_customer_list_needs_the_server_key_and_only_it_shows_purchase_details(
        keyed: TestClient) -> None:
    path = f"/v1/customers/{CUSTOMER}/recommendations"
    for headers in ({}, STOREFRONT, {"X-API-Key": DEFAULT_API_KEY}, {"X-API-Key": "x" * 40}):
        response = keyed.get(path, headers=headers)
        assert response.status_code == 401, headers
        assert "server key" in response.json()["detail"]
    full = keyed.get(path, params={"k": 10}, headers=SERVER)
    assert full.status_code == 200
    evidence = [item["reason"]["evidence"] for item in full.json()["items"]]
    assert any("times_bought" in e and "days_since_purchase" in e for e in evidence), evidence

    token = customer_token(SERVER_KEY, CUSTOMER, int(time.time()) + 600)
    shown = keyed.get(path, params={"k": 10}, headers={"X-Customer-Token": token})
    assert shown.status_code == 200, shown.text
    items = shown.json()["items"]
    assert [i["product_id"] for i in items] == [i["product_id"] for i in full.json()["items"]]
    for item in items:
        assert not set(item["reason"]["evidence"]) & set(PURCHASE_DETAILS), item


def test_a_customer_token_opens_only_its_customer_and_only_briefly(keyed: TestClient) -> None:
    now = int(time.time())
    good = customer_token(SERVER_KEY, CUSTOMER, now + 600)
    expires, signature = good.split(".")
    refused = {
        "another customer's": customer_token(SERVER_KEY, "c2", now + 600),
        "expired": customer_token(SERVER_KEY, CUSTOMER, now - 1),
        "too long-lived": customer_token(SERVER_KEY, CUSTOMER, now + 7200),
        "signed with another key": customer_token("another-key", CUSTOMER, now + 600),
        "a later expiry": f"{int(expires) + 60}.{signature}",
        "tampered": f"{expires}.{signature[:-1]}{'0' if signature[-1] != '0' else '1'}",
        "not a token": "garbage", "no expiry": f".{signature}", "negative": f"-5.{signature}",
    }
    path = f"/v1/customers/{CUSTOMER}/recommendations"
    for what, token in refused.items():
        assert keyed.get(path, headers={"X-Customer-Token": token}).status_code == 401, what
    assert keyed.get(path, headers={"X-Customer-Token": good}).status_code == 200


def test_malformed_requests_still_answer_422_without_a_key(keyed: TestClient) -> None:
    response = keyed.get("/v1/customers/c%0A1/recommendations")
    assert response.status_code == 422
    assert keyed.get("/v1/popular", params={"k": 0}).status_code == 422


def test_the_openapi_document_declares_the_keys(keyed: TestClient) -> None:
    document = keyed.get("/openapi.json").json()
    schemes = document["components"]["securitySchemes"]
    assert {s["name"] for s in schemes.values()} >= {"X-Storefront-Key", "X-API-Key",
                                                      "X-Customer-Token"}
    customer = document["paths"]["/v1/customers/{customer_id}/recommendations"]["get"]
    assert "401" in customer["responses"]


# -- docs in production --------------------------------------------------------------------------


def test_docs_are_off_in_production(small: Path, tmp_path: Path) -> None:
    production = settings_for(small, tmp_path, environment="production", api_key=SERVER_KEY,
                              storefront_key=STOREFRONT_KEY)
    with TestClient(create_app(production)) as client:
        for path in ("/docs", "/redoc", "/openapi.json"):
            assert client.get(path).status_code == 404, path
        assert client.get("/").json()["docs"] is None
        assert client.get("/v1/popular", headers=STOREFRONT).status_code == 200
    with TestClient(create_app(settings_for(small, tmp_path))) as client:
        assert client.get("/openapi.json").status_code == 200


# -- the session secret --------------------------------------------------------------------------


def forged_cookie(username: str, csrf: str) -> str:
    """A session cookie signed the way the old code did: a key derived from ``change-me``."""
    key = hmac.new(DEFAULT_API_KEY.encode(), b"recsys console session", hashlib.sha256).digest()
    return URLSafeTimedSerializer(key, salt="recsys-console-session").dumps(
        {"u": username, "c": csrf, "f": []})


def console_app(config: Path, tmp: Path, **values: Any) -> FastAPI:
    app = create_app(settings_for(config, tmp, **values))
    assert app.state.serving.load()  # the clients below run without the lifespan
    store = ServingStore(app.state.serving.settings.database_url)
    store.add_user("alice", hash_password(PASSWORD), "editor")
    store.dispose()
    return app


def test_a_cookie_forged_with_the_default_key_is_refused(small: Path, tmp_path: Path) -> None:
    app = console_app(small, tmp_path)  # the default api_key, development mode
    with TestClient(app) as client:
        client.cookies.set(COOKIE, forged_cookie("alice", "forged-token"), path="/console")
        page = client.get("/console/rules", follow_redirects=False)
        assert page.status_code == 303 and "/console/login" in page.headers["location"]
        blocked = client.post("/console/product/decide", follow_redirects=False, data={
            "action": "block", "product": "tea", "reason": "forged",
            "csrf_token": "forged-token"})
        assert blocked.status_code in (401, 403)
        assert app.state.serving.store.list_decisions() == []


def test_the_session_secret_is_random_private_kept_and_shared(small: Path,
                                                              tmp_path: Path) -> None:
    settings = settings_for(small, tmp_path)
    path = secret_path(settings)
    assert path == tmp_path / "recsys.db.session-secret"
    found: list[bytes] = []
    workers = [threading.Thread(target=lambda: found.append(session_secret(settings)))
               for _ in range(8)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert len(set(found)) == 1 and len(found[0]) >= 32
    assert DEFAULT_API_KEY.encode() not in found[0]
    assert path.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir() if "session-secret" in p.name] == [path.name]
    assert session_secret(settings) == found[0]  # kept: the next start signs alike

    other = settings_for(small, tmp_path / "other")
    (tmp_path / "other").mkdir()
    assert session_secret(other) != found[0]  # another server, another secret
    elsewhere = settings.model_copy(update={"database_url": "postgresql://db/shop"})
    assert secret_path(elsewhere) == Path(settings.artifacts) / "session-secret"
    chosen = settings.model_copy(update={"session_secret_file": str(tmp_path / "s" / "key")})
    assert secret_path(chosen) == tmp_path / "s" / "key"
    configured = settings.model_copy(update={"session_secret": "c" * 40})
    assert session_secret(configured) == b"c" * 40


def _secret_in_a_process(settings: ServingSettings) -> bytes:
    return session_secret(settings)


def test_worker_processes_starting_together_share_one_secret(small: Path,
                                                             tmp_path: Path) -> None:
    settings = settings_for(small, tmp_path)
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(4, mp_context=context) as pool:
        found = set(pool.map(_secret_in_a_process, [settings] * 8))
    assert len(found) == 1 and found == {session_secret(settings)}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["recsys.db.session-secret"]


def test_the_session_secret_is_made_at_start(small: Path, tmp_path: Path) -> None:
    settings = settings_for(small, tmp_path)
    with TestClient(create_app(settings)):
        assert secret_path(settings).stat().st_mode & 0o777 == 0o600  # before any console page


def test_without_a_usable_session_secret_the_console_says_so(
        small: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    settings = settings_for(small, tmp_path, session_secret_file=str(blocker / "secret"))
    with caplog.at_level(logging.ERROR, logger="recsys.console"), \
            TestClient(create_app(settings)) as client:
        assert client.get("/v1/popular").status_code == 200  # the API serves on
        page = client.get("/console/login")
        assert page.status_code == 503 and "no session secret" in page.text
        assert str(blocker) not in page.text
    logged = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("cannot sign sessions" in m and str(blocker) in m for m in logged)
    assert any("console unavailable" in m for m in logged)


def test_a_session_secret_shorter_than_32_characters_is_refused(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RECSYS_SERVING_SESSION_SECRET", "short")
    with pytest.raises(ConfigError, match="session_secret"):
        Config().serving_settings()
    monkeypatch.delenv("RECSYS_SERVING_SESSION_SECRET")
    short = tmp_path / "secret"
    short.write_text("abc\n")
    short.chmod(0o600)
    settings = Config().serving_settings().model_copy(update={"session_secret_file": str(short)})
    with pytest.raises(ConfigError, match="delete it"):
        session_secret(settings)


def test_the_default_server_key_is_warned_about_at_start(
        small: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="recsys.serving"):
        create_app(settings_for(small, tmp_path))
    assert any(r.levelno >= logging.ERROR and DEFAULT_API_KEY in r.getMessage()
               for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="recsys.serving"):
        create_app(settings_for(small, tmp_path, api_key=SERVER_KEY))
    assert not caplog.records


# -- revoking sessions ---------------------------------------------------------------------------


def csrf_of(client: TestClient) -> str:
    session = client.app.state.console.codec.loads(  # type: ignore[attr-defined]
        client.cookies.get(COOKIE))
    assert session is not None
    return str(session.csrf)


def signed_in(app: FastAPI, password: str = PASSWORD) -> TestClient:
    client = TestClient(app)
    client.get("/console/login")
    response = client.post("/console/login", follow_redirects=False, data={
        "username": "alice", "password": password, "csrf_token": csrf_of(client)})
    assert response.status_code == 303, response.text
    assert client.get("/console/audit", follow_redirects=False).status_code == 200
    return client


def copy_of(client: TestClient, app: FastAPI) -> TestClient:
    """Another browser holding the same cookie (a stolen or a second tab's)."""
    other = TestClient(app)
    other.cookies.set(COOKIE, str(client.cookies.get(COOKIE)), path="/console")
    return other


def works(client: TestClient) -> bool:
    return client.get("/console/audit", follow_redirects=False).status_code == 200


def test_an_old_cookie_stops_working_after_sign_out(small: Path, tmp_path: Path) -> None:
    app = console_app(small, tmp_path)
    client = signed_in(app)
    stolen = copy_of(client, app)
    assert works(stolen)
    response = client.post("/console/logout", follow_redirects=False,
                           data={"csrf_token": csrf_of(client)})
    assert response.status_code == 303
    assert not works(client) and not works(stolen)
    assert works(signed_in(app))  # signing in again works


def run_users(config: Path, *args: str, stdin: str = "",
              monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    return main(["users", *args, "--config", str(config)])


def test_users_commands_revoke_sessions(small: Path, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "recsys.toml"
    config.write_text(small.read_text().replace(
        str(small.parent / "recsys.db"), str(tmp_path / "recsys.db")))
    app = console_app(config, tmp_path)

    old = signed_in(app)
    assert run_users(config, "reset-password", "alice", "--password-stdin",
                     stdin="a-new-password-2\n", monkeypatch=monkeypatch) == 0
    assert not works(old)
    with pytest.raises(AssertionError):
        signed_in(app)  # the old password
    old = signed_in(app, "a-new-password-2")

    assert run_users(config, "disable", "alice", monkeypatch=monkeypatch) == 0
    assert not works(old)
    with pytest.raises(AssertionError):
        signed_in(app, "a-new-password-2")
    capsys.readouterr()
    assert run_users(config, "list", monkeypatch=monkeypatch) == 0
    listed = capsys.readouterr().out.splitlines()
    assert len(listed) == 1 and listed[0].startswith("alice  editor")
    assert listed[0].endswith("disabled")
    assert run_users(config, "enable", "alice", monkeypatch=monkeypatch) == 0
    old = signed_in(app, "a-new-password-2")

    assert run_users(config, "remove", "alice", monkeypatch=monkeypatch) == 0
    assert not works(old)
    with pytest.raises(AssertionError):
        signed_in(app, "a-new-password-2")
    for action in ("remove", "disable", "enable"):
        assert run_users(config, action, "alice", monkeypatch=monkeypatch) == 1
    assert "no user 'alice'" in capsys.readouterr().err


DATABASES = ["sqlite", pytest.param("postgresql", marks=pytest.mark.services)]


@pytest.fixture(params=DATABASES)
def old_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database whose users and events tables were made by the previous release."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'old.db'}"
        schema = None
    else:
        base = str(request.getfixturevalue("postgres_url"))
        schema = f"old_{os.getpid()}_{int(time.time() * 1000)}"
        url = f"{base}?options=-csearch_path%3D{schema}"
        admin = create_engine(base)
        with admin.begin() as conn:
            conn.execute(text(f"CREATE SCHEMA {schema}"))
        admin.dispose()
    serial = "INTEGER PRIMARY KEY" if schema is None else "SERIAL PRIMARY KEY"
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text(f"CREATE TABLE recsys_users (id {serial}, username "
                          "VARCHAR(64) NOT NULL UNIQUE, password_hash VARCHAR(256) NOT NULL, "
                          "role VARCHAR(16) NOT NULL, created_at TIMESTAMP NOT NULL)"))
        conn.execute(text("INSERT INTO recsys_users (username, password_hash, role, created_at)"
                          " VALUES ('old', :h, 'editor', CURRENT_TIMESTAMP)"),
                     {"h": hash_password(PASSWORD)})
        conn.execute(text(f"CREATE TABLE recsys_events (id {serial}, received_at "
                          "TIMESTAMP NOT NULL, occurred_at TIMESTAMP, event_type VARCHAR(32) "
                          "NOT NULL, product_id VARCHAR(128), session_id VARCHAR(128), "
                          "customer_id VARCHAR(128), request_id VARCHAR(64), placement "
                          "VARCHAR(64), position INTEGER, quantity FLOAT, price FLOAT, "
                          "order_id VARCHAR(128))"))
    engine.dispose()
    yield url
    if schema is not None:
        admin = create_engine(str(request.getfixturevalue("postgres_url")))
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


def test_tables_of_the_previous_release_are_upgraded(old_database: str) -> None:
    store = ServingStore(old_database)
    second = ServingStore(old_database)  # a second worker starting: nothing to do
    try:
        user = store.user("old")
        assert user is not None and not user["disabled"] and len(user["session_epoch"]) == 32
        assert second.user("old") == user
        assert store.end_sessions("old")
        assert store.user("old")["session_epoch"] != user["session_epoch"]  # type: ignore[index]
        event = {"event_type": "view", "product_id": "tea", "session_id": "s"}
        first = store.add_event({**event, "event_key": "k-1"})
        assert second.add_event({**event, "event_key": "k-1"}) == first
        assert store.add_event(event) != store.add_event(event)  # no key: each stored
        assert store.count_events() == 3
    finally:
        store.dispose()
        second.dispose()
