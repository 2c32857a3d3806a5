"""One-sided Fisher exact test for rules, compiled: P[X >= k] for X ~ Hypergeom(N, K, n).

For a rule A -> C: N orders, K = count(C), n = count(A), k = count(A u C). The tail is summed
from its largest term with the pmf ratio recurrence, in log space for the first term, so
hundreds of thousands of rules take milliseconds (scipy's ``hypergeom.sf`` takes seconds).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

__all__ = ["fisher_upper_tail"]


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
def _fisher(k: np.ndarray, big_n: int, big_k: np.ndarray, n: np.ndarray) -> np.ndarray:
    out = np.empty(len(k), dtype=np.float64)
    for i in range(len(k)):
        lo = max(0, n[i] + big_k[i] - big_n)
        hi = min(n[i], big_k[i])
        if k[i] <= lo:
            out[i] = 1.0
            continue
        if k[i] > hi:
            out[i] = 0.0
            continue
        mean = n[i] * big_k[i] / big_n
        if k[i] >= mean:  # the upper tail falls away from k
            out[i] = min(1.0, _tail_sum(k[i], hi, 1, big_n, big_k[i], n[i]))
        else:  # 1 - lower tail, which falls away from k - 1
            out[i] = max(0.0, 1.0 - _tail_sum(k[i] - 1, lo, -1, big_n, big_k[i], n[i]))
    return out


def fisher_upper_tail(k: np.ndarray, n_orders: int, consequent: np.ndarray,
                      antecedent: np.ndarray) -> np.ndarray:
    """P[X >= k] for X ~ Hypergeom(N=n_orders, K=consequent, n=antecedent), element-wise."""
    return _fisher(np.asarray(k, np.int64), int(n_orders), np.asarray(consequent, np.int64),
                   np.asarray(antecedent, np.int64))
