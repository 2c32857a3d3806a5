"""What a serving process tunes for its memory (``recsys.serving.memory``): the garbage
collector's young pass every ``YOUNG_PASS_EVERY`` net allocations, the older generations'
ratios as they were."""

from __future__ import annotations

import gc
from pathlib import Path

from recsys.config import ServingSettings
from recsys.serving.memory import YOUNG_PASS_EVERY
from recsys.serving.state import ServingState


def test_a_serving_process_makes_its_young_collections_less_often(tmp_path: Path) -> None:
    before = gc.get_threshold()
    try:
        gc.set_threshold(700, 7, 9)
        settings = ServingSettings(artifacts=str(tmp_path / "none"), reload_interval_s=0,
                                   database_url=f"sqlite:///{tmp_path / 'recsys.db'}")
        state = ServingState(settings)
        assert gc.get_threshold() == (YOUNG_PASS_EVERY, 7, 9)
        assert YOUNG_PASS_EVERY > 700
        state.store.dispose()
    finally:
        gc.set_threshold(*before)
