"""The merchandisers' decisions as a serving worker applies them: a snapshot of the active ones
(``Decisions``), re-read at most every ``refresh_seconds`` by one background thread while
the stale snapshot is served, so a request never waits on the database once one snapshot
exists, and a decision made through another worker reaches this one without a retrain. The
rows come from ``ServingStore.list_decisions``; a write through this worker drops the
snapshot at once (``invalidate``).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from recsys.serving.finish import Decisions

__all__ = ["DecisionSnapshot"]

log = logging.getLogger("recsys.serving")


class DecisionSnapshot:
    """The active decisions of ``read_rows`` (rows in id order), cached (see the module)."""

    def __init__(self, read_rows: Callable[[], list[dict[str, Any]]], *,
                 refresh_seconds: float, category_cap: int,
                 best_sellers_first: frozenset[str]) -> None:
        self.read_rows = read_rows
        self.refresh_seconds = refresh_seconds
        self.category_cap = category_cap
        self.best_sellers_first = best_sellers_first
        self._lock = threading.Lock()
        self._snapshot: Decisions | None = None
        self._snapshot_at = 0.0
        self._generation = 0  # bumped by invalidate: a read begun before it is not kept
        self._refreshing = False
        self._refresh_due: queue.SimpleQueue[int | None] = queue.SimpleQueue()  # generations
        self._refresher: threading.Thread | None = None  # started by the first refresh

    def invalidate(self) -> None:
        """Drop the snapshot: the next ``get`` reads the database."""
        with self._lock:
            self._snapshot = None
            self._generation += 1

    def close(self) -> None:
        """End the refresh thread (a later refresh starts another)."""
        with self._lock:
            self._refresh_due.put(None)
            self._refresher = None

    def get(self) -> Decisions:
        """The active decisions, re-read at most every ``refresh_seconds``: a stale snapshot
        is served while the refresh thread re-reads it; if the database is unreachable the
        last snapshot stays in force."""
        now = time.monotonic()
        with self._lock:
            snapshot, generation = self._snapshot, self._generation
            if snapshot is not None and now - self._snapshot_at < self.refresh_seconds:
                return snapshot
            if snapshot is not None and self.refresh_seconds > 0:
                if not self._refreshing:
                    self._refreshing = True
                    self._refresh_due.put(generation)
                    if self._refresher is None:
                        self._refresher = threading.Thread(
                            target=self._keep_refreshing, daemon=True, name="recsys-decisions")
                        self._refresher.start()
                return snapshot
        return self._read(now, generation)

    def _keep_refreshing(self) -> None:
        """The one refresh thread (until ``close``): a thread started for each refresh held
        up the request that asked for it until the thread ran. An unreachable database keeps
        the last snapshot (``_read``); any other failure of a read is logged, and it must
        not end the refreshes."""
        while (generation := self._refresh_due.get()) is not None:
            try:
                self._read(time.monotonic(), generation)
            except Exception:  # noqa: BLE001 - one failed read must not end the refreshes
                log.exception("decisions not refreshed, the last ones stay in force")
            finally:
                with self._lock:
                    self._refreshing = False

    def _read(self, now: float, generation: int) -> Decisions:
        """Read the decisions into a snapshot; kept unless an invalidate came meanwhile."""
        try:
            rows = self.read_rows()
        except SQLAlchemyError as exc:
            with self._lock:
                if self._snapshot is not None:
                    return self._snapshot
            # never read yet and the database is down: serve without decisions until it is
            # back (re-read after refresh_seconds) rather than fail the request
            log.warning("decisions unreadable, none applied: %s", type(exc).__name__)
            rows = []
        pins: dict[str, dict[str, int]] = {}
        boosts: dict[str, float] = {}
        blocked_products: set[str] = set()
        blocked_rules: set[str] = set()
        # in id order, so the latest decision on a rule, a pin or a boost wins
        for row in rows:  # a merchandiser's decisions: thousands, not millions
            if row["kind"] == "block_product":
                blocked_products.add(row["product_id"])
            elif row["kind"] == "block_rule":
                blocked_rules.add(row["rule_key"])
            elif row["kind"] == "approve_rule":
                blocked_rules.discard(row["rule_key"])
            elif row["kind"] == "pin":
                pins.setdefault(row["seed_id"], {})[row["product_id"]] = row["position"]
            elif row["kind"] == "boost":
                boosts[row["product_id"]] = float(row["factor"])
        snapshot = Decisions(
            blocked_products=frozenset(blocked_products), blocked_rules=frozenset(blocked_rules),
            pins={seed: tuple(sorted(p.items(), key=lambda x: x[1])) for seed, p in pins.items()},
            boosts=boosts, category_cap=self.category_cap,
            best_sellers_first=self.best_sellers_first)
        with self._lock:
            if generation == self._generation:
                self._snapshot, self._snapshot_at = snapshot, now
        return snapshot
