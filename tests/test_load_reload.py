"""Issue #14, campaign in CI: a bounded load test on loopback against the real server
(``recsys serve``, uvicorn, a subprocess) while two new versions are hot reloaded and one
corrupt version (neighbour arrays cut, re-hashed) is published between them: zero failed
requests, the corrupt version refused, and the server's memory flat (RSS after vs before).
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from recsys.artifacts import ArtifactStore
from recsys.config import load_config
from tests.conftest import REPO
from tests.test_api_reload import (  # noqa: F401 - fixtures
    SEED,
    _free_port,
    demo_shop,
    first_version,
    served,
    wait_for,
)
from tests.test_artifact_checks import _cut_neighbours, republish

CLIENTS = 4
REQUESTS = 750  # per client: 3,000 in all
RSS_GROWTH_BOUND = 48 * 2**20  # bytes: two indexes of this shop are a few MiB


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_load_with_two_reloads_and_a_corrupt_version(
        served: Callable[..., Path]) -> None:  # noqa: F811 - the fixture imported above
    config = served(reload_interval_s=0.1, events_per_minute=0)  # no rate limit in a load test
    store = ArtifactStore(load_config(config).artifacts.root)
    first = store.current_version()
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "recsys.cli", "-q", "serve", "--config",
                               str(config), "--port", str(port)], cwd=REPO,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seen: list[tuple[int, str | None]] = []
    lock = threading.Lock()

    def ready() -> bool:
        assert server.poll() is None, "the server exited"
        try:
            return httpx.get(f"{base}/readyz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    def client(n: int, number: int) -> None:
        calls: list[Callable[[httpx.Client], httpx.Response]] = [
            lambda h: h.get(f"/v1/items/{SEED}/bought-together", params={"k": 5}),
            lambda h: h.get("/v1/popular", params={"k": 5}),
            lambda h: h.get("/v1/customers/C000001/recommendations", params={"k": 5},
                            headers={"X-API-Key": load_config(config).serving.api_key}),
            lambda h: h.post("/v1/cart/add-ons", params={"k": 5},
                             json={"items": [{"product_id": SEED, "quantity": 1}]}),
            lambda h: h.post("/v1/events", json={"event_type": "view", "product_id": SEED,
                                                 "session_id": f"load-{n}"}),
        ]
        with httpx.Client(base_url=base, timeout=10) as http:
            for i in range(number):
                try:
                    response = calls[(i + n) % len(calls)](http)
                    result = (response.status_code, response.json().get("model_version"))
                except (httpx.HTTPError, ValueError) as exc:
                    result = (0, repr(exc))
                with lock:
                    seen.append(result)

    try:
        wait_for(ready, "the server to start", timeout=120)
        client(99, 200)  # warm-up: compiled code, caches, the allocator's first arenas
        before = rss(server.pid)
        seen.clear()
        workers = [threading.Thread(target=client, args=(n, REQUESTS), daemon=True)
                   for n in range(CLIENTS)]
        for worker in workers:
            worker.start()
        wait_for(lambda: len(seen) >= 100, "load on the first version")
        second = republish(store, store.path(first))
        wait_for(lambda: httpx.get(f"{base}/readyz").json()["version"] == second, "reload 1")
        corrupt = republish(store, store.path(first), _cut_neighbours)
        wait_for(lambda: httpx.get(f"{base}/readyz").json()["failed_version"] == corrupt,
                 "the corrupt version refused")
        third = republish(store, store.path(first))
        wait_for(lambda: httpx.get(f"{base}/readyz").json()["version"] == third, "reload 2")
        reloads_done_at = len(seen)
        for worker in workers:
            worker.join(timeout=300)
            assert not worker.is_alive()
        time.sleep(0.5)
        after = rss(server.pid)
        assert server.poll() is None
    finally:
        server.terminate()
        server.wait(timeout=60)
    assert len(seen) == CLIENTS * REQUESTS
    failed = [s for s in seen if s[0] not in (200, 201)]
    assert not failed, failed[:5]
    assert reloads_done_at < len(seen), "the load ended before the reloads: raise REQUESTS"
    versions = {v for _, v in seen if v is not None}
    assert {first, third} <= versions and corrupt not in versions
    print(f"RSS before {before / 2**20:.1f} MiB, after {after / 2**20:.1f} MiB, "
          f"{len(seen)} requests, 0 failed")
    assert after - before < RSS_GROWTH_BOUND, (before, after)
