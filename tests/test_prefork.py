"""`recsys serve --workers N` forks its workers from a supervisor that imported the app and
preloaded the artifact (recsys.cli.prefork, recsys.serving.state.preload). The forked real
server itself is tested in tests/test_api_reload.py (both workers share the imported code)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import uvicorn._subprocess

from tests.conftest import REPO, demo_settings

# A worker that imported these after the fork would hold its own copy of them.
HEAVY = ("recsys", "numpy", "pandas", "pyarrow", "scipy", "numba", "llvmlite", "sqlalchemy",
         "psycopg", "redis", "fastapi", "starlette", "pydantic", "prometheus_client")

WORKER = """
import importlib, json, sys
from fastapi.testclient import TestClient
from recsys.cli.prefork import PRELOADED_MODULES
from recsys.config import ServingSettings
from recsys.serving.state import preload

settings = ServingSettings.model_validate_json(sys.argv[1])
for name in PRELOADED_MODULES:
    importlib.import_module(name)
version = preload(settings)
before = set(sys.modules)
from recsys.app import create_app
statuses = []
with TestClient(create_app(settings)) as client:
    item = client.get("/v1/popular", params={"k": 1}).json()["items"][0]["product_id"]
    for path in ("bought-together", "also-viewed", "similar", "upsell", "bundles"):
        for params in ({}, {"history": item}):
            statuses.append(client.get(f"/v1/items/{item}/{path}", params=params).status_code)
    statuses.append(client.post("/v1/cart/add-ons", json={"items": [
        {"product_id": item, "quantity": 1}]}).status_code)
    statuses.append(client.get("/v1/customers/C000001/recommendations",
                               headers={"X-API-Key": settings.api_key}).status_code)
    ready = client.get("/readyz").json()
print(json.dumps({"version": version, "ready": ready, "statuses": statuses,
                  "new": sorted(set(sys.modules) - before)}))
"""


def test_uvicorn_has_the_spawn_context_prefork_swaps_for_fork() -> None:
    assert uvicorn._subprocess.spawn.get_start_method() == "spawn"


def test_uvicorn_has_the_supervisor_loop_prefork_watches_from() -> None:
    """prefork lets go of a superseded preload from the supervisor's periodic check."""
    from uvicorn.supervisors.multiprocess import Multiprocess

    assert callable(Multiprocess.keep_subprocess_alive)


def test_a_worker_imports_nothing_heavy_after_the_preload(demo_artifact: Path,
                                                          tmp_path: Path) -> None:
    """After PRELOADED_MODULES and the preloaded artifact, starting the app and answering every
    list imports no module of the heavy packages: the list is complete, and the worker
    serves the preloaded index (the version it reports)."""
    settings = demo_settings(demo_artifact, tmp_path)
    done = subprocess.run([sys.executable, "-c", WORKER, settings.model_dump_json()], cwd=REPO,
                          capture_output=True, text=True, timeout=300, check=True)
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["version"] and out["ready"]["version"] == out["version"]
    assert set(out["statuses"]) == {200}, out["statuses"]
    heavy = [m for m in out["new"] if m.split(".")[0] in HEAVY
             and not m.startswith(("fastapi.testclient", "starlette.testclient",
                                   "fastapi.telemetry"))]
    assert not heavy, heavy
