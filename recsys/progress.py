"""Progress bars (stderr, tqdm) that the CLI's ``-q`` turns off everywhere."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm import tqdm

__all__ = ["progress_bar", "progress_enabled", "set_quiet"]

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
    """Iterate with a tqdm bar on stderr, unless disabled or quiet."""
    if not enabled or _QUIET:
        yield from items
        return
    yield from tqdm(items, desc=desc, unit=unit, total=total, file=sys.stderr, leave=False,
                    mininterval=0.5)
