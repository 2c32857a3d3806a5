"""What a serving app holds: the loaded index (hot reloaded), the decisions store, and the
dependencies routes take them by (``State``, ``Index``, ``Admin``).

The artifact is hot reloaded when the CURRENT pointer moves (or on ``POST /admin/reload``):
the new version is verified (checksums, then the structural checks of every array against the
layout, so a compiled kernel never meets an inconsistent table) and loaded beside the old one
and swapped in one assignment, so requests in flight finish on the version they started with.
Any load failure, whatever its exception type, keeps the old version serving and is shown by
/readyz; at start-up the server falls back to the newest version that loads.
"""

from __future__ import annotations

import asyncio
import gc
import hmac
import logging
import os
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated

from fastapi import Depends, FastAPI, Header, HTTPException, Request
from prometheus_client import Gauge
from prometheus_client.multiprocess import mark_process_dead

from recsys.artifact_checks import check_version
from recsys.artifacts import ArtifactStore
from recsys.config import ServingSettings
from recsys.errors import RecsysError
from recsys.serving import recommend
from recsys.serving.catalog_overlay import CatalogOverlay, CatalogRow
from recsys.serving.catalog_watch import CatalogWatch
from recsys.serving.event_guard import RateLimiter, keep_events_pruned
from recsys.serving.index import ServingIndex, load_index
from recsys.serving.live import live_from
from recsys.serving.memory import release_freed_memory, use_system_allocator
from recsys.serving.observe import MULTIPROCESS
from recsys.serving.spool import EventSpool
from recsys.serving.store import DATABASE_DOWN, ServingStore

__all__ = ["ServingState", "NotReady", "State", "Index", "Admin", "lifespan", "preload",
           "drop_superseded_preload"]

log = logging.getLogger("recsys.serving")

# The index a supervisor loaded before forking its workers (artifacts root, index): see preload.
_preloaded: tuple[str, ServingIndex] | None = None


def preload(settings: ServingSettings) -> str | None:
    """Load and warm up CURRENT in this process, before the workers are forked from it
    (recsys.cli.prefork): a worker that starts while CURRENT is still that version serves this
    index, whose objects and compiled kernels all workers then share, instead of loading its
    own copy. A version that does not load is left to the workers (they report why)."""
    global _preloaded
    use_system_allocator()
    try:
        index = load_index(settings.artifacts, None, check=check_version)
        recommend.warm_up(index)
    except Exception as exc:  # noqa: BLE001 - the workers load (and report) it themselves
        log.warning("artifact not preloaded (%s); each worker loads it", exc)
        return None
    _preloaded = (str(settings.artifacts), index)
    return index.version


def drop_superseded_preload(settings: ServingSettings) -> bool:
    """Let go of the preloaded index once CURRENT names another version (the supervisor
    calls this while it watches its workers): they load that one themselves, and the old
    index's memory and memory-mapped files (which pruning or an erasure may delete) are
    freed. Returns whether it let go."""
    global _preloaded
    if _preloaded is None:
        return False
    try:
        current = ArtifactStore(settings.artifacts).current_version()
    except RecsysError:
        return False  # the workers report an unreadable pointer
    version = _preloaded[1].version
    if current is None or current == version:
        return False
    _preloaded = None
    release_freed_memory()
    log.info("let go of the preloaded version %s: %s is current", version, current)
    return True


def _forget_preload() -> None:
    """A worker's copy of the preload serves its first load at most: from then on the worker
    holds what it serves, and an index it no longer serves is freed."""
    global _preloaded
    _preloaded = None


class ServingState:
    """The index being served, why a newer one is not, and the store."""

    def __init__(self, settings: ServingSettings, version_gauge: Gauge | None = None) -> None:
        use_system_allocator()  # Arrow only loads here: see recsys.serving.memory
        self.settings = settings
        self.version_gauge = version_gauge  # 1 for the version this worker serves
        self.index: ServingIndex | None = None
        self.base: ServingIndex | None = None  # the index as loaded, before the overlay
        self.overlay = CatalogOverlay()  # catalogue updates since the artifact was built
        self._swap_lock = threading.Lock()  # an overlay update never undoes a reload
        self.catalog_watch = CatalogWatch(settings.catalog_watch) if (
            settings.catalog_watch) else None
        self.error: str | None = None
        self.failed_version: str | None = None
        self.store = ServingStore(settings.database_url,
                                  refresh_seconds=settings.decisions_refresh_s,
                                  category_cap=settings.category_cap,
                                  best_sellers_first=frozenset(
                                      settings.best_sellers_first_segments))
        self.event_limit = RateLimiter(settings)
        self.live = live_from(settings)  # recent products per session, trending counts
        self.spool = EventSpool(Path(settings.data_dir) / "event-buffer.jsonl",
                                settings.event_buffer_bytes)
        self._reload_lock = asyncio.Lock()

    def keep_database(self) -> None:
        """Re-check the database; once it answers, write the events buffered meanwhile."""
        if not self.store.check_database():
            return
        try:
            written = self.spool.drain(self.store.add_events)
        except DATABASE_DOWN as exc:
            self.store.database_ok = False
            log.warning("buffered events not written yet: %s", type(exc).__name__)
            return
        if written:
            log.info("wrote %d events buffered while the database was down", written)

    def load(self, version: str | None = None) -> bool:
        """Load (verify, check, warm up) a version; on any failure keep serving the current
        one and remember why (the latest failure replaces an older one)."""
        adopted = self._preloaded(version)
        try:
            base = adopted or load_index(self.settings.artifacts, version, check=check_version)
            if adopted is None:
                recommend.warm_up(base)
        except Exception as exc:  # noqa: BLE001 - any failure to load is a refused version
            failed = version or self.pointer()
            self.error = str(exc) if isinstance(exc, RecsysError) else (
                f"artifact version {failed} does not load: {type(exc).__name__}: {exc}")
            self.failed_version = failed
            log.error("artifact load failed, still serving %s: %s",
                      self.index.version if self.index else "nothing", self.error)
            return False
        with self._swap_lock:
            index = self.overlay.apply(base, self.settings.content_min_support)
            self.base = base
            previous, self.index = self.index, index  # one assignment: requests hold it
        _forget_preload()
        self.error, self.failed_version = None, None  # they started with
        if self.version_gauge is not None:
            if previous is not None and previous.version != index.version:
                self.version_gauge.labels(version=previous.version).set(0)
            self.version_gauge.labels(version=index.version).set(1)
        if adopted is None:
            # The index's Python objects live as long as it does: keep them out of the garbage
            # collector's full passes (which would otherwise walk them during requests). An
            # adopted index was frozen before the fork: a pass here would copy its pages.
            gc.unfreeze()
            gc.collect()
            gc.freeze()
            release_freed_memory()  # what loading freed: else a worker keeps its load peak
        log.info("serving artifact version %s%s", index.version,
                 " (preloaded, shared with the other workers)" if adopted else "")
        return True

    def _preloaded(self, version: str | None) -> ServingIndex | None:
        """The supervisor's preloaded index if it is what loading ``version`` would give."""
        if _preloaded is None or _preloaded[0] != str(self.settings.artifacts):
            return None
        index = _preloaded[1]
        wanted = version or self.pointer()
        return index if wanted == index.version else None

    def update_catalog(self, rows: list[CatalogRow]) -> ServingIndex:
        """Apply catalogue rows to the served index now (and to every later load)."""
        if self.base is None:
            raise NotReady(self.error or "no artifact loaded")
        with self._swap_lock:
            self.overlay.update(rows)
            assert self.base is not None
            self.index = self.overlay.apply(self.base, self.settings.content_min_support)
            return self.index

    def read_catalog_watch(self) -> None:
        """Apply the watched catalogue file if it changed since the last read."""
        rows = self.catalog_watch.changed_rows() if self.catalog_watch else None
        if rows and self.base is not None:
            self.update_catalog(rows)
            log.info("catalog_watch: %d rows applied", len(rows))

    def load_at_start(self) -> bool:
        """Load CURRENT; if it does not load, the newest older version that does (logged
        with the reason). /readyz keeps naming the refused CURRENT version."""
        if self.load():
            return True
        error, failed = self.error, self.failed_version
        try:
            older = ArtifactStore(self.settings.artifacts).versions()
        except Exception as exc:  # noqa: BLE001 - an unreadable store: nothing to fall back to
            log.error("no fallback version: %s", exc)
            return False
        for version in reversed(older):
            if version == failed:
                continue
            if self.load(version):
                log.warning("started on version %s instead of %s, which does not load: %s",
                            version, failed, error)
                self.error, self.failed_version = error, failed
                return True
        self.error, self.failed_version = error, failed
        return False

    def pointer(self) -> str | None:
        try:
            return ArtifactStore(self.settings.artifacts).current_version()
        except RecsysError as exc:
            self.error = str(exc)
            return None

    async def reload_if_moved(self, *, force: bool = False) -> bool:
        async with self._reload_lock:
            target = self.pointer()
            if target is None:
                return False
            current = self.index.version if self.index else None
            if not force and (target == current or target == self.failed_version):
                return False
            return await asyncio.to_thread(self.load, target)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Load the artifact at start (and watch the pointer); close the store at the end."""
    state: ServingState = app.state.serving
    await asyncio.to_thread(state.load_at_start)
    await asyncio.to_thread(state.read_catalog_watch)
    tasks = [asyncio.create_task(_keep_database(state, state.settings.database_retry_s)),
             asyncio.create_task(keep_events_pruned(state.store,
                                                    state.settings.events_retention_days))]
    if state.settings.reload_interval_s > 0:
        tasks.append(asyncio.create_task(_watch(state, state.settings.reload_interval_s)))
    yield
    for task in tasks:
        task.cancel()
    state.event_limit.close()
    state.store.dispose()
    state.live.close()
    await state.live.aclose()
    if MULTIPROCESS:  # this worker's live gauges leave the sums
        mark_process_dead(os.getpid())


async def _watch(state: ServingState, interval: float) -> None:
    """Poll the CURRENT pointer; load a new version when it moves."""
    while True:
        await asyncio.sleep(interval)
        try:
            await state.reload_if_moved()
            await asyncio.to_thread(state.read_catalog_watch)
        except Exception:  # noqa: BLE001 - the watcher must outlive any one failure
            log.exception("reload check failed")


async def _keep_database(state: ServingState, interval: float) -> None:
    """Re-check the database every ``interval`` seconds (and write buffered events)."""
    while True:
        await asyncio.sleep(interval)
        try:
            await asyncio.to_thread(state.keep_database)
        except Exception:  # noqa: BLE001 - the loop must outlive any one failure
            log.exception("database check failed")


# -- dependencies -------------------------------------------------------------------------


async def get_state(request: Request) -> ServingState:
    state: ServingState = request.app.state.serving
    return state


State = Annotated[ServingState, Depends(get_state)]


class NotReady(Exception):
    """Raised by routes that need an index when none is loaded (answered with 503)."""


async def get_index(state: State) -> ServingIndex:
    if state.index is None:
        raise NotReady(state.error or "no artifact loaded")
    return state.index


Index = Annotated[ServingIndex, Depends(get_index)]


def require_admin(state: State,
                  x_api_key: Annotated[str | None, Header(max_length=256)] = None) -> None:
    """Admin endpoints need the API key (constant-time comparison)."""
    expected = state.settings.api_key.encode()
    if x_api_key is None or not hmac.compare_digest(x_api_key.encode(), expected):
        raise HTTPException(status_code=401, detail="missing or wrong X-API-Key")


Admin = Annotated[None, Depends(require_admin)]
