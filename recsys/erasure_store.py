"""The database side of an erasure: the customers' events out of the server's events table
(SQLite or PostgreSQL, vacuumed so that deleted rows leave the files), and the record of each
erasure in ``recsys_erasures`` (when, how many customers and rows where; never an id)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    delete,
    inspect,
    or_,
    select,
    text,
)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from recsys.errors import ConfigError, InputError
from recsys.filemodes import private_sqlite
from recsys.serving.store import EVENTS

__all__ = ["ERASURES", "event_sessions", "erase_events", "record_erasure", "erasures"]

ERASURES = Table(
    "recsys_erasures", MetaData(),
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("customers", Integer, nullable=False),
    Column("rows", String(4096), nullable=False),  # JSON: {place: rows removed}
)


def _engine(url: str) -> tuple[Engine, str]:
    """An engine for ``url`` and the URL as messages may show it (no password)."""
    try:
        shown = make_url(url).render_as_string(hide_password=True)
    except ArgumentError as exc:
        raise ConfigError(f"database_url is not a SQLAlchemy URL ({exc})") from None
    private_sqlite(url)
    return create_engine(url), shown


def _refused(shown: str, exc: SQLAlchemyError) -> InputError:
    reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
    return InputError(f"the database {shown} refused the erasure: {reason}")


def event_sessions(url: str, ids: list[str]) -> set[str]:
    """The session ids of the customers' stored events."""
    engine, shown = _engine(url)
    try:
        if not inspect(engine).has_table(EVENTS.name):
            return set()
        query = select(EVENTS.c.session_id).distinct().where(
            EVENTS.c.customer_id.in_(ids)).where(EVENTS.c.session_id.is_not(None))
        with engine.connect() as conn:
            found: list[str] = list(conn.execute(query).scalars())
        return set(found)
    except SQLAlchemyError as exc:
        raise _refused(shown, exc) from None
    finally:
        engine.dispose()


def erase_events(url: str, ids: list[str]) -> int:
    """Delete the customers' events and every event of their sessions; returns rows removed."""
    engine, shown = _engine(url)
    try:
        return _delete_and_vacuum(engine, shown, ids)
    finally:
        engine.dispose()


def _delete_and_vacuum(engine: Engine, shown: str, ids: list[str]) -> int:
    try:
        if not inspect(engine).has_table(EVENTS.name):
            return 0
        with engine.begin() as conn:
            sessions = select(EVENTS.c.session_id).where(EVENTS.c.customer_id.in_(ids)).where(
                EVENTS.c.session_id.is_not(None)).scalar_subquery()
            removed = conn.execute(delete(EVENTS).where(or_(
                EVENTS.c.customer_id.in_(ids), EVENTS.c.session_id.in_(sessions)))).rowcount
    except SQLAlchemyError as exc:
        raise _refused(shown, exc) from None
    try:
        _vacuum(engine)
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise InputError(f"the events were deleted from {shown}, but vacuuming it failed, so "
                         f"they may remain in its files: {reason}; run the same `recsys "
                         "forget` again when the database is idle") from None
    return int(removed)


def _vacuum(engine: Engine) -> None:
    """Rewrite the events table's files so deleted rows are gone from disk, not just hidden."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        if engine.dialect.name == "sqlite":
            conn.execute(text("VACUUM"))
        elif engine.dialect.name == "postgresql":
            conn.execute(text(f"VACUUM FULL {EVENTS.name}"))


def record_erasure(url: str, erasure: dict[str, Any]) -> None:
    """Append one row to ``recsys_erasures`` (its counts only)."""
    engine, shown = _engine(url)
    try:
        ERASURES.create(engine, checkfirst=True)
        with engine.begin() as conn:
            conn.execute(ERASURES.insert().values(
                at=datetime.fromisoformat(erasure["at"]), customers=erasure["customers"],
                rows=json.dumps(erasure["rows"], sort_keys=True)))
    except SQLAlchemyError as exc:
        raise _refused(shown, exc) from None
    finally:
        engine.dispose()


def erasures(url: str) -> list[dict[str, Any]]:
    """Every recorded erasure, oldest first."""
    engine, _ = _engine(url)
    try:
        if not inspect(engine).has_table(ERASURES.name):
            return []
        with engine.connect() as conn:
            return [{**row._mapping, "rows": json.loads(row.rows)}
                    for row in conn.execute(select(ERASURES).order_by(ERASURES.c.id))]
    finally:
        engine.dispose()
