"""A/B tests: deterministic arm assignment and seeded, vectorised bootstrap intervals.

Assignment: u = the first 8 bytes of sha256("<salt>:<unit id>") as a number in [0, 1); the
arms, sorted by name, take consecutive slices of [0, 1) in proportion to their shares. The same
unit, salt and split always give the same arm, in any process and on any machine; a new salt
re-draws everyone; the order in which the split lists its arms does not matter. Nothing is
stored: the analysis recomputes each event's arm from its unit id.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import special

from recsys.errors import ConfigError

__all__ = [
    "unit_id","assign_arm", "assign_arms", "unit_ids", "bootstrap_ratio", "relative_uplift", "Interval"]

_SCALE = float(2**64)


def _bounds(split: Mapping[str, float]) -> tuple[list[str], np.ndarray]:
    arms = sorted(split)
    shares = np.array([float(split[a]) for a in arms], dtype=np.float64)
    if not arms or not np.all(np.isfinite(shares)) or (shares < 0).any() or shares.sum() <= 0:
        raise ConfigError(f"experiment split {dict(split)!r} needs at least one arm and shares "
                          ">= 0, not all 0")
    upper = np.cumsum(shares) / shares.sum()
    upper[-1] = 1.0
    return arms, upper


def _unit_hash(salt: str, unit_id: str) -> float:
    digest = hashlib.sha256(f"{salt}:{unit_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / _SCALE


def assign_arm(unit_id: str, *, salt: str, split: dict[str, float]) -> str:
    """The experiment arm of a customer or session id (see the module docstring)."""
    arms, upper = _bounds(split)
    return arms[int(np.searchsorted(upper, _unit_hash(salt, str(unit_id)), side="right"))]


def assign_arms(unit_ids: Iterable[str] | np.ndarray | pd.Series, *, salt: str,
                split: dict[str, float]) -> np.ndarray:
    """``assign_arm`` for many ids at once (hashed once per distinct id)."""
    arms, upper = _bounds(split)
    ids = pd.Series(list(unit_ids) if not isinstance(unit_ids, np.ndarray | pd.Series)
                    else unit_ids, dtype=object)
    codes, uniques = pd.factorize(ids)
    # sha256 has no vectorised form; one call per distinct unit id.
    u = np.fromiter((_unit_hash(salt, str(v)) for v in uniques), dtype=np.float64,
                    count=len(uniques))
    arm_codes = np.searchsorted(upper, u, side="right")
    return np.asarray(arms, dtype=object)[arm_codes][codes]


def unit_id(customer_id: str | None, session_id: str | None, unit: str) -> str | None:
    """``unit_ids`` for one request (the API): None when neither id is given."""
    cust = f"c:{customer_id}" if customer_id else None
    sess = f"s:{session_id}" if session_id else None
    return (cust or sess) if unit == "customer" else (sess or cust)


def unit_ids(customer_id: pd.Series, session_id: pd.Series, unit: str) -> pd.Series:
    """The randomisation unit of each row: for ``unit="customer"`` the customer id, else the
    session id (a guest); for ``"session"`` the session id, else the customer id. Prefixed
    ("c:" / "s:") so a customer and a session with the same id are different units."""
    cust = "c:" + customer_id.astype("string")
    sess = "s:" + session_id.astype("string")
    first, second = (cust, sess) if unit == "customer" else (sess, cust)
    return first.fillna(second)


@dataclass(frozen=True)
class Interval:
    """An estimate with its interval and the resampled statistics behind it."""

    estimate: float
    low: float
    high: float
    draws: np.ndarray  # (samples,) statistic on each resample; NaN where undefined
    method: str = "bootstrap"  # or "normal" (see bootstrap_ratio)


def bootstrap_ratio(numerator: np.ndarray, denominator: np.ndarray, *, samples: int = 1000,
                    confidence: float = 0.95, seed: int | Sequence[int] = 0,
                    max_units: int | None = None,
                    max_cells: int = 20_000_000) -> Interval:
    """sum(numerator) / sum(denominator) with a percentile bootstrap interval, resampling the
    rows (units) with replacement: a cluster bootstrap when each row sums one unit's events.

    Vectorised: draws (chunk x n) row indices at a time, at most ``max_cells`` per chunk. The
    same seed, data and samples give the same interval. Above ``max_units`` rows the
    resampling costs too much (samples x n) and the draws come from the normal approximation
    the bootstrap converges to: the delta-method standard error of a ratio of cluster sums,
    se = sqrt(sum((y_i - R x_i)^2) / (n (n - 1))) / mean(x).
    """
    num = np.asarray(numerator, dtype=np.float64)
    den = np.asarray(denominator, dtype=np.float64)
    n = len(num)
    total = float(den.sum())
    estimate = float(num.sum()) / total if total > 0 else float("nan")
    rng = np.random.default_rng(seed)
    if n == 0:
        nan = float("nan")
        return Interval(nan, nan, nan, np.full(samples, np.nan))
    if max_units is not None and n > max_units and math.isfinite(estimate):
        residual = num - estimate * den
        se = math.sqrt(float(residual @ residual) / (n * (n - 1))) / (total / n)
        draws = estimate + se * rng.standard_normal(samples)
        z = float(special.ndtri(0.5 + confidence / 2))
        return Interval(estimate, estimate - z * se, estimate + z * se, draws, "normal")
    draws = np.empty(samples, dtype=np.float64)
    chunk = max(1, min(samples, max_cells // n))
    for start in range(0, samples, chunk):  # a loop over chunks of resamples
        size = min(chunk, samples - start)
        idx = rng.integers(0, n, size=(size, n))
        top = num[idx].sum(axis=1)
        bottom = den[idx].sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            draws[start:start + size] = np.where(bottom > 0, top / np.where(bottom > 0, bottom, 1),
                                                 np.nan)
    low, high = _percentiles(draws, confidence)
    return Interval(estimate, low, high, draws)


def _percentiles(draws: np.ndarray, confidence: float) -> tuple[float, float]:
    finite = draws[np.isfinite(draws)]
    if len(finite) == 0:
        return float("nan"), float("nan")
    tail = (1.0 - confidence) / 2 * 100
    low, high = np.percentile(finite, [tail, 100 - tail])
    return float(low), float(high)


def relative_uplift(treatment: Interval, control: Interval, *,
                    confidence: float = 0.95) -> tuple[float, float, float]:
    """treatment / control - 1 with a percentile interval from the paired bootstrap draws
    (the arms were resampled independently, so any pairing of their draws is valid)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        estimate = (treatment.estimate / control.estimate - 1.0
                    if control.estimate else float("nan"))
        ratio = treatment.draws / np.where(control.draws != 0, control.draws, np.nan) - 1.0
    low, high = _percentiles(ratio, confidence)
    return float(estimate), low, high
