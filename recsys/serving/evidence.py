"""The minimum evidence every engine item of a list must clear (issue #16 item 12), judged by
``finish`` after the business rules, per placement (``Options.min_score_share``,
``Options.max_p_value``):

- share: an engine item (rule, co-purchase neighbour, also-viewed neighbour) scores at least
  ``min_score_share`` of the list's best engine item;
- above chance and significant: a co-purchase item (rule or neighbour) was bought with the
  seed(s) more often than chance (lift above 1), and, with ``max_p_value`` below 1,
  significantly so, on exact counts: the one-sided Fisher test (the miner's,
  ``recsys.rules.significance``) of its co-purchase count with a seed, given the orders
  holding each and all orders: P[X >= k], X ~ Hypergeom(orders, n(item), n(seed)), at most
  ``max_p_value``. A rule is tested on its own counts (its antecedent set
  as the seed). A cart item needs this with one of the cart's products: its count with each is
  read from the neighbour tables (either product's row: the count is symmetric); a product in
  neither's row has no evidence with it. Also-viewed items count views, not orders: only the
  share applies to them.

What fails is left out and counted as ``weak_evidence``; pins, best sellers, session and
content items are not judged here (they say what they are in ``reason.source``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol, TypeVar

import numpy as np
from numba import njit

from recsys.models.neighbours import Neighbours
from recsys.rules.significance import p_threshold, upper_tail
from recsys.serving.index import ServingIndex

__all__ = ["clear_evidence", "co_purchase_p_values", "pair_counts"]

_ENGINE = frozenset({"rule", "bought_together", "also_viewed"})  # the engine's items
_CO_PURCHASE = frozenset({"rule", "bought_together"})


class Scored(Protocol):
    """What is judged of a list's candidate (``recsys.serving.finish.Candidate``)."""

    product_id: str
    score: float
    source: str
    evidence: dict[str, Any]


C = TypeVar("C", bound=Scored)


def clear_evidence(index: ServingIndex, kept: list[C], seeds: Iterable[str], *,
                   min_score_share: float, max_p_value: float,
                   counts: dict[str, int]) -> list[C]:
    """``kept`` without the engine items under the minimum evidence (counted in ``counts``
    as ``weak_evidence``), in the same order; 0 and 1 turn the share and the test off."""
    engine = [c for c in kept if c.source in _ENGINE]
    if not engine or (min_score_share <= 0 and max_p_value >= 1):
        return kept
    floor = min_score_share * max(c.score for c in engine)
    weak: set[int] = set()
    tested: list[C] = []
    for c in engine:
        if c.score < floor or c.evidence.get("lift", 2.0) <= 1.0:
            weak.add(id(c))
        elif c.source in _CO_PURCHASE:
            tested.append(c)
    if tested and index.orders is not None:  # without order counts only the share is judged
        p_values = co_purchase_p_values(index, tested, seeds)
        for c, p in zip(tested, p_values.tolist(), strict=True):
            if p >= 1.0 or p > p_threshold(max_p_value):  # 1: not above chance with any seed
                weak.add(id(c))
    if not weak:
        return kept
    counts["weak_evidence"] = len(weak)
    return [c for c in kept if id(c) not in weak]


def co_purchase_p_values(index: ServingIndex, candidates: Sequence[Scored],
                         seeds: Iterable[str]) -> np.ndarray:
    """Per candidate, the smallest one-sided Fisher p-value of its co-purchases with one of
    the ``seeds`` (a rule: with its antecedent set); 1 where there is no evidence above chance
    (lift <= 1 or no count with any seed) or no order counts in the artifact. One pass over
    the candidates here, the arithmetic compiled (``_p_values``): a list request pays it."""
    orders = index.orders
    if orders is None or not candidates:
        return np.ones(len(candidates))
    code_of = index.code_of
    n = len(candidates)
    codes = np.empty(n, np.int64)
    k = np.zeros(n, np.int64)  # a rule's count(A + c); 0 for a neighbour
    confidence = np.zeros(n)
    is_rule = np.zeros(n, np.bool_)
    for i, c in enumerate(candidates):
        codes[i] = code_of[c.product_id]
        if c.source == "rule":
            is_rule[i] = True
            k[i] = int(c.evidence.get("co_purchases", 0))
            confidence[i] = float(c.evidence.get("confidence", 0.0))
    n_a = np.rint(k / np.maximum(confidence, 1e-12)).astype(np.int64)  # n(A) = k / confidence
    seed_codes = np.array([code_of[p] for p in dict.fromkeys(seeds) if p in code_of], np.int64)
    e_ids, e_support = _table(index.bought_together)
    k_ids, k_support = _table(index.bought_together_knn)
    return _p_values(codes, is_rule, k, confidence, n_a, seed_codes, e_ids, e_support, k_ids,
                     k_support, orders.per_product, orders.total)


@njit(cache=True, nogil=True)
def _p_values(codes: np.ndarray, is_rule: np.ndarray, k: np.ndarray, confidence: np.ndarray,
              n_a: np.ndarray, seeds: np.ndarray, e_ids: np.ndarray, e_support: np.ndarray,
              k_ids: np.ndarray, k_support: np.ndarray, per_product: np.ndarray,
              total: int) -> np.ndarray:
    """A rule on its own counts (k = count(A + c), n(A), n(c); each at least k), a neighbour
    by ``_best_p_values`` with the seeds; 1 where not above chance."""
    out = np.ones(len(codes))
    pairs = np.flatnonzero(~is_rule)
    if len(pairs) and len(seeds):
        out[pairs] = _best_p_values(seeds, codes[pairs], e_ids, e_support, k_ids, k_support,
                                    per_product, total)
    for i in np.flatnonzero(is_rule):
        n_c = int(per_product[codes[i]])
        if k[i] > 0 and confidence[i] > 0 and k[i] * total > n_a[i] * n_c:
            out[i] = upper_tail(k[i], total, max(n_c, k[i]), max(n_a[i], k[i]))
    return out


_NO_TABLE = (np.zeros((0, 0), np.int32), np.zeros((0, 0), np.int64))


def _table(table: Neighbours | None) -> tuple[np.ndarray, np.ndarray]:
    return _NO_TABLE if table is None else (np.asarray(table.ids), np.asarray(table.support))


def pair_counts(index: ServingIndex, seeds: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Orders holding both, (seeds, items), as the floor reads them (``_pair_count``)."""
    e_ids, e_support = _table(index.bought_together)
    k_ids, k_support = _table(index.bought_together_knn)
    return np.array([[_pair_count(int(s), int(i), e_ids, e_support, k_ids, k_support)
                      for i in items.tolist()] for s in seeds.tolist()], dtype=np.int64)


@njit(cache=True, nogil=True)
def _pair_count(seed: int, item: int, e_ids: np.ndarray, e_support: np.ndarray,
                k_ids: np.ndarray, k_support: np.ndarray) -> int:
    """Orders holding both products, from the co-purchase neighbour tables (EASE and item-kNN
    support is the exact co-occurrence count): found in either product's row of either
    table; 0 where none lists the other."""
    for ids, support in ((e_ids, e_support), (k_ids, k_support)):
        if ids.shape[0] == 0:
            continue
        if seed >= ids.shape[0] or item >= ids.shape[0]:
            raise ValueError("evidence: a product code is outside the neighbour tables")
        for a, b in ((seed, item), (item, seed)):
            for j in range(ids.shape[1]):
                if ids[a, j] == b:
                    return int(support[a, j])
    return 0


@njit(cache=True, nogil=True)
def _best_p_values(seeds: np.ndarray, items: np.ndarray, e_ids: np.ndarray,
                   e_support: np.ndarray, k_ids: np.ndarray, k_support: np.ndarray,
                   per_product: np.ndarray, total: int) -> np.ndarray:
    """Per item, the smallest Fisher p-value of its count with a seed bought together more
    often than chance (1: with none). Product counts are at least the pair's count (the rules
    job counts a product under its ``min_count`` as ``min_count``)."""
    out = np.ones(len(items))
    for i in range(len(items)):
        for seed in seeds:
            count = _pair_count(seed, items[i], e_ids, e_support, k_ids, k_support)
            n_item = max(int(per_product[items[i]]), count)
            n_seed = max(int(per_product[seed]), count)
            if count > 0 and count * total > n_item * n_seed:
                out[i] = min(out[i], upper_tail(count, total, n_item, n_seed))
    return out
