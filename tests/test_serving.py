"""The API over a published artifact: health, readiness, version, best sellers, bad input."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from recsys.app import create_app
from recsys.cli import main
from recsys.config import ServingSettings, load_config
from tests.conftest import REPO, write_small_config


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # not the shared demo shop: `recsys run` itself is under test, on the small known shop
    tmp = tmp_path_factory.mktemp("shop")
    config = write_small_config(tmp)
    assert main(["-q", "run", "--config", str(config)]) == 0
    return config


@pytest.fixture
def client(published: Path) -> Iterator[TestClient]:
    settings = load_config(published).serving_settings()
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def test_health_and_readiness(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    body = ready.json()
    assert body["status"] == "ready" and body["age_seconds"] >= 0
    assert client.get("/v1/version").json()["model_version"] == body["version"]


def test_favicon_is_an_icon_not_a_404(client: TestClient) -> None:
    response = client.get("/favicon.ico")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/x-icon"
    assert response.content[:4] == b"\x00\x00\x01\x00"  # an ICO file
    assert response.content[22:30] == b"\x89PNG\r\n\x1a\n"  # its one 16x16 PNG image


def test_not_ready_without_an_artifact(tmp_path: Path) -> None:
    settings = ServingSettings(artifacts=str(tmp_path / "empty"))
    with TestClient(create_app(settings)) as empty:
        assert empty.get("/healthz").status_code == 200
        assert empty.get("/readyz").status_code == 503
        response = empty.get("/v1/popular")
        assert response.status_code == 503
        assert "no artifact" in response.json()["detail"]


def test_popular_filters_out_of_stock_and_explains(client: TestClient) -> None:
    response = client.get("/v1/popular", params={"k": 10})
    assert response.status_code == 200
    body = response.json()
    ids = [item["product_id"] for item in body["items"]]
    assert ids == ["tea", "mug", "spoon"]  # kettle is out of stock
    first = body["items"][0]
    assert first["name"] == "Green Tea" and first["price"] == 4.0
    assert first["reason"] == {"source": "popular", "evidence": {"orders": 3, "scope": "global"}}
    assert body["request_id"] == response.headers["x-request-id"]
    assert body["fallback"] is None
    with_oos = client.get("/v1/popular", params={"k": 10, "in_stock_only": "false"}).json()
    assert "kettle" in [item["product_id"] for item in with_oos["items"]]


def test_popular_per_category_and_fallback(client: TestClient) -> None:
    kitchen = client.get("/v1/popular", params={"category": "Home > Kitchen"}).json()
    assert [i["product_id"] for i in kitchen["items"]] == ["mug", "spoon"]
    unknown = client.get("/v1/popular", params={"category": "Garden"})
    assert unknown.status_code == 422 and "'Garden'" in unknown.text and "Home" in unknown.text


def _also_viewed_evidence(client: TestClient) -> list[set[str]]:
    out = []
    for product in ("tea", "mug", "spoon", "kettle"):
        body = client.get(f"/v1/items/{product}/also-viewed",
                          params={"in_stock_only": "false"}).json()
        out += [set(item["reason"]["evidence"]) for item in body["items"]
                if item["reason"]["source"] == "also_viewed"]
    return out


def test_also_viewed_evidence_names_what_was_counted(client: TestClient, tmp_path: Path) -> None:
    """Issue #16: built from purchases (no view events) it counts orders, not sessions."""
    viewed = _also_viewed_evidence(client)
    assert viewed and all("sessions_with_both" in keys for keys in viewed)
    config = write_small_config(tmp_path)
    config.write_text("\n".join(line for line in config.read_text().splitlines()
                                if not line.startswith("events = ")))
    assert main(["-q", "run", "--config", str(config)]) == 0
    with TestClient(create_app(load_config(config).serving_settings())) as bought:
        counted = _also_viewed_evidence(bought)
    assert counted and all("orders_with_both" in keys and "sessions_with_both" not in keys
                           for keys in counted)


@pytest.mark.parametrize("params", [{"k": 0}, {"k": 101}, {"k": "ten"}, {"category": "x" * 300}])
def test_bad_parameters_are_422(client: TestClient, params: dict[str, object]) -> None:
    response = client.get("/v1/popular", params=params)
    assert response.status_code == 422
    assert response.json()["detail"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_recsys_serve_answers_over_http(published: Path) -> None:
    """The real server process (uvicorn, 2 workers) on a loopback port."""
    port = _free_port()
    env = {**os.environ, "RECSYS_SERVING_PORT": str(port)}
    proc = subprocess.Popen([sys.executable, "-m", "recsys.cli", "-q", "serve", "--config",
                             str(published), "--workers", "2"], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60  # a loaded machine (CI) can take a while
        while True:
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
                if ready.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, "server did not become ready in 60 s"
            time.sleep(0.2)
        popular = httpx.get(f"http://127.0.0.1:{port}/v1/popular?k=2", timeout=5).json()
        assert [i["product_id"] for i in popular["items"]] == ["tea", "mug"]
        # A second server on the same port is refused with a clear message, exit 1.
        second = subprocess.run([sys.executable, "-m", "recsys.cli", "-q", "serve", "--config",
                                 str(published)], cwd=REPO, env=env, capture_output=True,
                                text=True, timeout=30)
        assert second.returncode == 1 and f"127.0.0.1:{port}" in second.stderr
    finally:
        proc.terminate()
        proc.wait(timeout=15)
