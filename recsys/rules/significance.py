"""One-sided Fisher exact test for rules, compiled: P[X >= k] for X ~ Hypergeom(N, K, n).

For a rule A -> C: N orders, K = count(C), n = count(A), k = count(A u C). The tail is summed
from its largest term with the pmf ratio recurrence, in log space for the first term, so
hundreds of thousands of rules take milliseconds (scipy's ``hypergeom.sf`` takes seconds).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

__all__ = ["fisher_upper_tail", "upper_tail", "p_threshold"]

# p-values are sums of floating-point terms: one equal to a threshold in exact arithmetic (1/5
# against 0.2) can come out a few units in the last place above it.
P_VALUE_RTOL = 1e-9


@njit(cache=True, nogil=True)
def _log_pmf(k: int, big_n: int, big_k: int, n: int) -> float:
    return (math.lgamma(big_k + 1) - math.lgamma(k + 1) - math.lgamma(big_k - k + 1)
            + math.lgamma(big_n - big_k + 1) - math.lgamma(n - k + 1)
            - math.lgamma(big_n - big_k - n + k + 1)
            - math.lgamma(big_n + 1) + math.lgamma(n + 1) + math.lgamma(big_n - n + 1))


@njit(cache=True, nogil=True)
def _tail_sum(start: int, stop: int, step: int, big_n: int, big_k: int, n: int) -> float:
    """Sum of pmf(x) for x from start towards stop (inclusive) by step (+1 or -1)."""
    term = math.exp(_log_pmf(start, big_n, big_k, n))
    total = term
    x = start
    while x != stop:
        if step > 0:
            ratio = ((big_k - x) * (n - x)) / ((x + 1.0) * (big_n - big_k - n + x + 1.0))
        else:
            ratio = (x * (big_n - big_k - n + x)) / ((big_k - x + 1.0) * (n - x + 1.0))
        term *= ratio
        x += step
        total += term
        if term < total * 1e-17:
            break
    return total


@njit(cache=True, nogil=True)
def upper_tail(k: int, big_n: int, big_k: int, n: int) -> float:
    """P[X >= k] for X ~ Hypergeom(N=big_n, K=big_k, n) (compiled code calls it directly)."""
    lo = max(0, n + big_k - big_n)
    hi = min(n, big_k)
    if k <= lo:
        return 1.0
    if k > hi:
        return 0.0
    mean = n * big_k / big_n
    if k >= mean:  # the upper tail falls away from k
        return min(1.0, _tail_sum(k, hi, 1, big_n, big_k, n))
    # 1 - lower tail, which falls away from k - 1
    return max(0.0, 1.0 - _tail_sum(k - 1, lo, -1, big_n, big_k, n))


@njit(cache=True, nogil=True)
def _fisher(k: np.ndarray, big_n: int, big_k: np.ndarray, n: np.ndarray) -> np.ndarray:
    out = np.empty(len(k), dtype=np.float64)
    for i in range(len(k)):
        out[i] = upper_tail(k[i], big_n, big_k[i], n[i])
    return out


def fisher_upper_tail(k: np.ndarray, n_orders: int, consequent: np.ndarray,
                      antecedent: np.ndarray) -> np.ndarray:
    """P[X >= k] for X ~ Hypergeom(N=n_orders, K=consequent, n=antecedent), element-wise."""
    return _fisher(np.asarray(k, np.int64), int(n_orders), np.asarray(consequent, np.int64),
                   np.asarray(antecedent, np.int64))


def p_threshold(max_p: float) -> float:
    """What a computed p-value is compared with (``p <= p_threshold(max_p)``): ``max_p`` and
    the rounding a p-value on it may carry (relative ``P_VALUE_RTOL``)."""
    return max_p * (1 + P_VALUE_RTOL)
