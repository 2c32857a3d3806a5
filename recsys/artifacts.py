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
import functools
import hashlib
import importlib.metadata
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import uuid
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from recsys.errors import ArtifactError, ConfigError, InputError
from recsys.filemodes import PRIVATE_DIR, PRIVATE_FILE
from recsys.redact import redact

__all__ = [
    "ArtifactStore",
    "Manifest",
    "MANIFEST_NAME",
    "sha256_file",
    "fingerprint_files",
    "config_hash",
    "save_npz",
    "load_npz",
    "save_parquet",
    "load_parquet",
]

logger = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
_LOCK_NAME = ".staging.lock"  # flock'ed while a staging folder is in use; never in a manifest
_VERSION_FORMAT = "%Y%m%dT%H%M%S%fZ"
_VERSION_RE = re.compile(r"^\d{8}T\d{12}Z$")
_LIBRARIES = ("recsys", "numpy", "pandas", "scipy", "pyarrow", "implicit", "mlxtend", "fastapi")
_CHUNK = 1 << 20


# --------------------------------------------------------------------------- helpers


def sha256_file(path: Path | str) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks. OSError propagates (e.g. missing file)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def fingerprint_files(paths: Iterable[Path | str]) -> dict[str, dict[str, Any]]:
    """Fingerprint input files: {file name: {"sha256": hex, "bytes": size}} for a manifest."""
    out: dict[str, dict[str, Any]] = {}
    for raw in paths:
        path = Path(raw)
        if path.name in out:
            raise InputError(
                f"two input files are both named {path.name!r} ({path}); "
                "fingerprints are keyed by file name, so give them distinct names"
            )
        try:
            out[path.name] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
        except OSError as exc:
            raise InputError(f"cannot read input file {path}: {exc.strerror or exc}") from exc
    return out


def config_hash(config: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of ``config`` (sorted keys, no spaces): same config, same hash."""
    return hashlib.sha256(_canonical_json(config, "config", ConfigError).encode()).hexdigest()


def save_npz(path: Path | str, **arrays: Any) -> None:
    """Write arrays to an uncompressed ``.npz`` at exactly ``path``; object arrays are refused."""
    converted: dict[str, np.ndarray] = {}
    for name, value in arrays.items():
        arr = np.asarray(value)
        if arr.dtype.hasobject:
            raise ArtifactError(
                f"cannot save array {name!r} to {path}: dtype {arr.dtype} holds Python objects, "
                "which need pickle; convert it first (e.g. ids with .astype(str))"
            )
        converted[name] = arr
    # An open file keeps numpy from appending ".npz"; no object arrays reach it, so no pickle.
    with open(path, "wb") as f:
        np.savez(f, **converted)  # type: ignore[arg-type]


def save_parquet(frame: pd.DataFrame, path: Path | str) -> None:
    """Write a table as plain Parquet (no pandas metadata, so list columns read back anywhere)."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    pq.write_table(table.replace_schema_metadata(None), path)


def load_parquet(path: Path | str) -> pd.DataFrame:
    """Read a table written by ``save_parquet``; list columns come back Arrow-backed."""
    try:
        table = pq.read_table(path)
    except FileNotFoundError as exc:
        raise ArtifactError(f"table file {path} does not exist") from exc
    except (OSError, pa.ArrowInvalid) as exc:
        raise ArtifactError(f"table file {path} is not readable Parquet: {exc}") from exc
    nested = {f.type for f in table.schema if pa.types.is_list(f.type)}
    return table.to_pandas(types_mapper=lambda t: pd.ArrowDtype(t) if t in nested else None)


def load_npz(path: Path | str) -> dict[str, np.ndarray]:
    """Read every array of an ``.npz`` into memory with ``allow_pickle=False``."""
    try:
        data = np.load(path, allow_pickle=False)
    except FileNotFoundError as exc:
        raise ArtifactError(f"array file {path} does not exist") from exc
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise ArtifactError(f"array file {path} is not a readable .npz archive: {exc}") from exc
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise ArtifactError(f"{path} holds a single .npy array, not an .npz archive")
    out: dict[str, np.ndarray] = {}
    with data:
        for key in data.files:
            try:
                out[key] = data[key]
            except ValueError as exc:
                raise ArtifactError(
                    f"array {key!r} in {path} cannot be loaded without pickle ({exc}); "
                    "artifacts hold plain numeric/string arrays only, re-create the file"
                ) from exc
            except (OSError, EOFError, zipfile.BadZipFile) as exc:
                raise ArtifactError(f"array {key!r} in {path} is corrupt: {exc}") from exc
    return out


def _crash_point(name: str) -> None:
    """TEST ONLY: SIGKILL this process at ``name`` when env RECSYS_CRASH_AT equals it."""
    if os.environ.get("RECSYS_CRASH_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)


def _canonical_json(obj: Any, what: str, error: type[Exception]) -> str:
    try:
        return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise error(
            f"{what} cannot be written as JSON ({exc}); use str/int/float/bool/None, "
            "lists and dicts with string keys, and no NaN or infinity"
        ) from exc


@functools.cache
def _git_commit() -> str | None:
    """HEAD of the git checkout holding this package's source, else None; never raises."""
    try:
        proc = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = proc.stdout.strip()
    return commit if proc.returncode == 0 and re.fullmatch(r"[0-9a-f]{40,64}", commit) else None


@functools.cache
def _library_versions() -> dict[str, str]:
    versions: dict[str, str] = {}
    for name in _LIBRARIES:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[name] = importlib.metadata.version(name)
    return versions


def _fsync_path(path: Path, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _ensure_dir(path: Path) -> None:
    """mkdir -p, fsyncing the parent of each folder created so it survives a crash."""
    if path.is_dir():
        return
    _ensure_dir(path.parent)
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=PRIVATE_DIR)
        _fsync_path(path.parent, directory=True)


def _list_files(folder: Path) -> list[str]:
    """Relative POSIX paths of the regular files under ``folder``, minus manifest and lock."""
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        base = Path(dirpath)
        for name in [*dirnames, *filenames]:
            entry = base / name
            rel = entry.relative_to(folder).as_posix()
            if entry.is_symlink() or not (entry.is_dir() or entry.is_file()):
                raise ArtifactError(
                    f"{rel} in {folder} is a symlink or special file; "
                    "artifact folders may hold regular files only"
                )
        for name in filenames:
            rel = (base / name).relative_to(folder).as_posix()
            if rel not in (MANIFEST_NAME, _LOCK_NAME):
                found.append(rel)
    return sorted(found)


def _lock_folder(folder: Path) -> int | None:
    """Take the exclusive flock of a staging folder; None if another holder has it or it is gone.

    After locking, the lock file must still be the one on disk: a cleaner may have removed the
    folder between our open() and flock(), in which case the lock protects nothing.
    """
    lock_path = folder / _LOCK_NAME
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, PRIVATE_FILE)
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        on_disk = os.stat(lock_path)
        held = os.fstat(fd)
        if (on_disk.st_dev, on_disk.st_ino) == (held.st_dev, held.st_ino):
            return fd
    except (BlockingIOError, FileNotFoundError):
        pass
    os.close(fd)
    return None


def _bump(version: str) -> str:
    stamp = datetime.strptime(version, _VERSION_FORMAT) + timedelta(microseconds=1)
    return stamp.strftime(_VERSION_FORMAT)


# --------------------------------------------------------------------------- manifest


@dataclass(frozen=True)
class Manifest:
    """What a version holds and how it was made; written as ``manifest.json`` in the version.

    ``files`` maps each relative path (POSIX separators) to {"sha256": hex, "bytes": int}.
    Treat the dict fields as read-only.
    """

    version: str
    created_at: str
    git_commit: str | None
    config: dict[str, Any]
    config_hash: str
    inputs: dict[str, Any]
    libraries: dict[str, str]
    metrics: dict[str, Any] = field(default_factory=dict)
    files: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready deep copy."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        """Build from a parsed manifest.json; ArtifactError on a missing or mistyped field."""
        kinds: dict[str, tuple[type, ...]] = {
            "version": (str,),
            "created_at": (str,),
            "git_commit": (str, type(None)),
            "config": (dict,),
            "config_hash": (str,),
            "inputs": (dict,),
            "libraries": (dict,),
            "metrics": (dict,),
            "files": (dict,),
        }
        if not isinstance(data, dict):
            raise ArtifactError(f"manifest must be a JSON object, got {type(data).__name__}")
        for key, types in kinds.items():
            if key not in data:
                raise ArtifactError(f"manifest lacks the field {key!r}")
            if not isinstance(data[key], types):
                raise ArtifactError(
                    f"manifest field {key!r} has type {type(data[key]).__name__}, "
                    f"expected {' or '.join(t.__name__ for t in types)}"
                )
        for rel, entry in data["files"].items():
            if not (
                isinstance(entry, dict)
                and isinstance(entry.get("sha256"), str)
                and isinstance(entry.get("bytes"), int)
            ):
                raise ArtifactError(f"manifest entry for file {rel!r} lacks sha256/bytes")
        return cls(**{key: data[key] for key in kinds})


# --------------------------------------------------------------------------- store


class ArtifactStore:
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
        _ensure_dir(self._staging_root)
        for _ in range(10):
            folder = self._staging_root / uuid.uuid4().hex
            folder.mkdir(mode=PRIVATE_DIR)
            fd = _lock_folder(folder)
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
            _canonical_json(value, what, error)

        # Inside `with store.staging()` we hold the folder's lock already; otherwise take it.
        held = self._held.get(folder)
        fd = held if held is not None else _lock_folder(folder)
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
        for rel in _list_files(folder):
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
            _fsync_path(Path(dirpath), directory=True)

        _ensure_dir(self._versions_root)
        for private in (self.root, self._versions_root, self._staging_root):
            os.chmod(private, PRIVATE_DIR)  # a store made before modes were set
        with self._store_lock():
            now = datetime.now(UTC)
            version = self._new_version_name(now)
            manifest = Manifest(
                version=version,
                created_at=now.isoformat(),
                git_commit=_git_commit(),
                config=redact(config),  # secrets never reach a manifest; the hash
                config_hash=cfg_hash,  # of the full config identifies it
                inputs=redact(inputs),
                libraries=_library_versions(),
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
            _fsync_path(folder, directory=True)
            _crash_point("after_manifest")

            # 2. the version appears complete, by one rename
            target = self._versions_root / version
            os.rename(folder, target)
            _fsync_path(self._versions_root, directory=True)
            _fsync_path(self._staging_root, directory=True)
            _crash_point("after_rename")
            with contextlib.suppress(FileNotFoundError):
                (target / _LOCK_NAME).unlink()

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
        actual = set(_list_files(folder))
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

    # ---- maintenance

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
                    (self._versions_root / version / _LOCK_NAME).unlink()
            _fsync_path(self._versions_root, directory=True)
            shutil.rmtree(graveyard)

    def prune(self) -> list[str]:
        """Delete all but the newest ``keep_last`` versions, never the current one."""
        if not self._versions_root.is_dir():
            return []
        with self._store_lock():
            removed = self._prune_locked()
            self._clean_stale_locked()
        return removed

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
        _crash_point("before_pointer_replace")
        os.replace(tmp, self._current_file)
        _fsync_path(self.root, directory=True)
        _crash_point("after_pointer_replace")

    def _prune_locked(self) -> list[str]:
        """Move surplus versions into .staging (one rename each), where cleaning deletes them."""
        current = self._read_current()
        complete = self.versions()
        keep = set(complete[-self.keep_last :]) | ({current} if current else set())
        doomed = [v for v in complete if v not in keep]
        if doomed:
            _ensure_dir(self._staging_root)
        for version in doomed:
            graveyard = self._staging_root / f"pruned-{version}-{uuid.uuid4().hex[:8]}"
            os.rename(self._versions_root / version, graveyard)
        if doomed:
            _fsync_path(self._versions_root, directory=True)
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
            fd = _lock_folder(folder)
            if fd is None:
                continue  # in use (or already gone)
            try:
                shutil.rmtree(folder)
            finally:
                os.close(fd)

    @contextlib.contextmanager
    def _store_lock(self) -> Iterator[None]:
        """Exclusive flock on root/.lock: one publish, rollback or prune at a time."""
        _ensure_dir(self.root)
        fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT, PRIVATE_FILE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)
