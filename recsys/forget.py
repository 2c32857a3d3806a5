"""Right to erasure (GDPR art. 17): remove customers everywhere the engine keeps them.

Places, in the order erased: the live session state (the customers' recent products and
those of their sessions, in Redis or a server's memory: first, so that a failure leaves
nothing half done that a retry could not find again), the server's events table (the
customer's events and every event of their sessions; SQLite and PostgreSQL are vacuumed so
deleted rows leave the files), the data directory (orders, events, quarantine rows), every
kept artifact version (customer vocabulary, ALS user factors, purchase history, analytics
tables), and access-log files given. The current version is published anew (``CURRENT``
moves, so servers reload without the customer); older versions are rewritten under their own
names with a new manifest. The erasure is recorded in the ``recsys_erasures`` table: when, how
many customers, how many rows where; never an id.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pandas as pd

from recsys import layout
from recsys.artifacts import MANIFEST_NAME, ArtifactStore, Manifest, load_npz, save_npz
from recsys.errors import InputError
from recsys.filemodes import PRIVATE_FILE, private_file
from recsys.vocab import Vocabulary

__all__ = ["Erasure", "forget_customers", "erase_data_dir", "erase_version"]

LiveEraser = Callable[[list[str], set[str]], int]  # (customers, sessions) -> lists dropped
# artifact tables keyed by a customer id column, from the layout (the customer model is
# handled on its own)
CUSTOMER_TABLES = tuple(f.path for f in layout.FILES
                        if f.kind == "parquet" and any(c.name == "customer_id" for c in f.columns))


@dataclass
class Erasure:
    """What one erasure removed: rows per place, and old -> new name of each version."""

    customers: int
    at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    rows: dict[str, int] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)

    def add(self, place: str, count: int) -> None:
        if count:
            self.rows[place] = self.rows.get(place, 0) + count

    def to_dict(self) -> dict[str, Any]:
        return {"at": self.at, "customers": self.customers, "rows": dict(sorted(
            self.rows.items())), "versions": self.versions}


def forget_customers(customer_ids: Iterable[str], *, database_url: str, data_dir: Path,
                     store: ArtifactStore, access_logs: Iterable[Path] = (),
                     live: LiveEraser | None = None, sessions: Iterable[str] = ()) -> Erasure:
    """Erase ``customer_ids`` everywhere (see the module docstring) and record it. ``live``
    drops the live lists of the customers and of their sessions (those of their stored events
    and ``sessions``, e.g. of events still buffered) and says how many."""
    from recsys.erasure_store import erase_events, event_sessions, record_erasure

    ids = sorted({str(c).strip() for c in customer_ids})
    if not ids or "" in ids:
        raise InputError("forget: give at least one customer id, none of them empty")
    access_logs = list(access_logs)
    missing = [str(p) for p in access_logs if not p.is_file()]
    if missing:
        raise InputError(f"forget: access log(s) not found: {', '.join(missing)}; nothing "
                         "was erased")
    erasure = Erasure(customers=len(ids))
    if live is not None:
        found = event_sessions(database_url, ids) | set(sessions)
        erasure.add("live: recent products", live(ids, found))
    erasure.add("database: events", erase_events(database_url, ids))
    for place, count in erase_data_dir(data_dir, ids).items():
        erasure.add(f"data: {place}", count)
    for version in store.versions():
        new_name, counts = erase_version(store, version, ids, erasure.at)
        if counts:
            erasure.versions[version] = new_name
        for place, count in counts.items():
            erasure.add(f"artifacts: {place}", count)
    for log in access_logs:
        erasure.add(f"access log {log.name}", erase_log_lines(log, ids))
    record_erasure(database_url, erasure.to_dict())
    return erasure


def _matches(column: pd.Series, values: Iterable[str]) -> np.ndarray:
    """Boolean mask of the cells equal to one of ``values`` (empty cells never match)."""
    return column.astype("string").isin(list(values)).fillna(False).to_numpy(dtype=bool)


def _sessions_of(events: pd.DataFrame, ids: list[str]) -> set[str]:
    if "session_id" not in events or "customer_id" not in events:
        return set()
    return set(events.loc[_matches(events["customer_id"], ids), "session_id"].dropna().astype(str))


def _write_table(frame: pd.DataFrame, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    if path.suffix == ".csv":
        frame.to_csv(tmp, index=False)
    else:
        frame.to_parquet(tmp, index=False)
    os.replace(private_file(tmp), path)


def erase_data_dir(data_dir: Path, ids: list[str]) -> dict[str, int]:
    """Drop the customers' rows from the data directory: orders, events (and the events of
    their sessions), and quarantine rows holding an id in any cell (raw values, unmapped)."""
    counts: dict[str, int] = {}
    for table in ("orders", "events"):
        path = data_dir / f"{table}.parquet"
        if not path.exists():
            continue
        frame = pd.read_parquet(path)
        gone = _matches(frame["customer_id"], ids)
        if table == "events":
            gone = gone | _matches(frame["session_id"], _sessions_of(frame, ids))
        if gone.any():
            _write_table(frame[~gone], path)
            counts[f"{table}.parquet"] = int(gone.sum())
    spellings = set(ids) | {f"{c}.0" for c in ids}  # a spreadsheet's float ids, as read raw
    for path in sorted((data_dir / "quarantine").glob("*.csv")):
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        cells = frame.apply(lambda column: column.str.strip()).isin(spellings)
        gone = cells.to_numpy().any(axis=1)
        if gone.any():
            _write_table(frame[~gone], path)
            counts[f"quarantine/{path.name}"] = int(gone.sum())
    return counts


def erase_version(store: ArtifactStore, version: str, ids: list[str],
                  at: str) -> tuple[str, dict[str, int]]:
    """Rewrite one version without the customers; returns its (new) name and rows removed.
    The current version is published anew and the old one removed; others are replaced."""
    source = store.path(version)
    if not _holds_customers(source, ids):
        return version, {}
    manifest = store.manifest(version)
    with store.staging() as folder:
        for entry in source.iterdir():
            if entry.name != MANIFEST_NAME:
                (shutil.copytree if entry.is_dir() else shutil.copyfile)(entry,
                                                                         folder / entry.name)
        counts = _erase_files(folder, ids)
        metrics = {**manifest.metrics, "erasure": {"at": at, "rewrites": version}}
        if version == store.current_version():
            store.keep_last += 1  # the old current goes right after: prune nothing for it
            try:
                new = store.publish(folder, config=manifest.config,
                                    config_hash=manifest.config_hash, inputs=manifest.inputs,
                                    metrics=metrics)
            finally:
                store.keep_last -= 1
            store.replace(version, None)
            return new.version, counts
        _write_manifest(folder, manifest, metrics)
        store.replace(version, folder)
    return version, counts


def _holds_customers(folder: Path, ids: list[str]) -> bool:
    places = [(layout.CUSTOMERS.path, "id"), *((rel, "customer_id") for rel in CUSTOMER_TABLES)]
    for rel, column in places:
        path = folder / rel
        if path.exists() and pd.read_parquet(path, columns=[column])[column].astype(
                "string").isin(ids).any():
            return True
    return False


def _erase_files(folder: Path, ids: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for rel in CUSTOMER_TABLES:
        path = folder / rel
        if path.exists():
            frame = pd.read_parquet(path)
            gone = _matches(frame["customer_id"], ids)
            if gone.any():
                _write_table(frame[~gone], path)
                counts[rel] = int(gone.sum())
    if layout.CUSTOMERS.at(folder).exists():
        counts.update(_erase_customer_model(folder, ids))
    return counts


def _erase_customer_model(folder: Path, ids: list[str]) -> dict[str, int]:
    """Drop the customers' rows (row = customer code) from the vocabulary, the ALS user
    factors and the purchase CSR (customers x products); other customers keep their data."""
    customers = Vocabulary.load(layout.CUSTOMERS.at(folder))
    keep = ~pd.Index(customers.ids).isin(ids)
    if keep.all():
        return {}
    Vocabulary(customers.ids[keep]).save(layout.CUSTOMERS.at(folder))
    als = load_npz(layout.ALS.at(folder))
    save_npz(layout.ALS.at(folder), **{**als, "user_factors": als["user_factors"][keep]})
    bought = load_npz(layout.PURCHASES.at(folder))
    lengths = np.diff(bought["indptr"])
    entries = np.repeat(keep, lengths)
    indptr = np.concatenate([[0], np.cumsum(lengths[keep])]).astype(bought["indptr"].dtype)
    per_entry = ("indices", "last_day", "orders")  # one value per (customer, product)
    rewritten = {name: values[entries] if name in per_entry else values
                 for name, values in bought.items()}
    rewritten["indptr"] = indptr
    if "shape" in bought:
        rewritten["shape"] = np.array([int(keep.sum()), int(bought["shape"][1])])
    save_npz(layout.PURCHASES.at(folder), **rewritten)
    for file in (layout.CUSTOMERS, layout.ALS, layout.PURCHASES):
        private_file(file.at(folder))
    return {layout.CUSTOMERS.path: int((~keep).sum()),
            layout.PURCHASES.path: int(lengths[~keep].sum())}


def _write_manifest(folder: Path, old: Manifest, metrics: dict[str, Any]) -> None:
    """The manifest of a rewritten version: same name and provenance, new file hashes."""
    from recsys.artifacts import sha256_file

    files = {p.relative_to(folder).as_posix(): {"sha256": sha256_file(p), "bytes":
                                                p.stat().st_size}
             for p in sorted(folder.rglob("*")) if p.is_file()
             and p.name not in (MANIFEST_NAME, ".staging.lock")}
    manifest = Manifest(version=old.version, created_at=old.created_at,
                        git_commit=old.git_commit, config=old.config,
                        config_hash=old.config_hash, inputs=old.inputs,
                        libraries=old.libraries, metrics=metrics, files=files)
    fd = os.open(folder / MANIFEST_NAME, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    with open(fd, "w", encoding="utf-8") as f:
        f.write(json.dumps(manifest.to_dict(), sort_keys=True, indent=2) + "\n")
        f.flush()
        os.fsync(f.fileno())


def erase_log_lines(path: Path, ids: list[str]) -> int:
    """Drop the lines of a log file naming a customer as a whole path segment, query value
    or JSON string (raw or URL-encoded); returns how many lines went."""
    spellings = sorted({c for i in ids for c in (i, quote(i, safe=""))}, key=len, reverse=True)
    pattern = re.compile(r"(?:^|(?<=[/=\"\s]))(?:" + "|".join(map(re.escape, spellings))
                         + r")(?=$|[/?&\"\s,])")
    removed = 0
    tmp = path.with_name(path.name + ".tmp")
    with open(path, "rb") as source, open(tmp, "wb") as kept:  # line by line: logs are large
        for line in source:
            if pattern.search(line.decode("utf-8", errors="replace")):
                removed += 1
            else:
                kept.write(line)
    if removed:
        shutil.copymode(path, tmp)
        os.replace(tmp, path)
    else:
        tmp.unlink()
    return removed
