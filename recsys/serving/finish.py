"""Every list's last step, ``finish``: caller exclusions, blocked products and rules, stock
and active flags, the category filter, the minimum evidence of engine items
(``recsys.serving.evidence``), boosts and buries, a per-category cap for diversity, a fill
from best sellers (the seed's category first, then global) so that a list is never empty
unless the catalogue is, and finally pins at fixed positions. ``applied`` names every
rule that changed the list; ``fallback`` names the best-seller list used to fill it, if any.
``finish_pool`` gives the same answer for candidates held as arrays (``Pool``), building
only those that can be shown.

Also the types every ranker shares: the request's ``Options``, the merchandisers'
``Decisions``, a ``Candidate`` and the ``Result``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

import numpy as np
from numba import njit

from recsys.serving.evidence import clear_evidence
from recsys.serving.index import ServingIndex

__all__ = ["Options", "Decisions", "Candidate", "Result", "Pool", "finish", "finish_pool", "candidate_limit"]

@dataclass(frozen=True)
class Options:
    """The common query options of list endpoints."""

    k: int = 10
    category: str | None = None
    exclude: frozenset[str] = frozenset()
    in_stock_only: bool = True
    rank_by: Literal["score", "value"] = "score"
    # the minimum evidence (``recsys.serving.evidence``; 0 and 1 = off); ``fill``: a short
    # list is filled from best sellers
    min_score_share: float = 0.0
    max_p_value: float = 1.0
    fill: bool = True


@dataclass(frozen=True)
class Decisions:
    """Merchandiser decisions in force (keyed by product ids, so they survive retraining)."""

    blocked_products: frozenset[str] = frozenset()
    blocked_rules: frozenset[str] = frozenset()
    pins: dict[str, tuple[tuple[str, int], ...]] = field(default_factory=dict)  # seed -> (id, pos)
    boosts: dict[str, float] = field(default_factory=dict)  # product -> factor (<1 buries)
    category_cap: int = 0  # at most this many items per category; 0 = no cap
    # customers in these RFM segments get due replenishment, then best sellers, then ALS
    best_sellers_first: frozenset[str] = frozenset()


@dataclass
class Candidate:
    product_id: str
    score: float
    source: str
    evidence: dict[str, Any]
    tier: int = 0  # lower tiers rank first (own repeat purchases before ALS)
    rule_key: str | None = None


@dataclass
class Result:
    items: list[dict[str, Any]]
    fallback: str | None
    applied: list[str]


class Pool(NamedTuple):
    """A list's candidates as arrays, one row each, made ``Candidate``s by ``build`` (rows
    -> candidates, in that order) only where they can be shown (``finish_pool``). Every row
    is a known product (``codes``) with no rule (``Candidate.rule_key`` None); ``tiers`` as
    ``Candidate.tier``; ``judged``: the engine items the evidence floor judges on their
    share of the best alone (also-viewed neighbours: no co-purchase counts to test)."""

    codes: np.ndarray  # int64
    scores: np.ndarray  # float64
    tiers: np.ndarray  # int64
    judged: np.ndarray  # bool
    build: Callable[[list[int]], list[Candidate]]


def candidate_limit(options: Options) -> int:
    """How many candidates a list asks its sources for: enough for ``k`` after filters."""
    return 3 * options.k + len(options.exclude) + 10


def _in_category(index: ServingIndex, product_id: str, root: str) -> bool:
    category = index.categories.get(product_id)
    return category is not None and (category == root or category.startswith(root + " > "))


def finish(index: ServingIndex, candidates: Iterable[Candidate], options: Options,
           decisions: Decisions, *, seeds: Iterable[str] = (), fallback_category: str | None = None,
           never: frozenset[str] = frozenset(),
           prefiltered: dict[str, int] | None = None) -> Result:
    """Apply exclusions, business rules, pins and fallbacks; return the final list.
    ``prefiltered``: candidates the caller already left out, by reason (for ``applied``);
    ``options.fill=False``: no best sellers fill a short list."""
    applied: list[str] = []
    counts: dict[str, int] = dict(prefiltered or {})
    excluded = options.exclude | never
    seen: set[str] = set()
    kept: list[Candidate] = []
    # a product listed by several sources keeps its best-ranked listing
    for cand in sorted(candidates, key=lambda c: (c.tier, -c.score)):  # a few hundred at most
        pid = cand.product_id
        if pid in seen or pid in excluded:
            continue
        seen.add(pid)
        reason = None
        if pid in decisions.blocked_products:
            reason = "blocked_product"
        elif cand.rule_key is not None and cand.rule_key in decisions.blocked_rules:
            reason = "blocked_rule"
        elif options.in_stock_only and pid not in index.available:
            reason = "out_of_stock_or_inactive"
        elif options.category and not _in_category(index, pid, options.category):
            reason = "category_filter"
        if reason:
            counts[reason] = counts.get(reason, 0) + 1
            continue
        kept.append(cand)
    seeds = list(seeds)
    kept = clear_evidence(index, kept, seeds, min_score_share=options.min_score_share,
                          max_p_value=options.max_p_value, counts=counts)
    for reason, n in counts.items():
        applied.append(f"{reason}:{n}")
    if decisions.boosts:
        boosted = [c for c in kept if c.product_id in decisions.boosts]
        for cand in boosted:
            factor = decisions.boosts[cand.product_id]
            cand.score *= factor
            applied.append(f"{'boost' if factor >= 1 else 'bury'}:{cand.product_id}")
    if options.rank_by == "value":
        for cand in kept:
            cand.evidence["expected_value"] = round(cand.score * index.value(cand.product_id), 4)
        kept.sort(key=lambda c: (c.tier, -c.evidence["expected_value"]))
    elif decisions.boosts:  # else kept is in this order already
        kept.sort(key=lambda c: (c.tier, -c.score))
    if decisions.category_cap:
        per_category: dict[str, int] = {}
        capped = []
        for cand in kept:
            cat = index.categories.get(cand.product_id, "")
            if per_category.get(cat, 0) >= decisions.category_cap:
                continue
            per_category[cat] = per_category.get(cat, 0) + 1
            capped.append(cand)
        if len(capped) < len(kept):
            applied.append(f"category_cap:{len(kept) - len(capped)}")
        kept = capped
    items = kept[: options.k]
    filled: dict[int, str] = {}  # fill candidate -> the best-seller list it came from
    if len(items) < options.k and options.fill:
        # fill from best sellers: the requested category, the seed's category, then global
        have = {c.product_id for c in items} | excluded | decisions.blocked_products
        scopes: list[tuple[str | None, str]] = []
        if options.category:
            scopes.append((options.category, "category_best_sellers"))
        if fallback_category:
            parts = fallback_category.split(" > ")
            scopes += [(" > ".join(parts[:d]), "category_best_sellers")
                       for d in range(len(parts), 0, -1)]
        scopes.append((None, "global_best_sellers"))
        in_list = Counter(index.categories.get(c.product_id, "") for c in items)
        for scope, name in scopes:
            # the whole stored list (top_k): the filters below may skip many of them
            for pid, orders in index.best_sellers(scope, len(index.ids),
                                                  exclude=frozenset(have),
                                                  in_stock_only=options.in_stock_only):
                if len(items) == options.k:
                    break
                if options.category and not _in_category(index, pid, options.category):
                    continue
                cat = index.categories.get(pid, "")
                if decisions.category_cap and in_list[cat] >= decisions.category_cap:
                    continue
                in_list[cat] += 1
                items.append(Candidate(pid, float(orders), "popular",
                                       {"orders": orders, "scope": scope or "global"}))
                filled[id(items[-1])] = name
                have.add(pid)
            if len(items) == options.k:
                break
    # Pins: a merchandiser's product at a fixed position for a seed product, placed once the
    # list is filled (a short engine list must not move a pin up).
    for seed in seeds:
        for pid, position in decisions.pins.get(seed, ()):
            if position > options.k or pid in excluded or pid in decisions.blocked_products or (
                    options.in_stock_only and pid not in index.available) or (
                    options.category and not _in_category(index, pid, options.category)):
                continue
            items = [c for c in items if c.product_id != pid]
            slot = min(max(position, 1), len(items) + 1) - 1
            items.insert(slot, Candidate(pid, 0.0, "pinned", {"seed": seed, "position": position}))
            applied.append(f"pinned:{pid}@{position}")
    items = items[: options.k]
    fallback = next((filled[id(c)] for c in items if id(c) in filled), None)
    return Result(items=[_render(index, c) for c in items], fallback=fallback, applied=applied)


def _render(index: ServingIndex, cand: Candidate) -> dict[str, Any]:
    item = index.describe(cand.product_id)
    item["score"] = round(float(cand.score), 6)
    item["reason"] = {"source": cand.source, "evidence": cand.evidence}
    return item


_REASONS = ("blocked_product", "out_of_stock_or_inactive", "category_filter")  # in its order


def finish_pool(index: ServingIndex, pool: Pool, options: Options, decisions: Decisions, *,
                seeds: Iterable[str] = (), fallback_category: str | None = None,
                never: frozenset[str] = frozenset()) -> Result:
    """``finish`` over every candidate of ``pool``, the same answer to the byte, building
    few of them: its loop (each product once, in rank order; exclusions; the reasons, counted
    in the order it meets them) and the evidence floor run here over the arrays
    (``_sift``), and only the candidates still in the running are built: the first ``k``
    left, or all of them when boosts, a category cap or ranking by value may reorder them
    (and name or count the rest in ``applied``)."""
    seeds = list(seeds)
    codes = pool.codes
    outside = (np.array([not _in_category(index, index.ids[c], options.category)
                         for c in codes.tolist()], dtype=np.bool_) if options.category
               else np.zeros(len(codes), np.bool_))
    judge = options.min_score_share > 0 or options.max_p_value < 1
    kept, count, first, weak = _sift(
        codes, pool.scores, pool.tiers, pool.judged, _sorted_codes(index, options.exclude | never),
        _sorted_codes(index, decisions.blocked_products), index.unavailable_mask,
        options.in_stock_only, outside, judge, options.min_score_share)
    met = sorted((at, r) for r, (at, n) in enumerate(zip(first.tolist(), count.tolist(),
                                                          strict=True)) if n)
    counts = {_REASONS[r]: int(count[r]) for _, r in met}
    if weak:
        counts["weak_evidence"] = int(weak)
    reorder = decisions.boosts or decisions.category_cap or options.rank_by == "value"
    rows = kept.tolist() if reorder else kept[:options.k].tolist()
    # finish meets nothing more to leave out: what it counts is ``counts``, in that order
    return finish(index, pool.build(rows), options, decisions, seeds=seeds,
                  fallback_category=fallback_category, never=never, prefiltered=counts)


def _sorted_codes(index: ServingIndex, product_ids: frozenset[str]) -> np.ndarray:
    """The codes of the products the index knows, ascending, once each."""
    if not product_ids:
        return _NO_CODES
    code_of = index.code_of
    return np.array(sorted({code_of[p] for p in product_ids if p in code_of}), np.int64)


_NO_CODES = np.zeros(0, np.int64)


@njit(cache=True, nogil=True)
def _sift(codes: np.ndarray, scores: np.ndarray, tiers: np.ndarray, judged: np.ndarray,
          excluded: np.ndarray, blocked: np.ndarray, unavailable: np.ndarray,
          in_stock_only: bool, outside: np.ndarray, judge: bool, share: float
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """``finish``'s loop and ``clear_evidence`` over a pool's arrays. Rows in ``finish``'s
    order (tier, then score descending, ties in row order), each product at its first row,
    ``excluded`` codes (sorted) skipped; a row of a ``blocked`` code (sorted), of an
    ``unavailable`` one (with ``in_stock_only``) or ``outside`` the category is left out
    for the first of these reasons; then the ``judged`` rows under ``share`` of the best
    judged row left (with ``judge``) are weak. Returns the rows left in order, the count of
    each reason (``_REASONS``' order), the rank where each was first met (n: never) and the
    number of weak rows."""
    n = len(codes)
    order = np.argsort(-scores, kind="mergesort")
    order = order[np.argsort(tiers[order], kind="mergesort")]
    rank = np.empty(n, np.int64)
    rank[order] = np.arange(n)
    # each product's first row in that order
    first_row = np.zeros(n, np.bool_)
    by_code = np.argsort(codes, kind="mergesort")
    g = 0
    while g < n:
        best, e = by_code[g], g + 1
        while e < n and codes[by_code[e]] == codes[by_code[g]]:
            if rank[by_code[e]] < rank[best]:
                best = by_code[e]
            e += 1
        first_row[best] = True
        g = e
    count = np.zeros(3, np.int64)
    first = np.full(3, n, np.int64)
    kept = np.empty(n, np.int64)
    m = 0
    for j in range(n):
        r = order[j]
        c = codes[r]
        if not first_row[r]:
            continue
        at = np.searchsorted(excluded, c)
        if at < len(excluded) and excluded[at] == c:
            continue
        at = np.searchsorted(blocked, c)
        reason = -1
        if at < len(blocked) and blocked[at] == c:
            reason = 0
        elif in_stock_only and unavailable[c]:
            reason = 1
        elif outside[r]:
            reason = 2
        if reason >= 0:
            count[reason] += 1
            first[reason] = min(first[reason], j)
            continue
        kept[m] = r
        m += 1
    kept = kept[:m]
    weak = 0
    if judge:
        peak, any_judged = 0.0, False
        for r in kept:
            if judged[r]:
                peak = scores[r] if not any_judged else max(peak, scores[r])
                any_judged = True
        if any_judged:
            floor = share * peak
            strong = np.ones(m, np.bool_)
            for i in range(m):
                if judged[kept[i]] and scores[kept[i]] < floor:
                    strong[i] = False
                    weak += 1
            kept = kept[strong]
    return kept, count, first, weak
