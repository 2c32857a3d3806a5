"""Upkeep of the artifact store: roll back, replace a version (erasure), prune old versions.

A mixin of ``recsys.artifacts.ArtifactStore``: the same locks and folders, kept in their own
module so the store's publish path reads on its own.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

from recsys.atomic_fs import LOCK_NAME, ensure_dir, fsync_path, lock_folder
from recsys.errors import ArtifactError
from recsys.manifest import MANIFEST_NAME, Manifest

__all__ = ["StoreUpkeep"]

logger = logging.getLogger("recsys.artifacts")


class StoreUpkeep:
    """Rollback, replace and prune for ``ArtifactStore`` (which provides what is declared)."""

    root: Path
    keep_last: int
    _versions_root: Path
    _staging_root: Path

    def verify(self, version: str | None = None) -> Manifest:
        raise NotImplementedError

    def versions(self) -> list[str]:
        raise NotImplementedError

    def path(self, version: str | None = None) -> Path:
        raise NotImplementedError

    def _read_current(self) -> str | None:
        raise NotImplementedError

    def _write_current(self, version: str) -> None:
        raise NotImplementedError

    def _store_lock(self) -> AbstractContextManager[None]:
        raise NotImplementedError

    def rollback(self, version: str | None = None,
                 check: Callable[[str], object] | None = None) -> str:
        """Point CURRENT at ``version`` (default: the newest older one that passes) after
        verifying it and running ``check`` (e.g. that it loads; raises ArtifactError)."""
        def passes(candidate: str) -> str:
            self.verify(candidate)
            if check is not None:
                check(candidate)
            return candidate

        if version is None:
            current = self._read_current()
            if current is None:
                raise ArtifactError(
                    f"nothing is current under {self.root}; pass the version to roll back to"
                )
            older = [v for v in self.versions() if v < current]
            if not older:
                raise ArtifactError(f"no version older than {current} to roll back to")
            failures = []
            for candidate in reversed(older):
                try:
                    version = passes(candidate)
                    break
                except ArtifactError as exc:
                    failures.append(str(exc))
            else:
                raise ArtifactError("no older version to roll back to passes its checks: "
                                    + "; ".join(failures))
            for failure in failures:
                logger.warning("rollback skipped a version: %s", failure)
        else:
            passes(version)
        with self._store_lock():
            self._write_current(version)
        logger.info("rolled back %s to version %s", self.root, version)
        return version

    def replace(self, version: str, folder: Path | None) -> None:
        """Swap ``folder`` (a staging folder holding a rewritten copy of non-current ``version``
        with its manifest.json) in for that version, or delete it when ``folder`` is None.
        For erasure: a crash between the renames leaves the version gone, never half-written."""
        self.path(version)
        source = None if folder is None else Path(folder).resolve()
        if source is not None and (source.parent != self._staging_root
                                   or not (source / MANIFEST_NAME).is_file()):
            raise ArtifactError(f"{folder} is not a staging folder with a manifest.json")
        with self._store_lock():
            if self._read_current() == version:
                raise ArtifactError(f"version {version} is current; publish a new one instead")
            graveyard = self._staging_root / f"replaced-{version}-{uuid.uuid4().hex[:8]}"
            os.rename(self._versions_root / version, graveyard)
            if source is not None:
                os.rename(source, self._versions_root / version)
                with contextlib.suppress(FileNotFoundError):
                    (self._versions_root / version / LOCK_NAME).unlink()
            fsync_path(self._versions_root, directory=True)
            shutil.rmtree(graveyard)

    def prune(self) -> list[str]:
        """Delete all but the newest ``keep_last`` versions, never the current one."""
        if not self._versions_root.is_dir():
            return []
        with self._store_lock():
            removed = self._prune_locked()
            self._clean_stale_locked()
        return removed

    def _prune_locked(self) -> list[str]:
        """Move surplus versions into .staging (one rename each), where cleaning deletes them."""
        current = self._read_current()
        complete = self.versions()
        keep = set(complete[-self.keep_last :]) | ({current} if current else set())
        doomed = [v for v in complete if v not in keep]
        if doomed:
            ensure_dir(self._staging_root)
        for version in doomed:
            graveyard = self._staging_root / f"pruned-{version}-{uuid.uuid4().hex[:8]}"
            os.rename(self._versions_root / version, graveyard)
        if doomed:
            fsync_path(self._versions_root, directory=True)
            logger.info("pruned versions %s from %s", ", ".join(doomed), self.root)
        return doomed

    def _clean_stale_locked(self) -> None:
        """Remove staging folders nobody holds a lock on, and leftover CURRENT.tmp files.

        Under the store lock no pointer write is in flight, so every CURRENT.tmp-* is stale.
        """
        for tmp in self.root.glob("CURRENT.tmp-*"):
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        try:
            entries = list(self._staging_root.iterdir())
        except FileNotFoundError:
            return
        for folder in entries:
            if not folder.is_dir() or folder.is_symlink():
                continue
            fd = lock_folder(folder)
            if fd is None:
                continue  # in use (or already gone)
            try:
                shutil.rmtree(folder)
            finally:
                os.close(fd)
