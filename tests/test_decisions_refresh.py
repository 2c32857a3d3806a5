"""The decisions snapshot of a serving worker (``ServingStore.decisions``): served at once while
one long-lived thread re-reads it every ``refresh_seconds``, so a merchandiser's decision made
on another worker reaches this one without a request waiting on the database or on a thread
starting."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from recsys.serving.store import ServingStore
from tests.test_api_reload import wait_for


def test_a_stale_snapshot_is_served_while_one_thread_refreshes_it(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'serving.db'}"
    store = ServingStore(url, refresh_seconds=0.05)
    other = ServingStore(url, refresh_seconds=0)  # another worker, where a merchandiser acts
    before = set(threading.enumerate())
    try:
        assert store.decisions().blocked_products == frozenset()
        other.add_decision("block_product", product_id="P1")
        time.sleep(0.06)
        assert store.decisions().blocked_products == frozenset()  # stale, at once
        wait_for(lambda: store.decisions().blocked_products == {"P1"}, "the first refresh")
        refresher = [t for t in threading.enumerate()
                     if t.name == "recsys-decisions" and t not in before]
        assert len(refresher) == 1 and refresher[0].is_alive()
        other.add_decision("block_product", product_id="P2")
        wait_for(lambda: store.decisions().blocked_products == {"P1", "P2"},
                  "the second refresh")
        assert [t for t in threading.enumerate()
                if t.name == "recsys-decisions" and t not in before] == refresher
    finally:
        store.dispose()
        other.dispose()
    refresher[0].join(timeout=10)
    assert not refresher[0].is_alive()  # dispose ends it
