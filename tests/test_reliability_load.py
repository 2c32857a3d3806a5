"""Issue #14 points 2 and 5: an inconsistent or unloadable artifact never reaches a request.

The issue's case: the neighbour arrays of a 300-product version cut to 10 rows and re-hashed
(so the checksums agree). The server's loader runs the structural checks before the swap and
keeps the old version (or, at start-up, falls back to the newest one that loads); /readyz
names the failure; any exception type is a failed reload, never a 500; the compiled blend
kernel refuses inconsistent arrays instead of reading out of bounds (fuzzed with Hypothesis,
and the issue's case in a subprocess, where a segfault would show as a signal).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recsys.app import create_app
from recsys.artifacts import ArtifactStore
from recsys.config import ServingSettings
from recsys.serving import state as state_module
from recsys.serving.blend import BlendInput, blend
from recsys.vocab import Vocabulary
from tests.conftest import REPO, copy_store
from tests.test_api_reload import _free_port
from tests.test_artifact_checks import _cut_neighbours, republish

KEY = "reliability-admin-key-0123456789abcdef"
ADMIN = {"X-API-Key": KEY}


@pytest.fixture(scope="module")
def built(demo_artifact: Path) -> Path:
    """The shared demo artifact: one version of a 300-product shop (copied by ``store``)."""
    return demo_artifact


@pytest.fixture
def store(built: Path, tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(copy_store(built, tmp_path / "artifacts"))


@pytest.fixture
def client(store: ArtifactStore, tmp_path: Path) -> Iterator[TestClient]:
    settings_ = ServingSettings(artifacts=str(store.root), api_key=KEY, reload_interval_s=0,
                                database_url=f"sqlite:///{tmp_path / 'recsys.db'}")
    with TestClient(create_app(settings_)) as test_client:
        yield test_client


def last_product(store: ArtifactStore) -> str:
    ids = Vocabulary.load(store.path() / "items.parquet").ids
    return str(ids[-1])


def cart(client: TestClient, product: str) -> httpx.Response:
    return client.post("/v1/cart/add-ons", params={"k": 5},
                       json={"items": [{"product_id": product, "quantity": 1}]})


def test_cut_neighbours_are_refused_on_reload(client: TestClient, store: ArtifactStore) -> None:
    first = client.get("/readyz").json()["version"]
    product = last_product(store)  # code 299: row 299 of a 10-row table is out of bounds
    bad = republish(store, store.path(first), _cut_neighbours)
    response = client.post("/admin/reload", headers=ADMIN)
    assert response.status_code == 409
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready" and ready["version"] == first
    assert ready["failed_version"] == bad
    assert "bought_together/ids.npy" in ready["error"] and "is 10, elsewhere 300" in ready["error"]
    assert cart(client, product).status_code == 200


def test_start_falls_back_to_the_newest_version_that_loads(store: ArtifactStore,
                                                           tmp_path: Path) -> None:
    good = store.current_version()
    assert good is not None
    newer_good = republish(store, store.path(good))
    bad = republish(store, store.path(good), _cut_neighbours)
    assert store.current_version() == bad
    settings_ = ServingSettings(artifacts=str(store.root), api_key=KEY, reload_interval_s=0,
                                database_url=f"sqlite:///{tmp_path / 'recsys.db'}")
    with TestClient(create_app(settings_)) as test_client:
        ready = test_client.get("/readyz").json()
        assert ready["status"] == "ready" and ready["version"] == newer_good
        assert ready["failed_version"] == bad and "bought_together" in ready["error"]
        assert cart(test_client, last_product(store)).status_code == 200


def _garbage_json(folder: Path) -> None:
    (folder / "ranking.json").write_text("{not json")


def test_any_load_failure_is_a_failed_reload_and_the_latest_is_shown(
        client: TestClient, store: ArtifactStore, monkeypatch: pytest.MonkeyPatch) -> None:
    first = client.get("/readyz").json()["version"]
    garbage = republish(store, store.path(first), _garbage_json)
    response = client.post("/admin/reload", headers=ADMIN)
    assert response.status_code == 409 and "ranking.json" in response.json()["error"]
    assert client.get("/readyz").json()["failed_version"] == garbage

    def explode(root: Path | str, version: str | None = None, **_: object) -> None:
        raise KeyError("a key the loader did not expect")

    monkeypatch.setattr(state_module, "load_index", explode)
    later = republish(store, store.path(first))
    response = client.post("/admin/reload", headers=ADMIN)
    assert response.status_code == 409  # not 500
    assert "KeyError" in response.json()["error"] and later in response.json()["error"]
    ready = client.get("/readyz").json()
    assert ready["version"] == first and ready["failed_version"] == later  # the latest failure
    assert "KeyError" in ready["error"] and "ranking.json" not in ready["error"]


# -- the kernel ------------------------------------------------------------------------------

_CODES = 12


def _inputs(draw: st.DrawFn) -> BlendInput:
    def ints(shape: tuple[int, ...], low: int = -3, high: int = 20) -> np.ndarray:
        return np.asarray(draw(st.lists(st.integers(low, high), min_size=int(np.prod(shape)),
                                        max_size=int(np.prod(shape))))).reshape(shape)

    rows, width = draw(st.integers(0, 6)), draw(st.integers(0, 3))
    k_rows, k_width = draw(st.integers(0, 6)), draw(st.integers(0, 2))
    n_rules = draw(st.integers(0, 5))
    n_sets = draw(st.integers(0, 3))
    n_silent = draw(st.sampled_from([_CODES, _CODES - 4, 0]))
    seeds = ints((draw(st.integers(0, 4)),), -1, 8).astype(np.int64)
    return BlendInput(
        seeds=seeds, seed_weights=np.ones(draw(st.sampled_from([len(seeds), len(seeds) + 1]))),
        e_ids=ints((rows, width)).astype(np.int32),
        e_scores=np.ones((rows, width), np.float32),
        e_support=np.ones((rows, draw(st.sampled_from([width, width + 1]))), np.int64),
        k_ids=ints((k_rows, k_width)).astype(np.int32),
        k_scores=np.ones((k_rows, k_width), np.float32),
        k_support=np.ones((k_rows, k_width), np.int64), knn_weight=0.5,
        rule_lo=ints((n_sets,), -1, 6).astype(np.int64),
        rule_hi=ints((n_sets,), -1, 7).astype(np.int64),
        rule_consequent=ints((n_rules,), -2, 14).astype(np.int32),
        rule_confidence=np.full(n_rules, 0.5, np.float32), rule_weight=1.0,
        blocked_rows=np.zeros(0, np.int64), pair_seed=np.zeros(0, np.int64),
        pair_item=np.zeros(0, np.int64), silent=np.zeros(n_silent, np.bool_),
        reason_a=np.zeros(draw(st.sampled_from([0, n_silent, 3])), np.bool_),
        reason_b=np.zeros(0, np.bool_), limit=draw(st.integers(0, 5)))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.composite(_inputs)())
def test_blend_kernel_refuses_what_it_cannot_index(inputs: BlendInput) -> None:
    """Fuzzed arrays: a clear ValueError, or an answer whose codes are in the vocabulary."""
    try:
        out = blend(inputs)
    except ValueError as exc:
        assert str(exc).startswith("blend: ")
        return
    assert out.codes.size == 0 or (out.codes.min() >= 0 and out.codes.max() < len(inputs.silent))


def test_cut_neighbours_never_crash_the_process(store: ArtifactStore) -> None:
    """The issue's case with the load checks bypassed: the kernel raises, no segfault."""
    bad = republish(store, store.path(), _cut_neighbours)
    script = textwrap.dedent(f"""
        from recsys.serving import recommend
        from recsys.serving.finish import Decisions
        from recsys.serving.index import load_index
        index = load_index({str(store.root)!r}, {bad!r})
        try:
            recommend.cart_addons(index, [index.ids[-1]], recommend.Options(k=5), Decisions())
        except ValueError as exc:
            print("refused:", exc)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, f"exit {done.returncode}: {done.stderr[-2000:]}"
    assert "refused: blend: a seed code is outside the neighbour tables" in done.stdout


def test_recsys_serve_starts_on_an_older_version(store: ArtifactStore, tmp_path: Path) -> None:
    """`recsys serve` (uvicorn, a subprocess) with CURRENT on the cut version: it serves the
    previous version, /readyz names the refused one, a request on product 299 answers."""
    good = store.current_version()
    bad = republish(store, store.path(good), _cut_neighbours)
    port = _free_port()
    config = tmp_path / "serve.toml"
    config.write_text(f'[artifacts]\nroot = "{store.root}"\n[serving]\nport = {port}\n'
                      f'api_key = "{KEY}"\nreload_interval_s = 0\n'
                      f'database_url = "sqlite:///{tmp_path / "serve.db"}"\n')
    server = subprocess.Popen([sys.executable, "-m", "recsys.cli", "--quiet", "serve", "--config",
                               str(config)], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, env={**os.environ,
                                                             "PYTHONPATH": str(REPO)})
    try:
        assert server.stdout is not None  # stdout=PIPE
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, f"server exited: {server.stdout.read()!r}"
            try:
                ready = httpx.get(f"{base}/readyz", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.2)
        body = ready.json()
        assert ready.status_code == 200, body
        assert body["version"] == good and body["failed_version"] == bad
        answer = httpx.post(f"{base}/v1/cart/add-ons", params={"k": 5}, json={
            "items": [{"product_id": last_product(store), "quantity": 1}]}, timeout=10)
        assert answer.status_code == 200, answer.text
        assert json.loads(answer.text)["model_version"] == good
        assert server.poll() is None
    finally:
        server.terminate()
        server.wait(timeout=30)
