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

from recsys.rules.significance import fisher_upper_tail
from recsys.serving.index import ServingIndex

__all__ = ["EVIDENCE_SOURCES", "clear_evidence", "co_purchase_p_values", "pair_counts"]

EVIDENCE_SOURCES = frozenset({"rule", "bought_together", "also_viewed"})  # the engine's items
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
    engine = [c for c in kept if c.source in EVIDENCE_SOURCES]
    if not engine or (min_score_share <= 0 and max_p_value >= 1):
        return kept
    floor = min_score_share * max(c.score for c in engine)
    weak = {id(c) for c in engine if c.score < floor or c.evidence.get("lift", 2.0) <= 1.0}
    tested = [c for c in engine if c.source in _CO_PURCHASE and id(c) not in weak]
    if tested and index.orders is not None:  # without order counts only the share is judged
        p_values = co_purchase_p_values(index, tested, list(seeds))
        weak |= {id(c) for c, p in zip(tested, p_values.tolist(), strict=True)
                 if p >= 1.0 or p > max_p_value}  # 1: not above chance with any seed
    if weak:
        counts["weak_evidence"] = len(weak)
    return [c for c in kept if id(c) not in weak]


def co_purchase_p_values(index: ServingIndex, candidates: Sequence[Scored],
                         seeds: list[str]) -> np.ndarray:
    """Per candidate, the smallest one-sided Fisher p-value of its co-purchases with one of
    the ``seeds`` (a rule: with its antecedent set); 1 where there is no evidence (lift <= 1,
    no count, or no order counts in the artifact)."""
    out = np.ones(len(candidates))
    orders = index.orders
    if orders is None or not candidates:
        return out
    total = orders.total
    seed_codes = np.asarray(index.codes(dict.fromkeys(seeds)), dtype=np.int64)
    rules = [i for i, c in enumerate(candidates) if c.source == "rule"]
    pairs = [i for i, c in enumerate(candidates) if c.source != "rule"]
    if rules:  # the rule's own counts: k = count(A + c), n(A) = k / confidence, n(c)
        k = np.array([int(candidates[i].evidence.get("co_purchases", 0)) for i in rules])
        confidence = np.array([float(candidates[i].evidence.get("confidence", 0.0))
                               for i in rules])
        n_a = np.where(confidence > 0, np.rint(k / np.maximum(confidence, 1e-12)), 0)
        n_c = orders.per_product[[index.code_of[candidates[i].product_id] for i in rules]]
        out[rules] = _tested(k, total, n_c, n_a)
    if pairs and len(seed_codes):
        items = np.array([index.code_of[candidates[i].product_id] for i in pairs],
                         dtype=np.int64)
        k = pair_counts(index, seed_codes, items)  # (seeds, items)
        n_seed = np.broadcast_to(orders.per_product[seed_codes][:, None], k.shape)
        n_item = np.broadcast_to(orders.per_product[items][None, :], k.shape)
        p = _tested(k.ravel(), total, n_item.ravel(), n_seed.ravel()).reshape(k.shape)
        out[pairs] = p.min(axis=0)
    return out


def _tested(k: np.ndarray, total: int, n_item: np.ndarray, n_seed: np.ndarray) -> np.ndarray:
    """Fisher's P[X >= k] where k is above chance (lift > 1), else 1. Product counts are at
    least k (the rules job counts a product under its ``min_count`` as ``min_count``)."""
    k = np.asarray(k, dtype=np.int64)
    n_item = np.maximum(np.asarray(n_item, dtype=np.int64), k)
    n_seed = np.maximum(np.asarray(n_seed, dtype=np.int64), k)
    above = (k > 0) & (k * total > n_item * n_seed)
    p = np.ones(len(k))
    if above.any():
        p[above] = fisher_upper_tail(k[above], total, n_item[above], n_seed[above])
    return p


def pair_counts(index: ServingIndex, seeds: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Orders holding both, (seeds, items), from the co-purchase neighbour tables (EASE and
    item-kNN support is the exact co-occurrence count): found in the seed's row or the item's;
    0 where neither lists the other."""
    out = np.zeros((len(seeds), len(items)), dtype=np.int64)
    for table in (index.bought_together, index.bought_together_knn):
        if table is None:
            continue
        ids, support = np.asarray(table.ids), np.asarray(table.support)
        # seed rows: (seeds, k) against items
        match = ids[seeds][:, :, None] == items[None, None, :]
        out = np.maximum(out, (match * support[seeds][:, :, None]).max(axis=1, initial=0))
        # item rows: (items, k) against seeds
        match = ids[items][:, :, None] == seeds[None, None, :]
        out = np.maximum(out, (match * support[items][:, :, None]).max(axis=1, initial=0).T)
    return out
