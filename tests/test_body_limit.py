"""Issue #14 point 6: request bodies are bounded before parsing, for every route (413 naming
the limit), whether the client sends a Content-Length or a chunked body."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from starlette.types import Message

from recsys.app import create_app
from recsys.config import ServingSettings
from recsys.serving.limits import BodyLimit

LIMIT = 4096


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    settings = ServingSettings(artifacts=str(tmp_path / "none"), max_body_bytes=LIMIT,
                               reload_interval_s=0, api_key="body-limit-key-123",
                               database_url=f"sqlite:///{tmp_path / 'recsys.db'}")
    with TestClient(create_app(settings)) as test_client:
        yield test_client


EVENT = {"event_type": "view", "product_id": "P1", "session_id": "s1"}


@pytest.mark.parametrize("path", ["/v1/events", "/v1/cart/add-ons", "/admin/decisions",
                                  "/console/login", "/no/such/route"])
def test_a_large_body_is_refused_on_every_route(client: TestClient, path: str) -> None:
    response = client.post(path, content=b"x" * (LIMIT + 1),
                           headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert f"limit of {LIMIT} bytes" in response.json()["detail"]


def test_a_chunked_body_is_counted(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(10):
            yield b" " * 1000

    response = client.post("/v1/events", content=chunks(),
                           headers={"Content-Type": "application/json"})
    assert response.status_code == 413


def test_bodies_within_the_limit_pass(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"event_type": "view", '
        yield b'"product_id": "P1", "session_id": "s1"}'

    assert client.post("/v1/events", json=EVENT).status_code == 201
    assert client.post("/v1/events", content=chunks(),
                       headers={"Content-Type": "application/json"}).status_code == 201


def test_a_bad_content_length_is_400(client: TestClient) -> None:
    response = client.post("/v1/events", content=b"{}",
                           headers={"Content-Length": "-5", "Content-Type": "application/json"})
    assert response.status_code == 400


def test_nothing_past_the_limit_is_read() -> None:
    """An endless chunked body: the app is never called, reading stops at the limit."""
    called: list[bool] = []
    sent: list[Message] = []
    pulled = 0

    async def app(scope: Any, receive: Any, send: Any) -> None:
        called.append(True)

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        pulled += 1
        return {"type": "http.request", "body": b"y" * 1000, "more_body": True}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/v1/events",
             "headers": [(b"transfer-encoding", b"chunked")]}
    # in a thread of its own: a browser test's event loop may still run in this one
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, BodyLimit(app, LIMIT)(scope, receive, send)).result()
    assert not called and sent[0]["status"] == 413
    assert pulled == LIMIT // 1000 + 1
