"""Structural checks of artifact versions: files replaced and re-hashed pass the checksums
but not `recsys artifacts verify`; rollback goes only to a version that loads."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recsys.artifact_checks import check_version
from recsys.artifacts import MANIFEST_NAME, ArtifactStore, save_npz, sha256_file
from recsys.cli import main
from recsys.errors import ArtifactError
from recsys.vocab import Vocabulary

PRODUCTS = 300  # the shared demo shop's


@pytest.fixture(scope="module")
def good(demo_artifact: Path) -> Path:
    """The shared demo artifact's version (300 products), built by the pipeline; its folder.
    Only read: the tests publish copies of it into stores of their own."""
    return ArtifactStore(demo_artifact).path()


def republish(store: ArtifactStore, source: Path,
              damage: Callable[[Path], None] | None = None) -> str:
    """Publish a copy of ``source``; ``damage`` changes its files, which are then re-hashed
    (as someone who replaced a file and fixed the manifest would)."""
    with store.staging() as folder:
        for path in source.iterdir():
            if path.name == MANIFEST_NAME:
                continue
            (shutil.copytree if path.is_dir() else shutil.copyfile)(path, folder / path.name)
        version = store.publish(folder, config={}, config_hash="h", inputs={}).version
    if damage is not None:
        target = store.path(version)
        target.chmod(0o700)
        damage(target)
        manifest_path = target / MANIFEST_NAME
        manifest = json.loads(manifest_path.read_text())
        for rel in manifest["files"]:
            manifest["files"][rel] = {"sha256": sha256_file(target / rel),
                                      "bytes": (target / rel).stat().st_size}
        manifest_path.write_text(json.dumps(manifest))
        store.verify(version)  # the checksums agree: only the structural checks can tell
    return version


def _cut_neighbours(folder: Path) -> None:
    for part in ("ids", "scores", "support"):
        path = folder / "bought_together" / f"{part}.npy"
        np.save(path, np.load(path)[:10])


def _out_of_range(folder: Path) -> None:
    path = folder / "also_viewed" / "ids.npy"
    ids = np.load(path)
    ids[3, 0] = PRODUCTS + 7
    np.save(path, ids)


def _nan_score(folder: Path) -> None:
    path = folder / "bought_together_knn" / "scores.npy"
    scores = np.load(path)
    scores[0, 0] = np.nan
    np.save(path, scores)


def _purchases_out_of_range(folder: Path) -> None:
    data = dict(np.load(folder / "purchases.npz"))
    data["indices"] = data["indices"].copy()
    data["indices"][-1] = PRODUCTS
    save_npz(folder / "purchases.npz", **data)


def _garbage_json(folder: Path) -> None:
    (folder / "ranking.json").write_text("{not json")


def _unknown_prior_scope(folder: Path) -> None:
    chosen = json.loads((folder / "cold_start.json").read_text())
    (folder / "cold_start.json").write_text(json.dumps({**chosen,
                                                        "cold_start_prior_scope": "brand"}))


def _session_decay_above_one(folder: Path) -> None:
    chosen = json.loads((folder / "session_weights.json").read_text())
    chosen["cart"] = {"line_decay": 2.0, "chosen_by": "validation"}
    (folder / "session_weights.json").write_text(json.dumps(chosen))


def _session_placement_not_an_object(folder: Path) -> None:
    chosen = json.loads((folder / "session_weights.json").read_text())
    (folder / "session_weights.json").write_text(json.dumps({**chosen, "cart": [1]}))


def _garbage_parquet(folder: Path) -> None:
    (folder / "popular.parquet").write_bytes(b"PAR1 this is not parquet PAR1")


def _factors_cut(folder: Path) -> None:
    data = dict(np.load(folder / "als.npz"))
    data["user_factors"] = data["user_factors"][:5]
    save_npz(folder / "als.npz", **data)


DAMAGE = [
    (_cut_neighbours, f"bought_together/ids.npy: dimension 'items' is 10, elsewhere {PRODUCTS}"),
    (_out_of_range, f"also_viewed/ids.npy: codes -1..{PRODUCTS + 7} outside -1..{PRODUCTS - 1}"),
    (_nan_score, "bought_together_knn/scores.npy: 1 infinite or NaN scores"),
    (_purchases_out_of_range, f"purchases.npz: product codes outside 0..{PRODUCTS - 1}"),
    (_garbage_json, "ranking.json: not valid JSON"),
    (_unknown_prior_scope, "cold_start.json: cold_start_prior_scope must be one of "
                           "('category', 'shop'), not 'brand'"),
    (_session_decay_above_one, "session_weights.json: cart.line_decay must be in (0, 1] or "
                               "null, not 2.0"),
    (_session_placement_not_an_object, "session_weights.json: cart must be an object, not [1]"),
    (_garbage_parquet, "popular.parquet: not readable Parquet"),
    (_factors_cut, "dimension 'customers' is "),
]


def test_a_built_version_passes(good: Path) -> None:
    check_version(good)


@pytest.mark.parametrize(("damage", "message"), DAMAGE, ids=[d.__name__ for d, _ in DAMAGE])
def test_verify_runs_the_structural_checks(good: Path, tmp_path: Path, damage: Callable[[Path],
                                           None], message: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    store = ArtifactStore(tmp_path / "store")
    version = republish(store, good, damage)
    with pytest.raises(ArtifactError, match="fails the structural checks") as caught:
        check_version(store.path(version))
    assert message in str(caught.value)
    assert main(["artifacts", "--root", str(store.root), "verify", version]) == 1
    assert message in capsys.readouterr().err


def test_rollback_only_to_a_version_that_loads(good: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    store = ArtifactStore(tmp_path / "store")
    first = republish(store, good)
    garbage = republish(store, good, _garbage_json)
    cut = republish(store, good, _cut_neighbours)
    current = republish(store, good)
    root = str(store.root)
    for bad, reason in ((garbage, "ranking.json: not valid JSON"),
                        (cut, "bought_together/ids.npy")):
        assert main(["artifacts", "--root", root, "rollback", bad]) == 1
        assert reason in capsys.readouterr().err
        assert store.current_version() == current
    assert main(["artifacts", "--root", root, "rollback"]) == 0  # skips both broken ones
    assert f"CURRENT now points at {first}" in capsys.readouterr().out
    assert store.current_version() == first
    assert main(["artifacts", "--root", root, "rollback"]) == 1
    assert "no version older than" in capsys.readouterr().err


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n_items=st.integers(1, 12), rows=st.integers(0, 14), k=st.integers(0, 5),
       ids_dtype=st.sampled_from([np.int32, np.int64, np.float32]),
       scores_dtype=st.sampled_from([np.float32, np.float64]), low=st.integers(-3, 0),
       high=st.integers(0, 16), bad_score=st.sampled_from([None, np.nan, np.inf]),
       seed=st.integers(0, 2**16))
def test_neighbour_checks_admit_exactly_the_arrays_kernels_may_index(
        tmp_path: Path, n_items: int, rows: int, k: int, ids_dtype: type[np.number],
        scores_dtype: type[np.floating], low: int, high: int, bad_score: float | None,
        seed: int) -> None:
    """Fuzzed neighbour tables: the checks find nothing wrong with them iff every code indexes
    the vocabulary (or is the -1 padding), the shapes agree with it and the scores are finite
    float32."""
    rng = np.random.default_rng(seed)
    folder = Path(tempfile.mkdtemp(dir=tmp_path))  # one per example
    (folder / "also_viewed").mkdir()
    Vocabulary([f"p{i}" for i in range(n_items)]).save(folder / "items.parquet")
    pd.DataFrame({"scope": ["*"], "product_id": ["p0"], "orders": [1]}).to_parquet(
        folder / "popular.parquet")
    ids = rng.integers(low, high + 1, size=(rows, k)).astype(ids_dtype)
    scores = rng.random((rows, k)).astype(scores_dtype)
    if bad_score is not None and scores.size:
        scores.flat[int(rng.integers(scores.size))] = bad_score
    for name, array in (("ids", ids), ("scores", scores),
                        ("support", np.ones((rows, k), np.int64))):
        np.save(folder / "also_viewed" / f"{name}.npy", array)
    sound = (ids_dtype is np.int32 and rows == n_items and scores_dtype is np.float32
             and (not ids.size or (ids.min() >= -1 and ids.max() < n_items))
             and bool(np.isfinite(scores).all()))
    try:
        check_version(folder)
        problems = ""
    except ArtifactError as exc:  # this bare folder lacks other required files: judge ours
        problems = str(exc)
    assert ("also_viewed/" not in problems) == sound


def test_a_version_without_view_events_passes(tmp_path: Path) -> None:
    """Orders only: the empty tables (substitutes) still have their declared columns."""
    from recsys.config import load_config
    from recsys.pipeline import run_pipeline
    from tests.conftest import write_small_config

    config = write_small_config(tmp_path)
    config.write_text("".join(line for line in config.read_text().splitlines(keepends=True)
                              if not line.startswith("events = ")))
    run_pipeline(load_config(config), show_progress=False)
    check_version(ArtifactStore(tmp_path / "artifacts").path())
