"""Versioned artifact store: immutable version folders, a manifest each, an atomic CURRENT pointer.

Offline jobs write their outputs (Parquet, JSON, ``.npz`` without pickle) into a staging
folder; ``publish`` hashes them, writes ``manifest.json``, renames the folder into
``versions/`` and switches ``CURRENT`` with ``os.replace``. Layout under ``root``::

    root/versions/<version>/...files... + manifest.json   # complete, never modified
    root/CURRENT                                         # "<version>\\n"
    root/.staging/<uuid>/                                # in-progress (flock on .staging.lock)
    root/.lock                                           # serialises publish, rollback, prune

Version names are UTC timestamps ``YYYYMMDDTHHMMSSffffffZ``, so they sort by time. A crash at
any point leaves ``CURRENT`` naming a complete version; leftovers are removed by the next
publish. Readers never take a lock: a version folder appears by one rename, complete.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from recsys.artifact_io import (
    fingerprint_files,
    load_npz,
    load_parquet,
    save_npz,
    save_parquet,
    sha256_file,
)
from recsys.artifact_upkeep import StoreUpkeep
from recsys.atomic_fs import LOCK_NAME, crash_point, ensure_dir, fsync_path, list_files, lock_folder
from recsys.errors import ArtifactError, ConfigError
from recsys.filemodes import PRIVATE_DIR, PRIVATE_FILE
from recsys.manifest import (
    MANIFEST_NAME,
    Manifest,
    canonical_json,
    config_hash,
    git_commit,
    library_versions,
)
from recsys.redact import redact

__all__ = ["ArtifactStore", "Manifest", "MANIFEST_NAME", "sha256_file", "fingerprint_files",
           "config_hash", "save_npz", "load_npz", "save_parquet", "load_parquet"]

logger = logging.getLogger(__name__)

_VERSION_FORMAT = "%Y%m%dT%H%M%S%fZ"
_VERSION_RE = re.compile(r"^\d{8}T\d{12}Z$")
_CHUNK = 1 << 20


def _bump(version: str) -> str:
    stamp = datetime.strptime(version, _VERSION_FORMAT) + timedelta(microseconds=1)
    return stamp.strftime(_VERSION_FORMAT)


# --------------------------------------------------------------------------- store


class ArtifactStore(StoreUpkeep):
    """Versioned, crash-safe folder of artifacts under ``root`` (see the module docstring)."""

    def __init__(self, root: Path | str, keep_last: int = 5) -> None:
        if isinstance(keep_last, bool) or not isinstance(keep_last, int) or keep_last < 1:
            raise ConfigError(f"keep_last must be an integer >= 1, got {keep_last!r}")
        self.root = Path(root).resolve()
        self.keep_last = keep_last
        self._versions_root = self.root / "versions"
        self._staging_root = self.root / ".staging"
        self._current_file = self.root / "CURRENT"
        self._held: dict[Path, int] = {}  # staging folder -> fd holding its flock

    def __repr__(self) -> str:
        return f"ArtifactStore(root={str(self.root)!r}, keep_last={self.keep_last})"

    # ---- writing

    @contextlib.contextmanager
    def staging(self) -> Iterator[Path]:
        """Yield a fresh, locked ``root/.staging/<uuid>`` folder; removed if the block raises.

        Publish inside the block. After a normal exit an unpublished folder stays (unlocked) and
        can still be published, but the next publish may clean it up as stale.
        """
        ensure_dir(self._staging_root)
        for _ in range(10):
            folder = self._staging_root / uuid.uuid4().hex
            folder.mkdir(mode=PRIVATE_DIR)
            fd = lock_folder(folder)
            if fd is not None:
                break
        else:  # pragma: no cover - needs a cleaner racing us ten times in a row
            raise ArtifactError(f"could not create a locked staging folder in {self._staging_root}")
        self._held[folder] = fd
        try:
            yield folder
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)  # a no-op once published (folder moved)
            raise
        finally:
            os.close(self._held.pop(folder))

    def publish(
        self,
        staging_dir: Path,
        *,
        config: dict[str, Any],
        config_hash: str,
        inputs: dict[str, Any],
        metrics: dict[str, Any] | None = None,
    ) -> Manifest:
        """Turn a staging folder into a new immutable version and make it current.

        ``config`` and ``inputs`` are stored redacted (``recsys.redact``): pass the hash of the
        full config. Steps: hash + fsync files; under the store lock write manifest.json, rename the folder
        into versions/, replace CURRENT atomically; then prune and remove stale staging folders.
        """
        folder = Path(staging_dir).resolve()
        if folder.parent != self._staging_root:
            raise ArtifactError(
                f"{staging_dir} is not a staging folder of the store at {self.root}; "
                "create one with `with store.staging() as folder:`"
            )
        if not folder.is_dir():
            raise ArtifactError(f"staging folder {folder} does not exist (already published?)")
        if not isinstance(config_hash, str) or not config_hash:
            raise ConfigError("config_hash must be a non-empty string (see artifacts.config_hash)")
        metrics = {} if metrics is None else metrics
        for what, value, error in (
            ("config", config, ConfigError),
            ("inputs", inputs, ArtifactError),
            ("metrics", metrics, ArtifactError),
        ):
            if not isinstance(value, dict):
                raise error(f"{what} must be a dict, got {type(value).__name__}")
            canonical_json(value, what, error)

        # Inside `with store.staging()` we hold the folder's lock already; otherwise take it.
        held = self._held.get(folder)
        fd = held if held is not None else lock_folder(folder)
        if fd is None:
            raise ArtifactError(
                f"staging folder {folder} is in use by another process or was removed as stale"
            )
        try:
            return self._publish_locked_folder(folder, config, config_hash, inputs, metrics)
        finally:
            if held is None:
                os.close(fd)

    def _publish_locked_folder(
        self,
        folder: Path,
        config: dict[str, Any],
        cfg_hash: str,
        inputs: dict[str, Any],
        metrics: dict[str, Any],
    ) -> Manifest:
        if (folder / MANIFEST_NAME).exists():
            raise ArtifactError(f"{MANIFEST_NAME} is reserved for the store; rename it in {folder}")
        # 1. hash, make owner-only and fsync every staged file, then every folder (outside
        # the store lock): versions hold customer data (purchase histories, ALS factors)
        files: dict[str, dict[str, Any]] = {}
        for rel in list_files(folder):
            path = folder / rel
            digest = hashlib.sha256()
            with open(path, "rb") as f:
                while chunk := f.read(_CHUNK):
                    digest.update(chunk)
                os.fchmod(f.fileno(), PRIVATE_FILE)
                os.fsync(f.fileno())
                files[rel] = {"sha256": digest.hexdigest(), "bytes": os.fstat(f.fileno()).st_size}
        for dirpath, _, _ in os.walk(folder):
            os.chmod(dirpath, PRIVATE_DIR)
            fsync_path(Path(dirpath), directory=True)

        ensure_dir(self._versions_root)
        for private in (self.root, self._versions_root, self._staging_root):
            os.chmod(private, PRIVATE_DIR)  # a store made before modes were set
        with self._store_lock():
            now = datetime.now(UTC)
            version = self._new_version_name(now)
            manifest = Manifest(
                version=version,
                created_at=now.isoformat(),
                git_commit=git_commit(),
                config=redact(config),  # secrets never reach a manifest; the hash
                config_hash=cfg_hash,  # of the full config identifies it
                inputs=redact(inputs),
                libraries=library_versions(),
                metrics=json.loads(json.dumps(metrics)),
                files=files,
            )
            text = json.dumps(manifest.to_dict(), sort_keys=True, indent=2, allow_nan=False)
            fd = os.open(folder / MANIFEST_NAME, os.O_WRONLY | os.O_CREAT | os.O_EXCL,
                         PRIVATE_FILE)
            with open(fd, "w", encoding="utf-8") as f:
                f.write(text + "\n")
                f.flush()
                os.fsync(f.fileno())
            fsync_path(folder, directory=True)
            crash_point("after_manifest")

            # 2. the version appears complete, by one rename
            target = self._versions_root / version
            os.rename(folder, target)
            fsync_path(self._versions_root, directory=True)
            fsync_path(self._staging_root, directory=True)
            crash_point("after_rename")
            with contextlib.suppress(FileNotFoundError):
                (target / LOCK_NAME).unlink()

            # 3. switch CURRENT
            self._write_current(version)

            # 4. housekeeping: the publish has succeeded, so failures here only warn
            try:
                self._prune_locked()
                self._clean_stale_locked()
            except OSError as exc:
                logger.warning("published %s, but cleaning up old files failed: %s", version, exc)
        return manifest

    # ---- reading

    def current_version(self) -> str | None:
        """The version CURRENT names; None before the first publish.

        Raises ArtifactError when CURRENT is unreadable or names a missing/incomplete version.
        """
        version = self._read_current()
        if version is not None and not self._is_complete(version):
            raise ArtifactError(
                f"{self._current_file} names version {version}, which is missing or incomplete "
                f"under {self._versions_root}; roll back to the newest complete version with "
                f"ArtifactStore({str(self.root)!r}).rollback()"
            )
        return version

    def versions(self) -> list[str]:
        """Complete versions (those with a manifest.json), oldest first."""
        return [v for v in self._version_dir_names() if self._is_complete(v)]

    def manifest(self, version: str | None = None) -> Manifest:
        """Parsed manifest of ``version`` (default: current)."""
        folder = self.path(version)
        path = folder / MANIFEST_NAME
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ArtifactError(f"cannot read {path}: {exc}") from exc
        try:
            manifest = Manifest.from_dict(data)
        except ArtifactError as exc:
            raise ArtifactError(f"{path} is corrupt: {exc}") from exc
        if manifest.version != folder.name:
            raise ArtifactError(
                f"{path} describes version {manifest.version}, not {folder.name}; "
                "the folder was copied or renamed by hand"
            )
        return manifest

    def path(self, version: str | None = None) -> Path:
        """Folder of a complete ``version`` (default: current)."""
        if version is None:
            version = self.current_version()
            if version is None:
                raise ArtifactError(f"nothing has been published under {self.root} yet")
        self._check_name(version)
        if not self._is_complete(version):
            known = ", ".join(self.versions()) or "none"
            raise ArtifactError(
                f"artifact version {version} does not exist under {self._versions_root} "
                f"(known versions: {known})"
            )
        return self._versions_root / version

    def verify(self, version: str | None = None) -> Manifest:
        """Re-hash every file of ``version`` (default: current) against its manifest.

        Raises ArtifactError naming each missing, extra, resized or changed file.
        """
        manifest = self.manifest(version)
        folder = self._versions_root / manifest.version
        actual = set(list_files(folder))
        expected = set(manifest.files)
        problems = [f"{rel}: missing" for rel in sorted(expected - actual)]
        problems += [f"{rel}: extra file, not in the manifest" for rel in sorted(actual - expected)]
        for rel in sorted(expected & actual):
            entry = manifest.files[rel]
            path = folder / rel
            size = path.stat().st_size
            if size != entry["bytes"]:
                problems.append(f"{rel}: {size} bytes, manifest says {entry['bytes']}")
            elif sha256_file(path) != entry["sha256"]:
                problems.append(f"{rel}: sha256 differs from the manifest (file was changed)")
        if problems:
            raise ArtifactError(
                f"artifact version {manifest.version} at {folder} fails verification: "
                + "; ".join(problems)
            )
        return manifest

    # ---- internals

    def _check_name(self, version: str) -> None:
        if not isinstance(version, str) or not _VERSION_RE.match(version):
            raise ArtifactError(
                f"{version!r} is not an artifact version name (expected YYYYMMDDTHHMMSSffffffZ)"
            )

    def _is_complete(self, version: str) -> bool:
        return (self._versions_root / version / MANIFEST_NAME).is_file()

    def _version_dir_names(self) -> list[str]:
        """Every version-named folder in versions/, complete or not, sorted."""
        try:
            entries = os.listdir(self._versions_root)
        except FileNotFoundError:
            return []
        return sorted(e for e in entries if _VERSION_RE.match(e))

    def _read_current(self) -> str | None:
        try:
            text = self._current_file.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise ArtifactError(f"cannot read {self._current_file}: {exc}") from exc
        version = text.strip()
        if not _VERSION_RE.match(version):
            raise ArtifactError(
                f"{self._current_file} holds {text[:60]!r}, not a version name; roll back with "
                f"ArtifactStore({str(self.root)!r}).rollback(<version>)"
            )
        return version

    def _new_version_name(self, now: datetime) -> str:
        """A name later than every existing version folder (call under the store lock)."""
        version = now.strftime(_VERSION_FORMAT)
        existing = self._version_dir_names()
        if existing and version <= existing[-1]:
            version = _bump(existing[-1])
        while (self._versions_root / version).exists():
            version = _bump(version)
        return version

    def _write_current(self, version: str) -> None:
        """Atomically replace CURRENT (call under the store lock)."""
        tmp = self.root / f"CURRENT.tmp-{os.getpid()}"
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE), "w",
                  encoding="utf-8") as f:
            f.write(version + "\n")
            f.flush()
            os.fsync(f.fileno())
        crash_point("before_pointer_replace")
        os.replace(tmp, self._current_file)
        fsync_path(self.root, directory=True)
        crash_point("after_pointer_replace")

    @contextlib.contextmanager
    def _store_lock(self) -> Iterator[None]:
        """Exclusive flock on root/.lock: one publish, rollback or prune at a time."""
        ensure_dir(self.root)
        fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT, PRIVATE_FILE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)
