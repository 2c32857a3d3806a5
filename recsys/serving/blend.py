"""The bought-together blend, compiled: one pass over a cart's neighbour rows and fired rules.

A request gathers a few hundred (product, evidence) entries: the EASE and item-kNN neighbours
of every cart product and the rules the cart fires. ``blend`` sorts them by product, sums
each table's scores, keeps each product's strongest evidence, scales, adds the rule term,
drops and counts what the business rules filter, and returns the ``limit`` best, best first
(ties: the lower product code). Written with numba because the same steps as numpy calls
cost more in call overhead than in arithmetic at this size.

Callers fill a ``BlendInput`` by name; ``blend`` unpacks it into the compiled kernel (numba
takes plain arrays and numbers) and names the kernel's results in a ``BlendOutput``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

__all__ = ["blend", "BlendInput", "BlendOutput", "NO_ROWS"]

NO_ROWS = np.zeros(0, dtype=np.int64)


class BlendInput(NamedTuple):
    """What one blend reads (see ``_kernel`` for each field); the field order is the kernel's
    argument order."""

    seeds: np.ndarray
    seed_weights: np.ndarray
    e_ids: np.ndarray
    e_scores: np.ndarray
    e_support: np.ndarray
    k_ids: np.ndarray
    k_scores: np.ndarray
    k_support: np.ndarray
    knn_weight: float
    rule_lo: np.ndarray
    rule_hi: np.ndarray
    rule_consequent: np.ndarray
    rule_confidence: np.ndarray
    rule_weight: float
    blocked_rows: np.ndarray
    pair_seed: np.ndarray
    pair_item: np.ndarray
    silent: np.ndarray
    reason_a: np.ndarray
    reason_b: np.ndarray
    limit: int


class BlendOutput(NamedTuple):
    """The ``limit`` best candidates, best first, and what was left out (see ``_kernel``)."""

    codes: np.ndarray
    scores: np.ndarray
    rule_row: np.ndarray
    rule_set: np.ndarray
    n_rules: np.ndarray
    seed: np.ndarray
    support: np.ndarray
    counts: np.ndarray


def blend(inputs: BlendInput) -> BlendOutput:
    """Score the candidates of ``inputs.seeds`` (the kernel takes the fields positionally)."""
    return BlendOutput(*_kernel(*inputs))


@njit(cache=True, nogil=True)
def _kernel(seeds: np.ndarray, seed_weights: np.ndarray, e_ids: np.ndarray,
          e_scores: np.ndarray, e_support: np.ndarray, k_ids: np.ndarray, k_scores: np.ndarray,
          k_support: np.ndarray, knn_weight: float,
          rule_lo: np.ndarray, rule_hi: np.ndarray, rule_consequent: np.ndarray,
          rule_confidence: np.ndarray, rule_weight: float, blocked_rows: np.ndarray,
          pair_seed: np.ndarray, pair_item: np.ndarray, silent: np.ndarray,
          reason_a: np.ndarray, reason_b: np.ndarray, limit: int
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                     np.ndarray, np.ndarray]:
    """Score the candidates of the ``seeds`` (product codes), each seed's neighbour scores
    times its ``seed_weights`` entry.

    ``e_*`` / ``k_*``: the EASE and item-kNN neighbour tables (k_ids may have no columns);
    rules fire from the table slices ``rule_lo[s]:rule_hi[s]`` (one per antecedent set s the
    cart holds), except ``blocked_rows`` (sorted); ``pair_seed[i]`` -> ``pair_item[i]`` are
    blocked neighbour pairs. ``silent`` products are never candidates; ``reason_a`` and
    ``reason_b`` (empty: not in force) filter candidates and are counted.

    Returns codes, scores, best rule row (-1: none), its set, rules fired, seed and support of
    the strongest neighbour evidence (of the top ``limit``), and counts: reason_a, reason_b,
    blocked rules.

    Every index is checked before it is used (numba does not): inconsistent inputs raise
    ValueError instead of reading outside an array.
    """
    n_codes = len(silent)
    if (e_scores.shape != e_ids.shape or e_support.shape != e_ids.shape
            or k_scores.shape != k_ids.shape or k_support.shape != k_ids.shape):
        raise ValueError("blend: neighbour ids, scores and support differ in shape")
    if (len(seed_weights) != len(seeds) or len(rule_hi) != len(rule_lo)
            or len(rule_confidence) != len(rule_consequent)
            or len(pair_item) != len(pair_seed)
            or (len(reason_a) > 0 and len(reason_a) != n_codes)
            or (len(reason_b) > 0 and len(reason_b) != n_codes)):
        raise ValueError("blend: array lengths disagree")
    for seed in seeds:
        if seed < 0 or (e_ids.shape[0] > 0 and seed >= e_ids.shape[0]) or (
                k_ids.shape[0] > 0 and seed >= k_ids.shape[0]):
            raise ValueError("blend: a seed code is outside the neighbour tables")
    for s in range(len(rule_lo)):
        if rule_lo[s] < 0 or rule_hi[s] < rule_lo[s] or rule_hi[s] > len(rule_consequent):
            raise ValueError("blend: a rule slice is outside the rule table")
    n_e = 0 if e_ids.shape[0] == 0 else e_ids.shape[1]
    n_k = 0 if k_ids.shape[0] == 0 else k_ids.shape[1]
    n_rules = 0
    for s in range(len(rule_lo)):
        n_rules += rule_hi[s] - rule_lo[s]
    size = len(seeds) * (n_e + n_k) + n_rules
    item = np.empty(size, np.int64)
    kind = np.empty(size, np.int8)  # 0 EASE, 1 item-kNN, 2 rule
    value = np.empty(size, np.float64)
    ref = np.empty(size, np.int64)  # seed code, or rule row
    extra = np.empty(size, np.int64)  # support, or antecedent set
    m = 0
    for si in range(len(seeds)):
        seed = seeds[si]
        for table in range(2):
            ids = e_ids if table == 0 else k_ids
            if ids.shape[0] == 0:
                continue
            width = n_e if table == 0 else n_k
            for j in range(width):
                code = ids[seed, j]
                if code >= n_codes:
                    raise ValueError("blend: a neighbour code is outside the vocabulary")
                if code < 0 or silent[code]:
                    continue
                skip = False
                for p in range(len(pair_seed)):
                    if pair_seed[p] == seed and pair_item[p] == code:
                        skip = True
                if skip:
                    continue
                item[m] = code
                kind[m] = table
                value[m] = seed_weights[si] * (e_scores[seed, j] if table == 0
                                               else k_scores[seed, j])
                ref[m] = seed
                extra[m] = e_support[seed, j] if table == 0 else k_support[seed, j]
                m += 1
    blocked = 0
    for s in range(len(rule_lo)):
        for row in range(rule_lo[s], rule_hi[s]):
            code = rule_consequent[row]
            if code < 0 or code >= n_codes:
                raise ValueError("blend: a rule consequent is outside the vocabulary")
            if silent[code]:
                continue
            if len(blocked_rows):
                at = np.searchsorted(blocked_rows, row)
                if at < len(blocked_rows) and blocked_rows[at] == row:
                    blocked += 1
                    continue
            item[m] = code
            kind[m] = 2
            value[m] = rule_confidence[row]
            ref[m] = row
            extra[m] = s
            m += 1
    order = np.argsort(item[:m], kind="mergesort")  # stable: first evidence first
    # one pass per product: sums, and the strongest evidence of each kind
    u_code = np.empty(m, np.int64)
    sums = np.zeros((2, m), np.float64)  # per table: summed neighbour scores
    best = np.full((2, m), -np.inf)  # per table: the strongest single score, its seed, support
    seed_of = np.full((2, m), -1, np.int64)
    support_of = np.zeros((2, m), np.int64)
    u_rule = np.zeros(m, np.float64)
    u_row = np.full(m, -1, np.int64)
    u_set = np.full(m, -1, np.int64)
    u_rules = np.zeros(m, np.int64)
    u = -1
    last = -1
    for i in order:
        code = item[i]
        if code != last:
            u += 1
            u_code[u] = code
            last = code
        t = kind[i]
        if t < 2:
            sums[t, u] += value[i]
            if value[i] > best[t, u]:
                best[t, u] = value[i]
                seed_of[t, u] = ref[i]
                support_of[t, u] = extra[i]
        else:
            u_rules[u] += 1
            if u_row[u] < 0 or value[i] > u_rule[u]:
                u_rule[u] = value[i]
                u_row[u] = ref[i]
                u_set[u] = extra[i]
    n = u + 1
    e_max = 0.0
    k_max = 0.0
    u_e, u_k = sums[0], sums[1]
    u_seed = np.empty(n, np.int64)
    u_support = np.empty(n, np.int64)
    for i in range(n):
        e_max = max(e_max, u_e[i])
        k_max = max(k_max, u_k[i])
        t = 0 if seed_of[0, i] >= 0 else 1  # the EASE evidence, else the item-kNN's
        u_seed[i] = seed_of[t, i]
        u_support[i] = support_of[t, i]
    score = np.empty(n, np.float64)
    keep = np.ones(n, np.bool_)
    counts = np.zeros(3, np.int64)
    counts[2] = blocked
    for i in range(n):
        score[i] = ((u_e[i] / e_max if e_max > 0 else u_e[i])
                    + knn_weight * (u_k[i] / k_max if k_max > 0 else u_k[i])
                    + rule_weight * u_rule[i])
        if len(reason_a) and reason_a[u_code[i]]:
            counts[0] += 1
            keep[i] = False
        elif len(reason_b) and reason_b[u_code[i]]:
            counts[1] += 1
            keep[i] = False
    kept = np.flatnonzero(keep)
    top = kept[np.argsort(-score[kept], kind="mergesort")][:limit]
    return (u_code[top], score[top], u_row[top], u_set[top], u_rules[top], u_seed[top],
            u_support[top], counts)
