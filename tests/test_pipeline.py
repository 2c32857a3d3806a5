"""`recsys run` end to end on a small shop with a known answer; the artifact CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from recsys.artifacts import ArtifactStore
from recsys.cli import main
from tests.conftest import REPO, write_small_config


def test_run_publishes_a_verified_version(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_small_config(tmp_path)
    assert main(["-q", "run", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "orders: 10 read, 8 accepted, 2 rejected" in out
    store = ArtifactStore(tmp_path / "artifacts")
    manifest = store.verify()
    assert set(manifest.files) >= {"items.parquet", "catalog.parquet", "popular.parquet",
                                   "ingest_report.json"}
    assert manifest.inputs["rows"]["orders"] == {"read": 10, "accepted": 8, "rejected": 2}
    assert manifest.metrics["basket_stats"] == {"orders": 5, "products_ordered": 4,
                                                "mean_basket_size": 1.6, "max_basket_size": 2}
    popular = pd.read_parquet(store.path() / "popular.parquet")
    top = popular[popular["scope"] == "*"].sort_values("rank")
    assert top["product_id"].tolist() == ["tea", "mug", "spoon", "kettle"]  # ties: more units
    assert top["orders"].tolist() == [3, 3, 1, 1]
    report = json.loads((tmp_path / "data" / "report.json").read_text())
    assert report["rejected_by_reason"] == {"cancellation": 1, "unparseable_date": 1}
    quarantine = pd.read_csv(tmp_path / "data" / "quarantine" / "orders.csv")
    assert quarantine["row"].tolist() == [9, 10]
    assert quarantine["reason"].tolist() == ["unparseable_date", "cancellation"]


def test_artifacts_list_show_rollback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_small_config(tmp_path)
    assert main(["-q", "run", "--config", str(config)]) == 0
    assert main(["-q", "run", "--config", str(config)]) == 0
    store = ArtifactStore(tmp_path / "artifacts")
    first, second = store.versions()
    capsys.readouterr()
    assert main(["artifacts", "--config", str(config), "list"]) == 0
    listing = capsys.readouterr().out
    assert f"* {second}" in listing and f"  {first}" in listing
    assert main(["artifacts", "--config", str(config), "show", first]) == 0
    assert json.loads(capsys.readouterr().out)["version"] == first
    assert main(["artifacts", "--config", str(config), "rollback"]) == 0
    assert store.current_version() == first
    assert main(["artifacts", "--config", str(config), "show", "nope"]) == 1
    assert "nope" in capsys.readouterr().err


def test_keep_last_versions(tmp_path: Path) -> None:
    config = write_small_config(tmp_path)
    for _ in range(4):
        assert main(["-q", "run", "--config", str(config)]) == 0
    assert len(ArtifactStore(tmp_path / "artifacts").versions()) == 3


@pytest.mark.parametrize("command", ["generate-demo", "ingest", "run", "artifacts", "serve",
                                     "demo"])
def test_every_command_has_help(command: str) -> None:
    result = subprocess.run([sys.executable, "-m", "recsys.cli", command, "--help"],
                            capture_output=True, text=True, cwd=REPO, timeout=60)
    assert result.returncode == 0
    assert "usage: recsys" in result.stdout


def test_nightly_job_script_runs_the_pipeline(tmp_path: Path) -> None:
    config = write_small_config(tmp_path)
    result = subprocess.run([sys.executable, "jobs/nightly.py", "--config", str(config), "-q"],
                            capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr
    assert ArtifactStore(tmp_path / "artifacts").current_version() is not None


def test_missing_orders_file_is_exit_1_without_traceback(tmp_path: Path) -> None:
    config = write_small_config(tmp_path)
    (tmp_path / "raw" / "orders.csv").unlink()
    result = subprocess.run([sys.executable, "-m", "recsys.cli", "-q", "run", "--config",
                             str(config)], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert result.returncode == 1
    assert "orders.csv: file not found" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("table", ["events", "catalog"])
def test_a_missing_optional_source_is_named_too(tmp_path: Path, table: str,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    config = write_small_config(tmp_path)
    (tmp_path / "raw" / f"{table}.csv").unlink()
    assert main(["-q", "run", "--config", str(config)]) == 1
    assert f"{table}.csv: file not found" in capsys.readouterr().err
    assert ArtifactStore(tmp_path / "artifacts").versions() == []


def test_demo_console_user_gets_a_fresh_password_each_run(tmp_path: Path) -> None:
    from recsys.cli.serve import demo_user
    from recsys.console.passwords import verify_password
    from recsys.serving.store import ServingStore

    url = f"sqlite:///{tmp_path / 'recsys.db'}"
    first, second = demo_user(url), demo_user(url)
    assert first != second and len(second) >= 16
    store = ServingStore(url)
    try:
        user = store.user("demo")
        assert user is not None and user["role"] == "editor"
        assert verify_password(user["password_hash"], second)
        assert not verify_password(user["password_hash"], first)
    finally:
        store.dispose()


def test_the_view_sessions_are_made_once_per_run_and_read_only(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rules (substitutes), models (also-viewed, V-SKNN) and cold start read one session x
    product matrix, made by the first of them; no job can change it under the others."""
    import recsys.pipeline as pipeline
    from recsys.config import load_config
    from recsys.demo import DemoSpec, generate_demo

    made: list[Any] = []

    def counted(*args: Any) -> Any:
        made.append(view_sessions(*args))
        return made[-1]

    view_sessions = pipeline.view_sessions
    monkeypatch.setattr(pipeline, "view_sessions", counted)
    generate_demo(tmp_path / "shop", DemoSpec(orders=1500, seed=2), progress=False)
    config = tmp_path / "recsys.toml"
    config.write_text(f'data_dir = "{tmp_path / "data"}"\n[ingest]\n' + "".join(
        f'{t} = "{tmp_path / "shop" / f"{t}.csv"}"\n' for t in ("orders", "events", "catalog"))
        + f'[demo]\ngenerate_if_missing = false\n[artifacts]\nroot = "{tmp_path / "a"}"\n')
    _, manifest = pipeline.run_pipeline(load_config(config), show_progress=False)
    assert len(made) == 1 and made[0] is not None
    assert manifest.metrics["models"]["view_sessions"] == made[0].shape[0]
    assert manifest.metrics["cold_start"]["rows"] == made[0].shape[0]  # sessions, not orders
    with pytest.raises(ValueError, match="read-only"):
        made[0].data[0] = 2.0
