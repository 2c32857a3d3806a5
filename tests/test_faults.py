"""Fault tests: the pipeline SIGKILLed at each stage, the disk full during publish, the
database refusing connections. The version served before stays current and loads."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from recsys.artifact_checks import check_loads
from recsys.artifacts import ArtifactStore
from recsys.cli import main
from recsys.pipeline import JOBS
from tests.conftest import REPO, write_small_config

# Runs `recsys run` and SIGKILLs itself at the stage named by argv[1]: ingest (after writing
# its first table), job:NAME (after the job wrote its files), publish:hashing (while hashing
# the staged files); publish:POINT uses the store's own crash points (RECSYS_CRASH_AT).
KILLER = """
import os, signal, sys
import recsys.artifacts as artifacts, recsys.ingest as ingest, recsys.pipeline as pipeline
from recsys.cli import main

stage, config = sys.argv[1], sys.argv[2]
def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)
def after(real):
    def call(*args, **kwargs):
        real(*args, **kwargs)
        die()
    return call
if stage == "ingest":
    ingest._write_parquet = after(ingest._write_parquet)
elif stage.startswith("job:"):
    pipeline.JOBS[stage[4:]] = after(pipeline.JOBS[stage[4:]])
elif stage == "publish:hashing":
    artifacts.os.fchmod = die
sys.exit(main(["-q", "run", "--config", config]))
"""
STAGES = ["ingest", *(f"job:{name}" for name in JOBS), "publish:hashing",
          "publish:after_manifest", "publish:after_rename", "publish:before_pointer_replace"]


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    tmp = tmp_path_factory.mktemp("faults")
    config = write_small_config(tmp)
    assert main(["-q", "run", "--config", str(config)]) == 0
    return config, ArtifactStore(tmp / "artifacts").current_version() or ""


@pytest.mark.parametrize("stage", STAGES)
def test_sigkill_at_each_stage_keeps_the_previous_version(published: tuple[Path, str],
                                                          stage: str) -> None:
    config, before = published
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    if stage.startswith("publish:") and stage != "publish:hashing":
        env["RECSYS_CRASH_AT"] = stage.removeprefix("publish:")
    result = subprocess.run([sys.executable, "-c", KILLER, stage, str(config)], cwd=REPO,
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == -9, result.stderr  # killed, not finished
    store = ArtifactStore(config.parent / "artifacts")
    assert store.current_version() == before
    check_loads(store.root, before)  # verified, structurally sound, loads


def test_a_run_after_a_kill_publishes_and_cleans_up(published: tuple[Path, str]) -> None:
    config, _ = published
    store = ArtifactStore(config.parent / "artifacts")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, "-c", KILLER, "job:models", str(config)], cwd=REPO, env=env,
                   capture_output=True, timeout=300, check=False)
    assert any((store.root / ".staging").iterdir())  # the killed run's staging folder
    assert main(["-q", "run", "--config", str(config)]) == 0
    check_loads(store.root, store.current_version() or "")
    assert not [p for p in (store.root / ".staging").iterdir() if p.is_dir()]


@contextlib.contextmanager
def small_disk(path: Path, size: str) -> Iterator[str]:
    """A size-limited tmpfs at ``path`` when this process may mount one (root), else skip."""
    path.mkdir()
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a size-limited tmpfs needs root")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                             capture_output=True, text=True, check=False)
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield str(path)
    finally:
        subprocess.run(["umount", str(path)], check=False)


def test_disk_full_during_publish(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_small_config(tmp_path)
    text = config.read_text().replace(str(tmp_path / "artifacts"), str(tmp_path / "disk"))
    config.write_text(text)
    with small_disk(tmp_path / "disk", "4m"):
        assert main(["-q", "run", "--config", str(config)]) == 0
        store = ArtifactStore(tmp_path / "disk")
        before = store.current_version()
        size = sum(p.stat().st_size for p in store.path().rglob("*") if p.is_file())
        stats = os.statvfs(tmp_path / "disk")
        filler = tmp_path / "disk" / "filler"
        with open(filler, "wb") as f:  # leave room for about half a version
            f.write(b"\0" * (stats.f_bavail * stats.f_frsize - size // 2))
        capsys.readouterr()
        assert main(["-q", "run", "--config", str(config)]) == 1
        err = capsys.readouterr().err
        assert "no space left on the device" in err and "Traceback" not in err
        assert store.current_version() == before
        check_loads(store.root, before or "")
        assert not [p for p in (store.root / ".staging").iterdir() if p.is_dir()]
        filler.unlink()
        assert main(["-q", "run", "--config", str(config)]) == 0  # room again: it publishes
        assert store.current_version() != before


@pytest.mark.parametrize("command", ["ingest", "run"])
def test_postgres_connection_refused_for_ingest(tmp_path: Path, command: str,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    url = "postgresql+psycopg://postgres:pw-Qa9@127.0.0.1:1/test#orders"
    if command == "ingest":
        argv = ["-q", "ingest", "--orders", url, "--out", str(tmp_path / "data")]
    else:
        config = write_small_config(tmp_path)
        orders = str(tmp_path / "raw" / "orders.csv")
        config.write_text(config.read_text().replace(orders, url))
        argv = ["-q", "run", "--config", str(config)]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "127.0.0.1:1" in err and "refused" in err.lower()
    assert "pw-Qa9" not in err and "Traceback" not in err
    assert not (tmp_path / "data" / "orders.parquet").exists()
