"""Vectorised helpers of the generator: weighted sampling within segments, id and money
formatting as Arrow strings, dirty-row breaking and the seasonal clock."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recsys.demo.spec import BAD_DATES
from recsys.demo.taxonomy import HOUR_WEIGHTS, MONTH_WEIGHTS, WEEKDAY_WEIGHTS

__all__ = ["Sampler", "allocate", "group_offsets", "run_starts", "ids", "money", "take", "null_where", "break_dates", "Clock"]


class Sampler:
    """Draws indices by weight within contiguous index segments ``[starts[s], ends[s])``."""

    def __init__(self, weights: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> None:
        self.cum = np.cumsum(weights, dtype=np.float64)
        c0 = np.concatenate([[0.0], self.cum])
        self.lo, self.hi = c0[starts], c0[ends]
        self.starts, self.ends = starts, ends

    def draw(self, rng: np.random.Generator, segments: np.ndarray) -> np.ndarray:
        x = self.lo[segments] + rng.random(len(segments)) * (self.hi[segments] - self.lo[segments])
        idx = np.searchsorted(self.cum, x, side="right")
        return np.clip(idx, self.starts[segments], self.ends[segments] - 1)


def allocate(total: int, shares: np.ndarray, minimum: int) -> np.ndarray:
    """Split ``total`` into integer parts >= minimum, proportional to shares (largest remainder)."""
    spare = total - minimum * len(shares)
    exact = spare * shares / shares.sum()
    parts = np.floor(exact).astype(np.int64)
    left = spare - parts.sum()
    parts[np.argsort(-(exact - parts), kind="stable")[:left]] += 1
    return parts + minimum


def group_offsets(counts: np.ndarray) -> np.ndarray:
    """Position of each element within its group, for groups laid out by ``counts``."""
    starts = np.cumsum(counts) - counts
    return np.arange(counts.sum()) - np.repeat(starts, counts)


def run_starts(keys: np.ndarray) -> np.ndarray:
    """True where a run of equal (sorted) keys starts."""
    return np.r_[True, keys[1:] != keys[:-1]] if len(keys) else np.zeros(0, bool)


def ids(prefix: str, numbers: np.ndarray, width: int) -> pa.Array:
    """``prefix`` + zero-padded numbers, e.g. O0000001."""
    digits = pc.utf8_lpad(pc.cast(pa.array(numbers, pa.int64()), pa.string()), width=width,
                          padding="0")
    return pc.binary_join_element_wise(prefix, digits, "")


def money(cents: np.ndarray) -> pa.Array:
    """Integer cents -> "12.99" strings (sign kept)."""
    a = np.abs(cents)
    whole = pc.cast(pa.array(a // 100), pa.string())
    frac = pc.utf8_lpad(pc.cast(pa.array(a % 100), pa.string()), width=2, padding="0")
    text = pc.binary_join_element_wise(whole, frac, ".")
    if (cents < 0).any():
        text = pc.if_else(pa.array(cents < 0), pc.binary_join_element_wise("-", text, ""), text)
    return text


def take(strings: pa.Array, idx: np.ndarray) -> pa.Array:
    """``strings[idx]`` with null (written as empty) where idx < 0."""
    return strings.take(pa.array(np.maximum(idx, 0), mask=idx < 0))


def null_where(strings: pa.Array, mask: np.ndarray) -> pa.Array:
    """``strings`` with null (written as empty) where mask is true."""
    if not mask.any():
        return strings
    return pc.if_else(pa.array(mask), pa.scalar(None, pa.string()), strings)


def break_dates(rng: np.random.Generator, when: pa.Array, mask: np.ndarray) -> pa.Array:
    """Replace the timestamps under ``mask`` with unparseable ones (dirty rows)."""
    if not mask.any():
        return when
    bad = pa.array(BAD_DATES).take(pa.array(rng.integers(0, len(BAD_DATES), int(mask.sum()))))
    return pc.replace_with_mask(when, pa.array(mask), bad)


class Clock:
    """Seasonal day sampling and fast ISO formatting of second offsets from the start date."""

    _PAD = 2  # days of margin before/after the range (sessions cross midnight)

    def __init__(self, start: str, days: int) -> None:
        d0 = np.datetime64(start, "D")
        day = d0 + np.arange(days)
        weekday = (day.astype(np.int64) + 3) % 7
        month = day.astype("datetime64[M]").astype(np.int64) % 12
        w = WEEKDAY_WEIGHTS[weekday] * MONTH_WEIGHTS[month]
        self.cdf = np.concatenate([[0.0], np.cumsum(w)])
        self.days = days
        table = d0 + np.arange(-self._PAD, days + self._PAD)
        self.dates = pa.array(np.datetime_as_string(table, unit="D"))
        tod = np.datetime64("1970-01-01T00:00:00") + np.arange(86_400)
        self.times = pc.utf8_slice_codeunits(pa.array(np.datetime_as_string(tod, unit="s")), 10)
        self.hour_p = HOUR_WEIGHTS / HOUR_WEIGHTS.sum()

    def days_in(self, rng: np.random.Generator, first: np.ndarray, last: np.ndarray) -> np.ndarray:
        """One seasonal day per window ``[first, last]`` (inclusive day offsets)."""
        lo, hi = self.cdf[first], self.cdf[last + 1]
        x = lo + rng.random(len(first)) * (hi - lo)
        return np.clip(np.searchsorted(self.cdf, x, side="right") - 1, first, last)

    def seconds(self, rng: np.random.Generator, days: np.ndarray) -> np.ndarray:
        """Second offsets for the given days, at shop-like hours."""
        hour = rng.choice(24, size=len(days), p=self.hour_p)
        return days.astype(np.int64) * 86_400 + hour * 3600 + rng.integers(0, 3600, len(days))

    def iso(self, seconds: np.ndarray) -> pa.Array:
        day, tod = np.divmod(seconds, 86_400)
        return pc.binary_join_element_wise(self.dates.take(pa.array(day + self._PAD)),
                                           self.times.take(pa.array(tod)), "")
