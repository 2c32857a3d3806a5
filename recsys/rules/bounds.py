"""Bounds on what mining holds in memory, whatever the thresholds and the data.

- Itemsets: Eclat stops past ``max_itemsets`` itemsets of 3+ products; the count threshold
  then doubles and mining starts again.
- Rules: before any rule is materialised, the rules that pass every per-rule threshold are
  counted by the order count of their itemset (a histogram, from the itemset counts alone).
  Over ``max_rules``, the threshold rises to the smallest count that keeps them under the cap;
  the itemsets at that count are exactly a subset of those already mined (``at_least``).
- Served rules: at most ``max_per_antecedent`` rules per antecedent set, the most confident.

Each raise is logged as a warning and kept in the mining report, with what to set instead.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import numpy as np
import scipy.sparse as sp

from recsys.rules.itemsets import (
    CountIndex,
    FrequentItemsets,
    TooManyItemsets,
    frequent_itemsets,
    row_keys,
)

__all__ = ["bounded_itemsets", "splits", "rule_count_histogram", "count_for_cap",
           "top_per_antecedent", "RULE_BYTES"]

log = logging.getLogger(__name__)

RULE_BYTES = 300  # resident bytes per materialised rule (columns, lists, names), measured


def bounded_itemsets(x: sp.csr_matrix, min_count: int, max_len: int,
                     max_itemsets: int | None) -> tuple[FrequentItemsets, list[str]]:
    """Frequent itemsets at ``min_count`` or, past ``max_itemsets``, at the smallest doubling
    of it that fits; with the warnings saying so."""
    warnings: list[str] = []
    count = min_count
    while True:
        try:
            fi = frequent_itemsets(x, count, max_len,
                                   max_itemsets=-1 if max_itemsets is None else max_itemsets)
            return fi, warnings
        except TooManyItemsets as exc:
            message = (f"{exc} (max_itemsets); mining again at {2 * count:,} orders. Raise "
                       f"max_itemsets (about 40 bytes each) or min_count to choose yourself")
            log.warning(message)
            warnings.append(message)
            count *= 2


Split = tuple[np.ndarray, list[int], list[int], np.ndarray, np.ndarray]


def splits(fi: FrequentItemsets, index: CountIndex, multi: bool) -> Iterator[Split]:
    """Every antecedent / consequent split pattern of the itemsets of each length >= 2, as
    blocks: (itemsets (m, k), antecedent positions, consequent positions, count(A u C),
    count(A)). A loop over split patterns (at most 2^max_len), not over rules."""
    for k in range(2, fi.items.shape[1] + 1):
        sets, set_counts = fi.of_length(k)
        if not len(sets):
            continue
        masks = range(1, (1 << k) - 1) if multi else [(1 << k) - 1 - (1 << j) for j in range(k)]
        for mask in masks:
            a_pos = [j for j in range(k) if mask >> j & 1]
            c_pos = [j for j in range(k) if not mask >> j & 1]
            yield sets, a_pos, c_pos, set_counts, index.counts(sets[:, a_pos])


Passes = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def rule_count_histogram(fi: FrequentItemsets, index: CountIndex, multi: bool,
                         passes: Passes) -> np.ndarray:
    """hist[c] = rules passing ``passes(count(AC), count(A), count(C))`` whose itemset is in
    exactly c orders; memory O(orders + largest block), never O(rules)."""
    hist = np.zeros(fi.n_orders + 1, dtype=np.int64)
    for sets, _a_pos, c_pos, set_counts, c_a in splits(fi, index, multi):
        keep = passes(set_counts, c_a, index.counts(sets[:, c_pos]))
        hist += np.bincount(set_counts[keep], minlength=len(hist))[: len(hist)]
    return hist


def count_for_cap(hist: np.ndarray, min_count: int, max_rules: int) -> int:
    """The smallest count >= ``min_count`` at which at most ``max_rules`` rules remain."""
    at_least = np.cumsum(hist[::-1])[::-1]  # at_least[c] = rules in c or more orders
    fits = np.flatnonzero(at_least[min_count:] <= max_rules)
    return min_count + int(fits[0]) if len(fits) else len(hist)


def top_per_antecedent(ant: np.ndarray, con: np.ndarray, c_ac: np.ndarray, c_a: np.ndarray,
                       n_items: int, cap: int) -> np.ndarray:
    """Mask of the ``cap`` most confident rules of each antecedent set (ties: more orders,
    then the lower consequent code). ``ant``/``con``: (m, w) codes padded with -1."""
    keys = row_keys(ant + 1, max(1, int(n_items + 1).bit_length()))  # +1: padding becomes 0
    keys = np.unique(keys, return_inverse=True)[1].ravel()  # group ids (keys may be bytes)
    confidence = c_ac / np.maximum(c_a, 1)
    order = np.lexsort((con[:, 0], -c_ac, -confidence, keys))
    sorted_keys = keys[order]
    starts = np.ones(len(order), dtype=bool)
    starts[1:] = sorted_keys[1:] != sorted_keys[:-1]
    group_start = np.maximum.accumulate(np.where(starts, np.arange(len(order)), 0))
    keep = np.zeros(len(order), dtype=bool)
    keep[order] = np.arange(len(order)) - group_start < cap
    return keep
