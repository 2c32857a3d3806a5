"""The memory a server worker keeps after loading an artifact version.

Loading reads Parquet through Arrow and builds numpy arrays; the temporaries are freed, but
Arrow's default pool (mimalloc) and glibc's heap keep freed memory for reuse, so a worker would
hold on to its load-time peak for good (on Online Retail II about 60 MiB of each worker's
private memory, more than the index itself). A server reads Arrow only while loading, so it
uses the system allocator, and hands freed memory back to the system after each load.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Callable

import pyarrow as pa

__all__ = ["use_system_allocator", "release_freed_memory"]


def use_system_allocator() -> None:
    """Arrow allocates with malloc from now on in this process (buffers already allocated
    keep their pool)."""
    pa.set_memory_pool(pa.system_memory_pool())


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        process = ctypes.CDLL(None)  # the symbols the process has loaded, the C library's too
    except OSError:
        return None
    return getattr(process, "malloc_trim", None)  # glibc only


def release_freed_memory() -> None:
    """Return memory freed so far to the system: Arrow's unused pool memory, and the free
    pages of glibc's heap (``malloc_trim``; nothing to do on other C libraries)."""
    pa.default_memory_pool().release_unused()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
