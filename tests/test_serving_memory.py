"""What a server process tunes for its memory (``recsys.serving.memory``): ``recsys serve``'s
workers (``app_from_env``) make the garbage collector's young pass every
``YOUNG_PASS_EVERY`` net allocations, the older generations' ratios as they were; an app
made with ``create_app`` (a test, an embedding program) leaves its process's collector
alone."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

from recsys.app import app_from_env, create_app
from recsys.config import ServingSettings
from recsys.serving.memory import YOUNG_PASS_EVERY


def test_a_server_worker_makes_its_young_collections_less_often(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = gc.get_threshold()
    try:
        gc.set_threshold(700, 7, 9)
        database = f"sqlite:///{tmp_path / 'recsys.db'}"
        create_app(ServingSettings(artifacts=str(tmp_path / "none"), reload_interval_s=0,
                                   database_url=database))
        assert gc.get_threshold() == (700, 7, 9)
        monkeypatch.setenv("RECSYS_SERVING_ARTIFACTS", str(tmp_path / "none"))
        monkeypatch.setenv("RECSYS_SERVING_RELOAD_INTERVAL_S", "0")
        monkeypatch.setenv("RECSYS_SERVING_DATABASE_URL", database)
        app_from_env()
        assert gc.get_threshold() == (YOUNG_PASS_EVERY, 7, 9)
        assert YOUNG_PASS_EVERY > 700
    finally:
        gc.set_threshold(*before)
