"""Progress bars (stderr, tqdm) that the CLI's ``-q`` turns off everywhere, and the log lines
that time a long job's steps."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

__all__ = ["progress_bar", "progress_enabled", "set_quiet", "timed_step"]

T = TypeVar("T")
_QUIET = False


def set_quiet(quiet: bool) -> None:
    """Silence every progress bar of this process (``recsys -q``)."""
    global _QUIET
    _QUIET = quiet


def progress_enabled() -> bool:
    """Whether long steps should show progress (off under ``recsys -q``)."""
    return not _QUIET


def progress_bar(items: Iterable[T], *, desc: str, unit: str = "it", total: int | None = None,
                 enabled: bool = True) -> Iterator[T]:
    """Iterate with a tqdm bar on stderr, unless disabled or quiet; log lines written to the
    console meanwhile go above the bar, not into it."""
    if not enabled or _QUIET:
        yield from items
        return
    with logging_redirect_tqdm():
        yield from tqdm(items, desc=desc, unit=unit, total=total, file=sys.stderr, leave=False,
                        mininterval=0.5)


@contextmanager
def timed_step(log: logging.Logger, what: str) -> Iterator[None]:
    """Log (INFO) that ``what`` starts and, when it ends, how long it took: a job of an
    hour shows where it is."""
    log.info("%s ...", what)
    started = time.perf_counter()
    yield
    log.info("%s: done in %.1f s", what, time.perf_counter() - started)
