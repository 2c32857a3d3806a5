"""File modes for what holds customer data or secrets: folders 0700, files 0600.

The data directory (orders, events, quarantine), artifact versions (purchase histories, ALS
factors) and the SQLite database (events, users) are readable by their owner only; the
pipeline and the server run as that owner.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["PRIVATE_DIR", "PRIVATE_FILE", "private_dir", "private_file", "private_sqlite"]

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600


def private_dir(path: Path) -> Path:
    """``mkdir -p`` ``path`` and make it owner-only (0700); returns it."""
    path.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR)
    os.chmod(path, PRIVATE_DIR)
    return path


def private_file(path: Path) -> Path:
    """Make an existing file owner-only (0600); returns it."""
    os.chmod(path, PRIVATE_FILE)
    return path


def private_sqlite(url: str) -> None:
    """Create the file of a SQLite URL with mode 0600 (or set it, when it exists) before
    SQLAlchemy opens it; SQLite gives its journal files the database's mode. Other URLs:
    nothing to do."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        return  # not a URL: the store that opens it says so
    database = parsed.database
    if not parsed.drivername.startswith("sqlite") or database in (None, "", ":memory:"):
        return
    if str(database).startswith("file:"):
        return  # a SQLite URI: its own options decide
    path = Path(str(database))
    path.parent.mkdir(parents=True, exist_ok=True)
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, PRIVATE_FILE))
    os.chmod(path, PRIVATE_FILE)
