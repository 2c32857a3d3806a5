"""Compact read-only lookups for the served index: numpy arrays in place of dicts of Python
objects, so that a server worker holding a big shop's customers and products stays small.

A dict costs about 100 bytes and a Python object or two per entry, private to every worker;
these cost a few bytes per entry and answer by binary search or by offsets.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np
import pandas as pd

from recsys.vocab import IdLookup

__all__ = ["Labels", "Grouped"]


class Labels(Mapping[str, str]):
    """Ids -> one of a few labels (customer -> RFM segment): the ids in an ``IdLookup``, the
    labels as small integer codes into their distinct values."""

    __slots__ = ("_ids", "_codes", "_names")

    def __init__(self, ids: pd.Series, labels: pd.Series) -> None:
        codes, names = pd.factorize(labels.astype("string"))
        if (codes < 0).any():
            raise ValueError("a label is missing")
        self._ids = IdLookup(ids.astype("string"))
        self._codes = codes.astype(np.int8 if len(names) < 128 else np.int32)
        self._names = tuple(str(n) for n in names)

    def __getitem__(self, key: str) -> str:
        return self._names[self._codes[self._ids[key]]]

    def __contains__(self, key: object) -> bool:
        return key in self._ids

    def __iter__(self) -> Iterator[str]:
        return iter(self._ids)

    def __len__(self) -> int:
        return len(self._ids)


class Grouped(Mapping[int, tuple[np.ndarray, np.ndarray]]):
    """Product code -> (codes, counts) best first, as one CSR: ``offsets`` by product code
    (``n_products + 1``), the pairs in ``codes`` / ``counts``; products without any are
    absent (not an empty pair)."""

    __slots__ = ("_offsets", "_codes", "_counts", "_size")

    def __init__(self, offsets: np.ndarray, codes: np.ndarray, counts: np.ndarray) -> None:
        self._offsets, self._codes, self._counts = offsets, codes, counts
        self._size = int((np.diff(offsets) > 0).sum())

    @classmethod
    def from_pairs(cls, key: np.ndarray, codes: np.ndarray, counts: np.ndarray,
                   n_keys: int) -> Grouped:
        """Group pairs already ordered by ``key`` (and best first within a key)."""
        offsets = np.zeros(n_keys + 1, np.int64)
        np.cumsum(np.bincount(key, minlength=n_keys), out=offsets[1:])
        return cls(offsets, codes, counts)

    def _span(self, key: object) -> tuple[int, int] | None:
        if not isinstance(key, int | np.integer) or not 0 <= key < len(self._offsets) - 1:
            return None
        lo, hi = int(self._offsets[key]), int(self._offsets[key + 1])
        return (lo, hi) if hi > lo else None

    def __getitem__(self, key: int) -> tuple[np.ndarray, np.ndarray]:
        span = self._span(key)
        if span is None:
            raise KeyError(key)
        return self._codes[span[0]:span[1]], self._counts[span[0]:span[1]]

    def __contains__(self, key: object) -> bool:
        return self._span(key) is not None

    def __iter__(self) -> Iterator[int]:
        return iter(np.flatnonzero(np.diff(self._offsets) > 0).tolist())

    def __len__(self) -> int:
        return self._size
