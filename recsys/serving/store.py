"""What the API writes: storefront events, and merchandiser decisions that reach the API without
retraining. SQL through SQLAlchemy: SQLite by default, PostgreSQL by URL.

Decisions are keyed by product ids and rule keys (``A+B->C``), never by model codes, so they
survive retraining; the API reads a snapshot of the active ones every few seconds.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import SQLAlchemyError

from recsys.errors import ConfigError
from recsys.serving.recommend import Decisions

__all__ = ["ServingStore", "DECISION_KINDS", "EVENTS", "DECISIONS"]

DECISION_KINDS = ("block_product", "block_rule", "pin", "boost")

metadata = MetaData()

EVENTS = Table(
    "recsys_events", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=True),
    Column("event_type", String(32), nullable=False),
    Column("product_id", String(128), nullable=True),
    Column("session_id", String(128), nullable=True),
    Column("customer_id", String(128), nullable=True),
    Column("request_id", String(64), nullable=True),
    Column("placement", String(64), nullable=True),
    Column("position", Integer, nullable=True),
    Column("quantity", Float, nullable=True),
    Column("price", Float, nullable=True),
    Column("order_id", String(128), nullable=True),
)

DECISIONS = Table(
    "recsys_decisions", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(32), nullable=False),
    Column("product_id", String(128), nullable=True),  # blocked, pinned or boosted product
    Column("seed_id", String(128), nullable=True),  # pin: the product whose list it is in
    Column("rule_key", String(1024), nullable=True),  # block_rule
    Column("position", Integer, nullable=True),
    Column("factor", Float, nullable=True),
    Column("reason", String(1024), nullable=True),
    Column("created_by", String(128), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("active", Boolean, nullable=False, default=True),
)


class ServingStore:
    """Events and decisions in one SQL database; the decisions snapshot is cached briefly."""

    def __init__(self, url: str, *, refresh_seconds: float = 2.0, category_cap: int = 0,
                 best_sellers_first: frozenset[str] = frozenset()) -> None:
        try:
            parsed = make_url(url)
        except Exception as exc:  # noqa: BLE001 - SQLAlchemy raises several types here
            raise ConfigError(f"database_url {url!r} is not a SQLAlchemy URL ({exc})") from None
        if parsed.drivername.startswith("sqlite") and parsed.database not in (None, "",
                                                                              ":memory:"):
            Path(str(parsed.database)).parent.mkdir(parents=True, exist_ok=True)
        self.engine: Engine = create_engine(url, pool_pre_ping=True)
        self.refresh_seconds = refresh_seconds
        self.category_cap = category_cap
        self.best_sellers_first = best_sellers_first
        self._lock = threading.Lock()
        self._snapshot: Decisions | None = None
        self._snapshot_at = 0.0
        metadata.create_all(self.engine)

    def dispose(self) -> None:
        self.engine.dispose()

    # -- events ------------------------------------------------------------------------------

    def add_event(self, event: dict[str, Any]) -> int:
        """Store one validated event; returns its id."""
        with self.engine.begin() as conn:
            result = conn.execute(insert(EVENTS).values(received_at=datetime.now(UTC), **event))
            key = result.inserted_primary_key
            assert key is not None
            return int(key[0])

    def count_events(self, **where: Any) -> int:
        query = select(func.count()).select_from(EVENTS)
        for column, value in where.items():
            query = query.where(EVENTS.c[column] == value)
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    # -- decisions ---------------------------------------------------------------------------

    def add_decision(self, kind: str, *, product_id: str | None = None,
                     seed_id: str | None = None, rule_key: str | None = None,
                     position: int | None = None, factor: float | None = None,
                     reason: str | None = None, created_by: str | None = None) -> int:
        if kind not in DECISION_KINDS:
            raise ValueError(f"unknown decision kind {kind!r}")
        with self.engine.begin() as conn:
            result = conn.execute(insert(DECISIONS).values(
                kind=kind, product_id=product_id, seed_id=seed_id, rule_key=rule_key,
                position=position, factor=factor, reason=reason, created_by=created_by,
                created_at=datetime.now(UTC), active=True))
        self.invalidate()
        key = result.inserted_primary_key
        assert key is not None
        return int(key[0])

    def deactivate_decision(self, decision_id: int) -> bool:
        with self.engine.begin() as conn:
            result = conn.execute(update(DECISIONS).where(DECISIONS.c.id == decision_id)
                                  .where(DECISIONS.c.active.is_(True)).values(active=False))
        self.invalidate()
        return bool(result.rowcount)

    def list_decisions(self, *, active_only: bool = True) -> list[dict[str, Any]]:
        query = select(DECISIONS).order_by(DECISIONS.c.id)
        if active_only:
            query = query.where(DECISIONS.c.active.is_(True))
        with self.engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(query)]

    def invalidate(self) -> None:
        with self._lock:
            self._snapshot = None

    def decisions(self) -> Decisions:
        """The active decisions, re-read at most every ``refresh_seconds``. If the database
        is unreachable the last snapshot stays in force."""
        now = time.monotonic()
        with self._lock:
            if self._snapshot is not None and now - self._snapshot_at < self.refresh_seconds:
                return self._snapshot
        try:
            rows = self.list_decisions()
        except SQLAlchemyError:
            with self._lock:
                if self._snapshot is not None:
                    return self._snapshot
            raise
        pins: dict[str, list[tuple[str, int]]] = {}
        boosts: dict[str, float] = {}
        blocked_products, blocked_rules = set(), set()
        for row in rows:  # a merchandiser's decisions: hundreds, not millions
            if row["kind"] == "block_product":
                blocked_products.add(row["product_id"])
            elif row["kind"] == "block_rule":
                blocked_rules.add(row["rule_key"])
            elif row["kind"] == "pin":
                pins.setdefault(row["seed_id"], []).append((row["product_id"], row["position"]))
            elif row["kind"] == "boost":
                boosts[row["product_id"]] = float(row["factor"])
        snapshot = Decisions(
            blocked_products=frozenset(blocked_products), blocked_rules=frozenset(blocked_rules),
            pins={seed: tuple(sorted(p, key=lambda x: x[1])) for seed, p in pins.items()},
            boosts=boosts, category_cap=self.category_cap,
            best_sellers_first=self.best_sellers_first)
        with self._lock:
            self._snapshot, self._snapshot_at = snapshot, now
        return snapshot
