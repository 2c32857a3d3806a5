"""The decisions snapshot of a serving worker (``ServingStore.decisions``): served at once while
one long-lived thread re-reads it every ``refresh_seconds``, so a merchandiser's decision made
on another worker reaches this one without a request waiting on the database or on a thread
starting."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from recsys.serving.decision_snapshot import DecisionSnapshot
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


def test_a_failed_refresh_does_not_end_the_refreshes() -> None:
    """A read that fails in an unexpected way (not a database error) keeps the last snapshot,
    and the next refresh still happens on the same thread."""
    calls = 0

    def read_rows() -> list[dict[str, object]]:
        nonlocal calls
        calls += 1
        if calls == 2:  # the first refresh
            raise RuntimeError("a bad row")
        return [] if calls == 1 else [{"kind": "block_product", "product_id": "P1"}]

    snapshot = DecisionSnapshot(read_rows, refresh_seconds=0.05, category_cap=0,
                                best_sellers_first=frozenset())
    try:
        assert snapshot.get().blocked_products == frozenset()  # the first read, in the caller
        wait_for(lambda: snapshot.get().blocked_products == {"P1"},
                 "a refresh after the failed one")
        assert calls >= 3
    finally:
        snapshot.close()
