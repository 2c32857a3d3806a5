"""Hot reload: a newly published version is served without a restart; a corrupt one is refused.

Each test serves its own copy of an artifact store (one version of one demo shop, published
once per module) and publishes into it while the API runs: in-process (TestClient, whose lifespan runs the watcher) and, for
reload under load, the real ``recsys serve`` (uvicorn) in a subprocess on a loopback port.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from recsys.app import create_app
from recsys.artifacts import ArtifactStore
from recsys.config import load_config
from recsys.demo import DemoSpec, generate_demo
from recsys.pipeline import run_pipeline
from tests.conftest import REPO, copy_store
from tests.test_api import write_demo_config

API_KEY = "reload-admin-key-42"
ADMIN = {"X-API-Key": API_KEY}
SEED = "P00010"  # a product of the demo catalog (its lists have neighbours)


@pytest.fixture(scope="module")
def demo_shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # not the shared shop: the tests publish new versions with the pipeline, quick on this one
    shop = tmp_path_factory.mktemp("reload_shop")
    generate_demo(shop, DemoSpec(orders=3000, products=120, seed=11), progress=False)
    return shop


@pytest.fixture(scope="module")
def first_version(demo_shop: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An artifact store holding one version of the shop, published once for the module."""
    tmp = tmp_path_factory.mktemp("reload_store")
    publish(write_demo_config(tmp, demo_shop))
    return tmp / "artifacts"


@pytest.fixture
def served(demo_shop: Path, first_version: Path, tmp_path: Path) -> Callable[..., Path]:
    """A config over the demo shop with its own store in tmp_path: a copy of one version."""

    def make(**serving: Any) -> Path:
        config = write_demo_config(tmp_path, demo_shop, api_key=API_KEY, **serving)
        copy_store(first_version, tmp_path / "artifacts")
        return config

    return make


def publish(config: Path) -> str:
    _, manifest = run_pipeline(load_config(config), show_progress=False)
    return manifest.version


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.05)


def flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def point_current_at(root: Path, version: str) -> None:
    """Move CURRENT the way a publish does (write a temp file, rename), without verifying."""
    tmp = root / "CURRENT.tmp-test"
    tmp.write_text(version + "\n")
    os.replace(tmp, root / "CURRENT")


def served_version(client: TestClient) -> str:
    body = client.get(f"/v1/items/{SEED}/bought-together", params={"k": 3}).json()
    version: str = body["model_version"]
    return version


@pytest.fixture
def client_for() -> Iterator[Callable[[Path], TestClient]]:
    opened: list[TestClient] = []

    def make(config: Path) -> TestClient:
        client = TestClient(create_app(load_config(config).serving_settings()))
        client.__enter__()
        opened.append(client)
        return client

    yield make
    for client in opened:
        client.__exit__(None, None, None)


def test_watcher_serves_a_new_version(served: Callable[..., Path],
                                      client_for: Callable[[Path], TestClient]) -> None:
    config = served(reload_interval_s=0.1)
    client = client_for(config)
    first = client.get("/readyz").json()["version"]
    assert served_version(client) == first
    second = publish(config)
    assert second > first
    wait_for(lambda: client.get("/readyz").json()["version"] == second, "the new version")
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready" and ready["error"] is None
    assert 0 <= ready["age_seconds"] < 60
    assert served_version(client) == second
    assert client.get("/v1/version").json()["model_version"] == second


def test_admin_reload_serves_a_new_version(served: Callable[..., Path],
                                           client_for: Callable[[Path], TestClient]) -> None:
    config = served(reload_interval_s=0)  # no watcher: only POST /admin/reload loads
    client = client_for(config)
    first = client.get("/readyz").json()["version"]
    second = publish(config)
    time.sleep(0.3)
    assert client.get("/readyz").json()["version"] == first  # nothing watches the pointer
    assert client.post("/admin/reload").status_code == 401
    assert client.post("/admin/reload", headers={"X-API-Key": "change-me"}).status_code == 401
    response = client.post("/admin/reload", headers=ADMIN)
    assert response.status_code == 200
    assert response.json() == {"version": second, "error": None}
    assert client.get("/readyz").json()["version"] == second
    assert served_version(client) == second
    # a rollback is a pointer move like any other
    ArtifactStore(load_config(config).artifacts.root).rollback(first)
    assert client.post("/admin/reload", headers=ADMIN).json() == {"version": first,
                                                                  "error": None}
    assert served_version(client) == first


def test_admin_reload_refuses_a_corrupt_version(served: Callable[..., Path],
                                                client_for: Callable[[Path], TestClient]) -> None:
    config = served(reload_interval_s=0)
    root = Path(load_config(config).artifacts.root)
    client = client_for(config)
    first = client.get("/readyz").json()["version"]
    second = publish(config)
    flip_a_byte(root / "versions" / second / "popular.parquet")
    response = client.post("/admin/reload", headers=ADMIN)
    assert response.status_code == 409
    body = response.json()
    assert body["version"] == first
    assert second in body["error"] and "popular.parquet" in body["error"]
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready" and ready["version"] == first
    assert ready["failed_version"] == second and "popular.parquet" in ready["error"]
    assert served_version(client) == first  # the old version keeps serving
    assert client.get("/v1/popular").status_code == 200
    third = publish(config)  # a good version clears the error
    assert client.post("/admin/reload", headers=ADMIN).json() == {"version": third,
                                                                  "error": None}
    ready = client.get("/readyz").json()
    assert ready["error"] is None and ready["failed_version"] is None


def test_watcher_refuses_a_corrupt_version(served: Callable[..., Path], tmp_path: Path,
                                           demo_shop: Path,
                                           client_for: Callable[[Path], TestClient]) -> None:
    config = served(reload_interval_s=0.1)
    root = Path(load_config(config).artifacts.root)
    client = client_for(config)
    first = client.get("/readyz").json()["version"]
    # build the next version in a side store, corrupt it, then move it in and point at it
    (tmp_path / "side").mkdir()
    side = write_demo_config(tmp_path / "side", demo_shop)
    bad = publish(side)
    flip_a_byte(tmp_path / "side" / "artifacts" / "versions" / bad / "items.parquet")
    shutil.copytree(tmp_path / "side" / "artifacts" / "versions" / bad, root / "versions" / bad)
    point_current_at(root, bad)
    wait_for(lambda: client.get("/readyz").json()["failed_version"] == bad, "the refusal")
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready" and ready["version"] == first
    assert "items.parquet" in ready["error"]
    for _ in range(5):  # it keeps serving the old version, and does not retry the bad one
        assert served_version(client) == first
        time.sleep(0.1)
    assert client.get("/readyz").json()["failed_version"] == bad
    good = publish(config)
    wait_for(lambda: client.get("/readyz").json()["version"] == good, "the good version")
    assert client.get("/readyz").json()["error"] is None
    assert served_version(client) == good


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def real_server(config: Path, *args: str) -> Iterator[str]:
    """``recsys serve`` in a subprocess on a free loopback port, until ready; yields its base
    URL and stops it (SIGTERM; killed, and the test failed, if it does not stop in 60 s)."""
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, "-m", "recsys.cli", "-q", "serve", "--config",
                             str(config), "--port", str(port), *args], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        def ready() -> bool:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            try:
                return httpx.get(f"{base}/readyz", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(ready, "the server to start", timeout=60)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise


def test_reload_under_load_with_the_real_server(served: Callable[..., Path]) -> None:
    config = served(reload_interval_s=0.1)
    first = ArtifactStore(load_config(config).artifacts.root).current_version()
    seen: list[tuple[int, str | None]] = []
    stop = threading.Event()

    def load(base: str) -> None:
        paths = [f"/v1/items/{SEED}/bought-together", "/v1/popular",
                 "/v1/customers/C000001/recommendations", f"/v1/items/{SEED}/also-viewed"]
        with httpx.Client(base_url=base, timeout=10) as http:
            for i in range(20_000):  # bounded; stopped much sooner
                if stop.is_set():
                    return
                try:
                    response = http.get(paths[i % len(paths)], params={"k": 5}, headers=ADMIN)
                    seen.append((response.status_code,
                                 response.json().get("model_version")))
                except (httpx.HTTPError, ValueError) as exc:
                    seen.append((0, repr(exc)))

    with real_server(config) as base:
        try:
            worker = threading.Thread(target=load, args=(base,), daemon=True)
            worker.start()
            wait_for(lambda: len(seen) >= 20, "requests on the first version")
            second = publish(config)
            wait_for(lambda: any(v == second for _, v in seen), "the second version",
                     timeout=20)
            served_before = len(seen)
            wait_for(lambda: len(seen) >= served_before + 20, "requests on the second version")
            stop.set()
            worker.join(timeout=15)
            assert not worker.is_alive()
            assert httpx.get(f"{base}/readyz", timeout=5).json()["version"] == second
        finally:
            stop.set()
    failed = [s for s in seen if s[0] != 200]
    assert not failed, failed[:5]
    versions = [v for _, v in seen]
    assert set(versions) == {first, second}
    switch = versions.index(second)  # one client, one worker: never back to the old one
    assert set(versions[:switch]) == {first} and set(versions[switch:]) == {second}


def test_metrics_add_up_over_workers(served: Callable[..., Path]) -> None:
    """`recsys serve --workers 2`: every scrape, whichever worker answers it, counts the
    requests of both workers, and the served version once."""
    config = served(reload_interval_s=0)
    version = ArtifactStore(load_config(config).artifacts.root).current_version()
    with real_server(config, "--workers", "2") as base:
        time.sleep(2)  # both workers up: readiness came from the first
        for _ in range(60):  # a new connection each: the workers share them out
            assert httpx.get(f"{base}/v1/popular", params={"k": 3}).status_code == 200
        pattern = r'recsys_requests_total\{method="GET",route="/v1/popular",status="200"\} (\S+)'
        for _ in range(8):
            text = httpx.get(f"{base}/metrics").text
            counts = re.findall(pattern, text)
            assert [float(c) for c in counts] == [60.0], text
            assert f'recsys_model_version_info{{version="{version}"}} 1.0' in text


def _server_pids(config: Path) -> tuple[int, list[int]]:
    """The ``recsys serve --config CONFIG`` supervisor's pid and its workers' pids."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"serve" in cmdline and str(config).encode() in cmdline:
                children = (entry / "task" / entry.name / "children").read_text().split()
                return int(entry.name), [int(c) for c in children]
    raise AssertionError(f"no server process for {config}")


def _anonymous_mib(pid: int) -> tuple[float, float]:
    """MiB of anonymous memory (no file behind it) that ``pid`` shares with other processes, and
    that it holds alone (from /proc/PID/smaps)."""
    shared = private = 0
    anonymous = False
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head = line.split()
        if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
            anonymous = len(head) < 6 or head[5] in ("[heap]", "[stack]")
        elif anonymous and head[0] in ("Shared_Clean:", "Shared_Dirty:"):
            shared += int(head[1])
        elif anonymous and head[0] in ("Private_Clean:", "Private_Dirty:"):
            private += int(head[1])
    return shared / 1024, private / 1024


def test_workers_are_forked_and_share_the_imported_code(served: Callable[..., Path]) -> None:
    """`recsys serve --workers 2` forks its workers from a supervisor that imported the app
    (recsys.cli.prefork): the imported modules are memory both workers share, not two copies
    (uvicorn's own spawned workers share no anonymous memory at all)."""
    config = served(reload_interval_s=0)
    with real_server(config, "--workers", "2") as base:
        for _ in range(40):  # a new connection each: both workers load and serve
            assert httpx.get(f"{base}/v1/items/{SEED}/bought-together").status_code == 200
        supervisor, workers = _server_pids(config)
        assert len(workers) == 2
        for pid in workers:
            shared, private = _anonymous_mib(pid)
            # importing recsys.app alone makes about 120 MiB of anonymous memory
            assert shared > 60, (pid, shared, private)
        assert _anonymous_mib(supervisor)[0] > 60


def _mapped_files(pid: int, folder: Path) -> set[str]:
    """The files under ``folder`` that ``pid`` has memory-mapped (from /proc/PID/maps)."""
    inside = str(folder.resolve()) + os.sep
    return {line.split(None, 5)[5] for line in Path(f"/proc/{pid}/maps").read_text().splitlines()
            if len(line.split(None, 5)) == 6 and line.split(None, 5)[5].startswith(inside)}


def test_the_supervisor_lets_go_of_a_superseded_preload(served: Callable[..., Path]) -> None:
    """The supervisor of `recsys serve --workers 2` preloaded the first version for its
    workers; once CURRENT names another, it drops that index: it no longer maps the old
    version's files (which pruning or an erasure may delete) and holds none of its data, while
    the workers serve the new version (and let go of their copies of it too)."""
    config = served(reload_interval_s=0.1)
    store = ArtifactStore(load_config(config).artifacts.root)
    old = store.path()
    with real_server(config, "--workers", "2") as base:
        supervisor, workers = _server_pids(config)
        assert _mapped_files(supervisor, old), "the preload maps the version's files"
        second = publish(config)

        def both_serve_second() -> bool:
            versions = {httpx.get(f"{base}/readyz", timeout=5).json()["version"]
                        for _ in range(10)}  # a new connection each: both workers answer
            return versions == {second}

        wait_for(both_serve_second, "both workers on the second version")
        def unmapped(pid: int) -> Callable[[], bool]:
            return lambda: not _mapped_files(pid, old)

        for pid in (supervisor, *workers):
            wait_for(unmapped(pid), f"process {pid} to unmap the first version", timeout=10)
        assert _server_pids(config)[1] == workers  # no worker restarted for it
        assert httpx.get(f"{base}/v1/items/{SEED}/also-viewed").json()["model_version"] == second
