"""Storefront events kept on disk while the database is down (issue #14, point 8).

An append-only JSON-lines file in the data folder, bounded in bytes: ``append`` adds one
event (or raises ``SpoolFull``, which the API answers 503 with ``Retry-After``); ``drain``
hands every buffered event to a writer in one call and empties the file only when that
succeeded. An exclusive ``flock`` serialises appends and drains of all workers of a server.
The file holds customer and session ids: it is owner-only, and ``erase`` removes a
customer's lines (right to erasure).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

from recsys.filemodes import PRIVATE_DIR, PRIVATE_FILE

__all__ = ["EventSpool", "SpoolFull"]

log = logging.getLogger(__name__)

_TIMES = ("received_at", "occurred_at")


class SpoolFull(Exception):
    """The buffer has reached its size cap: the event is refused, not lost silently."""


class EventSpool:
    """Buffered events at ``path``, at most ``max_bytes`` of them."""

    def __init__(self, path: Path | str, max_bytes: int) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self._lock = threading.Lock()  # flock is per open file; threads share one process

    @contextmanager
    def _locked(self) -> Iterator[BinaryIO]:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR)
        with self._lock:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, PRIVATE_FILE)
            with os.fdopen(fd, "r+b") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX)
                try:
                    yield handle
                finally:
                    fcntl.flock(handle, fcntl.LOCK_UN)

    def append(self, event: dict[str, Any]) -> None:
        """Buffer one event (with its ``received_at``); SpoolFull when over the cap."""
        line = json.dumps(event, default=_iso, separators=(",", ":")).encode() + b"\n"
        with self._locked() as handle:
            size = handle.seek(0, os.SEEK_END)
            if size + len(line) > self.max_bytes:
                raise SpoolFull(f"event buffer {self.path} is full ({size} of "
                                f"{self.max_bytes} bytes) while the database is down")
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())

    def count(self) -> int:
        """Events buffered now (0 when there is no file)."""
        try:
            with self.path.open("rb") as handle:
                return sum(1 for _ in handle)
        except FileNotFoundError:
            return 0

    def drain(self, write: Callable[[list[dict[str, Any]]], None]) -> int:
        """Give every buffered event to ``write`` (one call); empty the file once it returned.
        A failing ``write`` leaves the file as it was. Returns how many were written."""
        if not self.path.exists():
            return 0
        with self._locked() as handle:
            handle.seek(0)
            lines = [line for line in handle if line.strip()]
            events = [e for e in map(_parse, lines) if e is not None]
            if len(events) < len(lines):  # a line torn by a crash mid-write
                log.warning("%d unreadable buffered event line(s) dropped from %s",
                            len(lines) - len(events), self.path)
            if events:
                write(events)
            handle.truncate(0)
            os.fsync(handle.fileno())
        return len(events)

    def sessions_of(self, customer_ids: Iterable[str]) -> set[str]:
        """The session ids of these customers' buffered events."""
        if not self.path.exists():
            return set()
        with self._locked() as handle:
            handle.seek(0)
            events = [_parse(line) or {} for line in handle if line.strip()]
        return _sessions(events, set(customer_ids))

    def erase(self, customer_ids: Iterable[str]) -> int:
        """Remove the events of these customers and of their sessions; how many lines."""
        ids = set(customer_ids)
        if not self.path.exists():
            return 0
        with self._locked() as handle:
            handle.seek(0)
            lines = [line for line in handle if line.strip()]
            events = [_parse(line) or {} for line in lines]
            sessions = _sessions(events, ids)
            kept = [line for line, e in zip(lines, events, strict=True)
                    if e.get("customer_id") not in ids and e.get("session_id") not in sessions]
            handle.truncate(0)
            handle.write(b"".join(kept))
            handle.flush()
            os.fsync(handle.fileno())
        return len(lines) - len(kept)


def _sessions(events: list[dict[str, Any]], customer_ids: set[str]) -> set[str]:
    """The session ids of these customers' events."""
    return {e["session_id"] for e in events
            if e.get("customer_id") in customer_ids and e.get("session_id") is not None}


def _iso(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot buffer a {type(value).__name__}")


def _parse(line: bytes) -> dict[str, Any] | None:
    try:
        event: dict[str, Any] = json.loads(line)
        for key in _TIMES:
            if event.get(key) is not None:
                event[key] = datetime.fromisoformat(event[key])
    except (ValueError, TypeError):
        return None
    return event
