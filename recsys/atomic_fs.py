"""Crash-safe filesystem steps of the artifact store: fsync, mkdir -p that survives a crash,
regular files only, flock'ed staging folders, and the crash points the tests kill at."""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
from pathlib import Path

from recsys.errors import ArtifactError
from recsys.filemodes import PRIVATE_DIR, PRIVATE_FILE
from recsys.manifest import MANIFEST_NAME

__all__ = ["LOCK_NAME", "crash_point", "fsync_path", "ensure_dir", "list_files", "lock_folder"]

LOCK_NAME = ".staging.lock"  # flock'ed while a staging folder is in use; never in a manifest


def crash_point(name: str) -> None:
    """TEST ONLY: SIGKILL this process at ``name`` when env RECSYS_CRASH_AT equals it."""
    if os.environ.get("RECSYS_CRASH_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)


def fsync_path(path: Path, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def ensure_dir(path: Path) -> None:
    """mkdir -p, fsyncing the parent of each folder created so it survives a crash."""
    if path.is_dir():
        return
    ensure_dir(path.parent)
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=PRIVATE_DIR)
        fsync_path(path.parent, directory=True)


def list_files(folder: Path) -> list[str]:
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
            if rel not in (MANIFEST_NAME, LOCK_NAME):
                found.append(rel)
    return sorted(found)


def lock_folder(folder: Path) -> int | None:
    """Take the exclusive flock of a staging folder; None if another holder has it or it is gone.

    After locking, the lock file must still be the one on disk: a cleaner may have removed the
    folder between our open() and flock(), in which case the lock protects nothing.
    """
    lock_path = folder / LOCK_NAME
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
