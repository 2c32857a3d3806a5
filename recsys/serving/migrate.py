"""Bring tables made by an earlier version up to date (SQLite and PostgreSQL): columns added
since are added, the events' idempotency index created, and users without a session epoch
given one. ``create_all`` makes new tables whole; this runs after it, and does nothing on an
up-to-date database."""

from __future__ import annotations

import logging
import secrets

from sqlalchemy import Index, Table, inspect, text, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

__all__ = ["ADDED_COLUMNS", "upgrade", "new_epoch"]

log = logging.getLogger(__name__)

# table -> the columns added after the table's first release, as SQL (both dialects)
ADDED_COLUMNS: dict[str, dict[str, str]] = {
    "recsys_events": {"event_key": "VARCHAR(128)"},
    "recsys_users": {"session_epoch": "VARCHAR(32)",
                     "disabled": "BOOLEAN NOT NULL DEFAULT FALSE"},
}


def new_epoch() -> str:
    """A fresh session epoch: every cookie signed before it stops working."""
    return secrets.token_hex(16)


def upgrade(engine: Engine, users: Table, indexes: list[Index]) -> None:
    """Add missing columns and indexes; give every user without one a session epoch."""
    for table, columns in ADDED_COLUMNS.items():
        for name, sql in columns.items():
            if name in _columns(engine, table):
                continue
            log.info("database upgrade: adding %s.%s", table, name)
            try:
                with engine.begin() as conn:
                    conn.execute(text(f"ALTER TABLE {table} ADD COLUMN {name} {sql}"))
            except SQLAlchemyError:
                if name not in _columns(engine, table):  # else another worker added it
                    raise
    for index in indexes:
        index.create(engine, checkfirst=True)
    with engine.begin() as conn:
        missing: list[int] = list(conn.execute(users.select().with_only_columns(users.c.id).where(
            users.c.session_epoch.is_(None))).scalars())
        for user_id in missing:
            conn.execute(update(users).where(users.c.id == user_id).values(
                session_epoch=new_epoch()))


def _columns(engine: Engine, table: str) -> set[str]:
    return {c["name"] for c in inspect(engine).get_columns(table)}
