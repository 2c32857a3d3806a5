"""Workers forked from a parent that has imported the app, so N workers on a host share one copy
of the code.

uvicorn starts each of its ``--workers`` with ``spawn``: every worker imports pandas, numba,
FastAPI and the project afresh (about 120 MiB of private memory before an artifact is read).
``recsys serve --workers N`` instead imports the app and the modules that loading an artifact
and serving it import, freezes the garbage collector's view of those objects (so a worker's
collections do not write to, and thereby copy, the pages holding them) and has uvicorn's
supervisor fork its workers: the imported code stays shared, copy-on-write, in every worker.
The supervisor also loads and warms up the current artifact version (``state.preload``): a
worker that starts on that version serves the supervisor's index, so its Python objects and
compiled kernels are shared too. A version published later is loaded by each worker on its
own (hot reload, as with spawned workers), and the supervisor, which checks CURRENT each time
it checks on its workers, then lets go of its own copy (``state.drop_superseded_preload``);
restarting the server shares a version again. The supervisor opens no database or Redis
connection and starts no thread of its own.
"""

from __future__ import annotations

import gc
import importlib
import multiprocessing
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from recsys.config import ServingSettings

__all__ = ["PRELOADED_MODULES", "fork_workers_from_here"]

#: What a worker imports after start-up (loading an artifact, answering each list, the
#: databases): imported in the parent so the workers share it. tests/test_prefork.py checks the
#: list is complete.
PRELOADED_MODULES = (
    "recsys.app",
    "pandas",
    "pyarrow.parquet",
    "pandas.io.parquet",
    "scipy.sparse",
    "numba",
    "sqlalchemy.dialects.sqlite",
    "sqlalchemy.dialects.postgresql",
    "psycopg",
    "sqlite3",
    "redis.asyncio",
)


def fork_workers_from_here(settings: ServingSettings) -> str | None:
    """Import :data:`PRELOADED_MODULES` and preload the current artifact version here, and make
    uvicorn fork its workers from this process (instead of spawning fresh interpreters). Call
    it in the supervisor before ``uvicorn.run``; returns the preloaded version (None if it did
    not load: each worker then loads, and reports, it)."""
    import uvicorn._subprocess as uvicorn_subprocess
    from uvicorn.supervisors.multiprocess import Multiprocess

    from recsys.serving.state import drop_superseded_preload, preload

    # both checked by a test against the pinned uvicorn
    if not hasattr(uvicorn_subprocess, "spawn"):
        raise RuntimeError("this uvicorn has no _subprocess.spawn to make its workers fork")
    if not hasattr(Multiprocess, "keep_subprocess_alive"):
        raise RuntimeError("this uvicorn's supervisor has no keep_subprocess_alive to watch from")
    for name in PRELOADED_MODULES:
        importlib.import_module(name)
    version = preload(settings)
    gc.collect()
    gc.freeze()
    fork: Any = multiprocessing.get_context("fork")
    uvicorn_subprocess.spawn = fork
    keep_alive = Multiprocess.keep_subprocess_alive

    def keep_alive_and_let_go(supervisor: Multiprocess) -> None:  # every half second
        drop_superseded_preload(settings)  # before a restarted worker forks with it
        keep_alive(supervisor)

    Multiprocess.keep_subprocess_alive = keep_alive_and_let_go  # type: ignore[method-assign,assignment]
    return version
