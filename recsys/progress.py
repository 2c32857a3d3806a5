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

__all__ = ["bars_enabled", "progress_bar", "progress_enabled", "set_quiet", "timed_step"]

T = TypeVar("T")
_QUIET = False
#: Seconds between two progress lines when stderr is no terminal.
LOG_EVERY_S = 30.0
_log = logging.getLogger(__name__)


def set_quiet(quiet: bool) -> None:
    """Silence every progress bar of this process (``recsys -q``)."""
    global _QUIET
    _QUIET = quiet


def progress_enabled() -> bool:
    """Whether long steps should show progress (off under ``recsys -q``)."""
    return not _QUIET


def bars_enabled() -> bool:
    """Whether a library's own progress bar (implicit's fits) may draw: not quiet, and stderr
    is a terminal (in a log file a redrawn bar leaves its text on the log's lines)."""
    return not _QUIET and sys.stderr.isatty()


def progress_bar(items: Iterable[T], *, desc: str, unit: str = "it", total: int | None = None,
                 enabled: bool = True) -> Iterator[T]:
    """Iterate with a tqdm bar on stderr, unless disabled or quiet; log lines written to the
    console meanwhile go above the bar, not into it. When stderr is no terminal (a log file,
    a pipe) the progress is a log line every ``LOG_EVERY_S`` seconds instead: a bar redrawn
    with carriage returns would fill the file and share its lines with the log's."""
    if not enabled or _QUIET:
        yield from items
        return
    if not sys.stderr.isatty():
        yield from _logged(items, desc=desc, unit=unit, total=total)
        return
    with logging_redirect_tqdm():
        yield from tqdm(items, desc=desc, unit=unit, total=total, file=sys.stderr, leave=False,
                        mininterval=0.5)


def _logged(items: Iterable[T], *, desc: str, unit: str, total: int | None) -> Iterator[T]:
    """The items, with an INFO line ("desc: 1,200 of 3,000 it (40%), 12 s") whenever
    ``LOG_EVERY_S`` seconds have passed since the last."""
    started = last = time.monotonic()
    for done, item in enumerate(items, start=1):
        yield item
        now = time.monotonic()
        if now - last >= LOG_EVERY_S:
            last = now
            of = f" of {total:,}" if total else ""
            share = f" ({done / total:.0%})" if total else ""
            _log.info("%s: %s%s %s%s, %.0f s", desc, f"{done:,}", of, unit, share, now - started)


@contextmanager
def timed_step(log: logging.Logger, what: str) -> Iterator[None]:
    """Log (INFO) that ``what`` starts and, when it ends, how long it took: a job of an
    hour shows where it is."""
    log.info("%s ...", what)
    started = time.perf_counter()
    yield
    log.info("%s: done in %.1f s", what, time.perf_counter() - started)
