"""The memory a server worker keeps after loading an artifact version.

Loading reads Parquet through Arrow and builds numpy arrays; the temporaries are freed, but
Arrow's default pool (mimalloc) and glibc's heap keep freed memory for reuse, so a worker would
hold on to its load-time peak for good (on Online Retail II about 60 MiB of each worker's
private memory, more than the index itself). A server reads Arrow only while loading, so it
uses the system allocator, and hands freed memory back to the system after each load.

The cyclic garbage collector makes its young pass less often in a server's worker. A request
that awaits Redis keeps its objects alive while other requests run, so with CPython's default
(a pass every 700 net allocations) the session-aware list made a young pass about every 15
requests and a full one every few thousand: 2.2-2.9 us of collecting per request, of about
265 (BENCHMARKS.md). With a pass every 10,000 none came in a 3-second phase at its maximum;
a request answered without waiting never triggered one either way.
"""

from __future__ import annotations

import ctypes
import functools
import gc
from collections.abc import Callable

import pyarrow as pa

__all__ = ["use_system_allocator", "release_freed_memory", "collect_young_less_often"]

YOUNG_PASS_EVERY = 10_000  # net allocations between the collector's young passes (CPython: 700)


def collect_young_less_often() -> None:
    """The garbage collector's young pass every ``YOUNG_PASS_EVERY`` net allocations in this
    process (the older generations keep their ratios; see the module). A server's workers
    call it (``recsys.app.app_from_env``); a program embedding the app keeps its own."""
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_PASS_EVERY, middle, old)


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
