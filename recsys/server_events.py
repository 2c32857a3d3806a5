"""The API's stored events as a training source, so that the loop from the storefront widget
to the next model closes without configuration.

``recsys run`` reads the events table the server writes (``[serving] database_url``), maps it
onto the events contract (``occurred_at``, else the time the server received it), validates
it like every source (bad rows go to ``quarantine/server_events.csv`` with their reason) and
appends the accepted rows to the data directory's ``events.parquet``. Deduplication is by event
id: a stored event whose row id or ``event_key`` (the storefront's ``event_id`` /
``Idempotency-Key``) appears on an earlier row (a table written without the server's unique
index, or read through a union) and one already among the configured events (the same
product, type, time, session and customer: the configured source is an export of this table)
are quarantined as ``duplicate_event``; the first stored copy is kept. When the
configured events source is this very table it is not read twice. Impressions (no product)
are not training data and are not read. The ingest report counts it all under
``server_events``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import create_engine, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

from recsys.ingest import IngestReport, TableReport, write_outputs
from recsys.mapping import TableMapping
from recsys.readers import RawTable, SourceSpec, read_source
from recsys.validate import validate_table

__all__ = ["SERVER_EVENTS_TABLE", "ingest_server_events"]

log = logging.getLogger(__name__)

SERVER_EVENTS_TABLE = "recsys_events"  # the table serving.store writes
_QUERY = (f"SELECT id AS event_id, product_id, event_type, "
          f"COALESCE(occurred_at, received_at) AS occurred_at, session_id, customer_id, "
          f"request_id, event_key FROM {SERVER_EVENTS_TABLE} WHERE product_id IS NOT NULL "
          f"ORDER BY id")
_IDS = ("event_id", "event_key")  # not event columns: what deduplication reads
_KEY = ["product_id", "event_type", "occurred_at", "session_id", "customer_id"]


def _has_table(url: str) -> bool:
    """Whether the database exists and holds the events table (a missing SQLite file is not
    created)."""
    try:
        parsed = make_url(url)
        file = parsed.database if parsed.get_backend_name() == "sqlite" else None
        if file and file != ":memory:" and not Path(file).exists():
            return False
        engine = create_engine(url)
    except (ArgumentError, NoSuchModuleError, ValueError) as exc:
        log.warning("server events not read: %s is not a usable database URL (%s)",
                    make_url(url).render_as_string(hide_password=True) if "://" in url
                    else "the URL", exc)
        return False
    try:
        return inspect(engine).has_table(SERVER_EVENTS_TABLE)
    except SQLAlchemyError as exc:
        log.warning("server events not read: the database refused (%s)", exc)
        return False
    finally:
        engine.dispose()


def _is_this_table(events_source: str | None, url: str) -> bool:
    if not events_source or "#" not in events_source:
        return False
    location, table = events_source.split("#", 1)
    return table == SERVER_EVENTS_TABLE and location == url


def ingest_server_events(database_url: str, events_source: str | None, data_dir: Path,
                         report: IngestReport) -> TableReport | None:
    """Add the server's stored events to ``data_dir``'s events (see the module docstring);
    returns their report (also added to ``report`` and ``report.json``), or None when there
    is no such table or the configured events source already is it."""
    if _is_this_table(events_source, database_url) or not _has_table(database_url):
        return None
    spec = SourceSpec(location=database_url, format="sql", query=_QUERY)
    raw = read_source(spec)
    columns = {c: c for c in raw.frame.columns if c not in _IDS}
    result = validate_table("events", RawTable(raw.frame, raw.source_row, "server events"),
                            columns, TableMapping())
    ids = raw.frame.loc[raw.frame.index[_accepted_mask(result.quarantine, raw)], list(_IDS)]
    accepted = result.accepted
    path = data_dir / "events.parquet"
    configured = pd.read_parquet(path) if path.exists() else None
    keyed = ids["event_key"].notna().to_numpy()
    duplicate = (ids["event_id"].duplicated().to_numpy()
                 | (keyed & ids["event_key"].duplicated().to_numpy()))
    if configured is not None and len(configured) and len(accepted):
        seen = pd.MultiIndex.from_frame(_key(configured))
        duplicate = duplicate | pd.MultiIndex.from_frame(_key(accepted)).isin(seen)
    quarantine = result.quarantine
    if duplicate.any():
        rows = raw.source_row.to_numpy()[_accepted_mask(result.quarantine, raw)][duplicate]
        dupes = raw.frame.loc[raw.source_row.isin(rows).to_numpy()].copy()
        for name, value in (("column", "event_id"), ("reason", "duplicate_event"),
                            ("row", rows), ("source", "server events")):
            dupes.insert(0, name, value)
        quarantine = pd.concat([quarantine, dupes.reset_index(drop=True)], ignore_index=True)
        accepted = accepted[~duplicate].reset_index(drop=True)
    merged = accepted if configured is None else pd.concat([configured, accepted],
                                                           ignore_index=True)
    reasons = quarantine["reason"].value_counts().sort_index()
    table = TableReport(
        source=spec.label, rows_read=len(raw.frame), rows_accepted=len(accepted),
        rows_rejected=len(quarantine),
        rejected_by_reason={str(k): int(v) for k, v in reasons.items()},
        output_file="events.parquet", quarantine_file="quarantine/server_events.csv",
        columns=list(accepted.columns))
    report.tables["server_events"] = table
    write_outputs(data_dir, {"events": merged}, {"server_events": quarantine}, report)
    log.info("server events: %s read, %s accepted, %s rejected", f"{table.rows_read:,}",
             f"{table.rows_accepted:,}", f"{table.rows_rejected:,}")
    return table


def _accepted_mask(quarantine: pd.DataFrame, raw: RawTable) -> np.ndarray:
    """Which raw rows validation accepted (in order), from the quarantine's row numbers."""
    return ~raw.source_row.isin(quarantine["row"]).to_numpy()


def _key(frame: pd.DataFrame) -> pd.DataFrame:
    """The columns that identify one event, comparable across sources (UTC, ids as text)."""
    out = pd.DataFrame(index=frame.index)
    for column in _KEY:
        values = frame[column] if column in frame else pd.Series(pd.NA, index=frame.index)
        out[column] = values.astype("string")
    out["occurred_at"] = pd.to_datetime(frame["occurred_at"], utc=True).astype("string")
    return out
