"""What the API and the console write: storefront events, merchandiser decisions that reach the
API without retraining, their audit trail, and console users. SQL through SQLAlchemy: SQLite by
default, PostgreSQL by URL.

Decisions are keyed by product ids and rule keys (``A+B->C``), never by model codes, so they
survive retraining; the API reads a snapshot of the active ones every few seconds. Every
decision added or undone writes an audit row (who, when, why) in the same transaction; undone
decisions are kept, marked inactive.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    delete,
    false,
    func,
    insert,
    select,
    update,
)
from sqlalchemy import event as sql_event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import (
    IntegrityError,
    InterfaceError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout

from recsys.errors import ConfigError
from recsys.redact import redact_text
from recsys.server_events import SERVER_EVENTS_TABLE
from recsys.serving.decision_snapshot import DecisionSnapshot
from recsys.serving.finish import Decisions
from recsys.serving.migrate import new_epoch, upgrade

log = logging.getLogger(__name__)

__all__ = ["ServingStore", "DATABASE_DOWN", "DECISION_KINDS", "ROLES", "EVENTS", "DECISIONS",
           "AUDIT", "USERS", "EVENT_KEY_INDEX"]

# approve_rule changes no list: the console shows it, and it cancels an earlier block_rule
DECISION_KINDS = ("block_product", "block_rule", "pin", "boost", "approve_rule")
ROLES = ("viewer", "editor")  # viewers browse and export; editors also decide

metadata = MetaData()

EVENTS = Table(
    SERVER_EVENTS_TABLE, metadata,  # `recsys run` trains on it (recsys.server_events)
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
    Column("event_key", String(128), nullable=True),  # idempotency: a retried beacon's key
)
EVENT_KEY_INDEX = Index("ux_recsys_events_event_key", EVENTS.c.event_key, unique=True)

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

AUDIT = Table(
    "recsys_audit", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("username", String(128), nullable=True),  # None: the admin API without created_by
    Column("action", String(32), nullable=False),  # the decision kind added, or "undo"
    Column("decision_id", Integer, nullable=False),
    Column("batch_id", String(32), nullable=False),  # one per request: a bulk action, its undo
    Column("reason", String(1024), nullable=True),
)

USERS = Table(
    "recsys_users", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("username", String(64), nullable=False, unique=True),
    Column("password_hash", String(256), nullable=False),  # argon2id, never the password
    Column("role", String(16), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    # changed on sign-out, password reset, disable: every older session cookie stops working
    Column("session_epoch", String(32), nullable=True),
    Column("disabled", Boolean, nullable=False, server_default=false()),
)

# what SQLAlchemy raises when the database cannot be reached or is too busy (refused, gone,
# locked, no pooled connection free in time): answered 503 with Retry-After, never 500
DATABASE_DOWN = (OperationalError, InterfaceError, PoolTimeout)
SQLITE_BUSY_MS = 5000  # how long a SQLite writer waits for another's lock before failing

_DECISION_FIELDS = ("kind", "product_id", "seed_id", "rule_key", "position", "factor")


def _sqlite_concurrent(connection: Any, _record: Any) -> None:
    """A SQLite connection for concurrent workers: write-ahead log (readers never block the
    writer) and a busy timeout (a writer waits for another's lock instead of failing)."""
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_MS}")
    cursor.close()


class ServingStore:
    """Events and decisions in one SQL database; the decisions snapshot is cached briefly."""

    def __init__(self, url: str, *, refresh_seconds: float = 2.0, category_cap: int = 0,
                 best_sellers_first: frozenset[str] = frozenset()) -> None:
        try:
            parsed = make_url(url)
        except Exception as exc:  # noqa: BLE001 - SQLAlchemy raises several types here
            raise ConfigError(f"database_url {redact_text(url)!r} is not a SQLAlchemy URL "
                              f"({redact_text(str(exc))})") from None
        if parsed.drivername.startswith("sqlite") and parsed.database not in (None, "",
                                                                              ":memory:"):
            Path(str(parsed.database)).parent.mkdir(parents=True, exist_ok=True)
        self.engine: Engine = create_engine(url, pool_pre_ping=True)
        if parsed.drivername.startswith("sqlite"):
            sql_event.listen(self.engine, "connect", _sqlite_concurrent)
        self.snapshot = DecisionSnapshot(self.list_decisions, refresh_seconds=refresh_seconds,
                                         category_cap=category_cap,
                                         best_sellers_first=best_sellers_first)
        self.database_ok = False
        self.check_database()

    def check_database(self) -> bool:
        """Ping the database (creating the tables first if it was down); False (logged) while
        it is down, so a server starts and serves without it."""
        try:
            if not self.database_ok:
                metadata.create_all(self.engine)
                upgrade(self.engine, USERS, [EVENT_KEY_INDEX])
            with self.engine.connect() as conn:
                conn.execute(select(1))
        except SQLAlchemyError as exc:
            log.warning("database unavailable (serving without it): %s",
                        type(exc).__name__)
            self.database_ok = False
            return False
        self.database_ok = True
        return True

    def dispose(self) -> None:
        self.snapshot.close()
        self.engine.dispose()

    # -- events ------------------------------------------------------------------------------

    def add_event(self, event: dict[str, Any]) -> int:
        """Store one validated event; returns its id. An event whose ``event_key`` is stored
        already is not stored again: the first one's id is returned."""
        try:
            with self.engine.begin() as conn:
                result = conn.execute(insert(EVENTS).values(
                    **{"received_at": datetime.now(UTC), **event}))
        except IntegrityError:
            if event.get("event_key") is None:
                raise
            with self.engine.connect() as conn:
                first = conn.execute(select(EVENTS.c.id).where(
                    EVENTS.c.event_key == event["event_key"])).scalar()
            if first is None:  # not the key's constraint
                raise
            return int(first)
        key = result.inserted_primary_key
        assert key is not None
        return int(key[0])

    def delete_events_before(self, cutoff: datetime) -> int:
        """Delete the events received before ``cutoff`` (retention); how many went."""
        with self.engine.begin() as conn:
            return int(conn.execute(delete(EVENTS).where(EVENTS.c.received_at < cutoff))
                       .rowcount)

    def add_events(self, events: list[dict[str, Any]]) -> None:
        """Store buffered events (each with its received_at), each once by its event_key."""
        for event in events:
            self.add_event(event)

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
        """Store one decision (and its audit row); returns its id."""
        _, ids = self.add_decisions([{
            "kind": kind, "product_id": product_id, "seed_id": seed_id, "rule_key": rule_key,
            "position": position, "factor": factor}], by=created_by, reason=reason)
        return ids[0]

    def add_decisions(self, decisions: Sequence[Mapping[str, Any]], *, by: str | None,
                      reason: str | None) -> tuple[str, list[int]]:
        """Store decisions (dicts of kind and its fields) and one audit row each, in one
        transaction; returns the batch id and the decision ids, in order."""
        for decision in decisions:
            if decision["kind"] not in DECISION_KINDS:
                raise ValueError(f"unknown decision kind {decision['kind']!r}")
        if not decisions:
            return "", []
        now, batch = datetime.now(UTC), uuid.uuid4().hex
        rows = [{**{f: decision.get(f) for f in _DECISION_FIELDS}, "reason": reason,
                 "created_by": by, "created_at": now, "active": True} for decision in decisions]
        with self.engine.begin() as conn:
            ids = list(map(int, conn.execute(
                insert(DECISIONS).returning(DECISIONS.c.id, sort_by_parameter_order=True),
                rows).scalars()))
            conn.execute(insert(AUDIT), [
                {"at": now, "username": by, "action": row["kind"], "decision_id": i,
                 "batch_id": batch, "reason": reason} for row, i in zip(rows, ids, strict=True)])
        self.invalidate()
        return batch, ids

    def deactivate_decision(self, decision_id: int, *, by: str | None = None,
                            reason: str | None = None) -> bool:
        """Undo one decision; False when there is no active decision with this id."""
        return bool(self.deactivate_decisions([decision_id], by=by, reason=reason))

    def deactivate_decisions(self, decision_ids: Iterable[int], *, by: str | None,
                             reason: str | None) -> list[int]:
        """Undo the active ones of these decisions (kept, marked inactive) with an audit row
        each; returns the ids undone."""
        wanted = sorted(set(decision_ids))
        if not wanted:
            return []
        now, batch = datetime.now(UTC), uuid.uuid4().hex
        with self.engine.begin() as conn:
            done = list(map(int, conn.execute(
                update(DECISIONS).where(DECISIONS.c.id.in_(wanted))
                .where(DECISIONS.c.active.is_(True)).values(active=False)
                .returning(DECISIONS.c.id)).scalars()))
            if done:
                conn.execute(insert(AUDIT), [
                    {"at": now, "username": by, "action": "undo", "decision_id": i,
                     "batch_id": batch, "reason": reason} for i in sorted(done)])
        self.invalidate()
        return sorted(done)

    def list_decisions(self, *, active_only: bool = True) -> list[dict[str, Any]]:
        query = select(DECISIONS).order_by(DECISIONS.c.id)
        if active_only:
            query = query.where(DECISIONS.c.active.is_(True))
        with self.engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(query)]

    def batch_decisions(self, batch_id: str) -> list[int]:
        """The ids of the decisions added in one batch (to undo a bulk action at once)."""
        query = (select(AUDIT.c.decision_id).where(AUDIT.c.batch_id == batch_id)
                 .where(AUDIT.c.action != "undo"))
        with self.engine.connect() as conn:
            return list(map(int, conn.execute(query).scalars()))

    def audit_log(self, *, limit: int, offset: int = 0) -> list[dict[str, Any]]:
        """Audit rows newest first, each with the decision it concerns."""
        query = (select(AUDIT, DECISIONS.c.kind, DECISIONS.c.product_id, DECISIONS.c.seed_id,
                        DECISIONS.c.rule_key, DECISIONS.c.position, DECISIONS.c.factor,
                        DECISIONS.c.active)
                 .join(DECISIONS, DECISIONS.c.id == AUDIT.c.decision_id)
                 .order_by(AUDIT.c.id.desc()).limit(limit).offset(offset))
        with self.engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(query)]

    def count_audit(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(AUDIT)).scalar_one())

    # -- console users -----------------------------------------------------------------------

    def add_user(self, username: str, password_hash: str, role: str) -> int:
        """Create a console user; ValueError when the name is taken or bad, or the role
        unknown."""
        if not (0 < len(username) <= 64 and username.isprintable()
                and not any(c.isspace() for c in username)):
            raise ValueError(f"user name {username!r} must be 1 to 64 printable characters "
                             "without spaces")
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}; use one of {', '.join(ROLES)}")
        try:
            with self.engine.begin() as conn:
                result = conn.execute(insert(USERS).values(
                    username=username, password_hash=password_hash, role=role,
                    created_at=datetime.now(UTC), session_epoch=new_epoch()))
        except IntegrityError:
            raise ValueError(f"user {username!r} exists already") from None
        key = result.inserted_primary_key
        assert key is not None
        return int(key[0])

    def set_password(self, username: str, password_hash: str) -> bool:
        """Replace a user's password hash and end their sessions; False when there is no
        such user."""
        return self._update_user(username, password_hash=password_hash)

    def end_sessions(self, username: str) -> bool:
        """Sign the user out everywhere (every cookie signed before stops working)."""
        return self._update_user(username)

    def set_disabled(self, username: str, disabled: bool) -> bool:
        """Disable (sessions ended, sign-in refused) or enable a user."""
        return self._update_user(username, disabled=disabled)

    def remove_user(self, username: str) -> bool:
        """Delete a user (their decisions and audit rows keep the name)."""
        with self.engine.begin() as conn:
            return bool(conn.execute(delete(USERS).where(USERS.c.username == username))
                        .rowcount)

    def _update_user(self, username: str, **values: Any) -> bool:
        """Change a user's row and give them a new session epoch; False without the user."""
        with self.engine.begin() as conn:
            result = conn.execute(update(USERS).where(USERS.c.username == username)
                                  .values(session_epoch=new_epoch(), **values))
        return bool(result.rowcount)

    def user(self, username: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(USERS).where(USERS.c.username == username)).first()
        return None if row is None else dict(row._mapping)

    def list_users(self) -> list[dict[str, Any]]:
        query = select(USERS.c.username, USERS.c.role, USERS.c.created_at,
                       USERS.c.disabled).order_by(
            USERS.c.username)
        with self.engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(query)]

    def invalidate(self) -> None:
        """Drop the decisions snapshot: the next ``decisions()`` reads the database (after a
        write)."""
        self.snapshot.invalidate()

    def decisions(self) -> Decisions:
        """The active decisions (``DecisionSnapshot.get``)."""
        return self.snapshot.get()
