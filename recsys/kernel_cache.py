"""numba's on-disk cache of the compiled kernels, kept in step with their sources.

numba keys a cached kernel on its own file's modification time and size only. A kernel that
calls a kernel of another file (``serving.session._merge`` calls
``models.session_knn.session_neighbours``, compiled into it) is loaded from the cache with the
old callee after only that other file changed: after a ``git pull`` into a checkout installed
in place, say, it would silently compute what the old code computed. ``refresh`` fingerprints
every source file that uses numba and, when the fingerprint differs from the one the cached
kernels were made with, drops the package's cached kernels, so that each is compiled afresh
once. It runs when ``recsys`` is imported. A package folder that cannot be written (an
installed wheel: numba then caches elsewhere, and an upgrade rewrites every file, which
numba does notice) is left alone.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

__all__ = ["fingerprint", "refresh"]

PACKAGE = Path(__file__).resolve().parent
STAMP = "numba-kernels.sha256"  # in the package's own __pycache__


def fingerprint(root: Path) -> str:
    """A digest of the path and contents of every ``.py`` file under ``root`` using numba."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        data = path.read_bytes()
        if b"numba" in data:
            digest.update(path.relative_to(root).as_posix().encode() + b"\0" + data + b"\0")
    return digest.hexdigest()


def refresh(root: Path = PACKAGE) -> bool:
    """Delete numba's cache files (``__pycache__/*.nbi``, ``*.nbc``) under ``root`` unless
    they were made from the sources there now; returns whether it deleted them."""
    stamp = root / "__pycache__" / STAMP
    current = fingerprint(root)
    try:
        if stamp.read_text(encoding="ascii") == current:
            return False
    except (OSError, UnicodeDecodeError):
        pass  # no stamp yet (or unreadable): the cache's sources are unknown
    try:
        for cached in root.glob("**/__pycache__/*.nb[ic]"):
            cached.unlink(missing_ok=True)
        stamp.parent.mkdir(exist_ok=True)
        written = stamp.with_name(f"{STAMP}.{os.getpid()}.tmp")
        written.write_text(current, encoding="ascii")
        os.replace(written, stamp)
    except OSError:
        return False  # a folder this process cannot write: numba caches elsewhere
    return True
