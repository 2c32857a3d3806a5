"""Redundancy pruning: a rule A -> c is redundant when a more general rule A' -> c
(A' a proper, non-empty subset of A, same consequent) has at least its confidence.

Works on the full candidate set (every single-consequent split of every frequent itemset),
level by level: best(A -> c) = max over A minus one item of max(conf, best). Confidences are
compared exactly as fractions of integer counts.
"""

from __future__ import annotations

import numpy as np

from recsys.rules.itemsets import row_keys

__all__ = ["redundant_mask"]


def redundant_mask(ant: np.ndarray, con: np.ndarray, count: np.ndarray, ant_count: np.ndarray,
                   n_items: int) -> np.ndarray:
    """True for redundant candidates. ``ant`` (m, w) sorted codes padded with -1, ``con``
    (m, w) with the single consequent in column 0, ``count`` = count(A u c),
    ``ant_count`` = count(A)."""
    bits = max(1, int(n_items).bit_length())
    k_ant = (ant >= 0).sum(axis=1)
    redundant = np.zeros(len(ant), dtype=bool)
    best_num = np.zeros(len(ant), dtype=np.int64)  # best general confidence as num / den
    best_den = np.ones(len(ant), dtype=np.int64)
    previous: tuple[np.ndarray, np.ndarray] | None = None  # (sorted keys, row ids) of level k-1
    for k in range(1, int(k_ant.max(initial=0)) + 1):  # a loop over antecedent lengths
        rows = np.flatnonzero(k_ant == k)
        if k >= 2 and previous is not None and len(rows):
            keys, ids = previous
            for j in range(k):  # drop item j of the antecedent
                general = np.delete(ant[rows, :k], j, axis=1)
                query = row_keys(np.column_stack([general, con[rows, 0]]), bits)
                pos = np.minimum(np.searchsorted(keys, query), len(keys) - 1)
                found = keys[pos] == query  # always, as subsets of frequent sets are frequent
                g = ids[pos[found]]
                r = rows[found]
                # candidate = max(conf(g), best(g)), then best(r) = max(best(r), candidate)
                num = np.where(count[g] * best_den[g] >= best_num[g] * ant_count[g],
                               count[g], best_num[g])
                den = np.where(count[g] * best_den[g] >= best_num[g] * ant_count[g],
                               ant_count[g], best_den[g])
                better = num * best_den[r] > best_num[r] * den
                best_num[r] = np.where(better, num, best_num[r])
                best_den[r] = np.where(better, den, best_den[r])
            redundant[rows] = best_num[rows] * ant_count[rows] >= count[rows] * best_den[rows]
        if len(rows):
            keys = row_keys(np.column_stack([ant[rows, :k], con[rows, 0]]), bits)
            order = np.argsort(keys)
            previous = (keys[order], rows[order])
    return redundant
