"""Request-time ranking: candidates from the index for each kind of list, then ``finish``
(``recsys.serving.finish``: business rules, pins and fallbacks, in the order listed there).
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Mapping
from typing import Any

import numpy as np

from recsys.models.neighbours import Neighbours
from recsys.serving.also_viewed import also_viewed
from recsys.serving.blend import NO_ROWS, BlendInput, blend
from recsys.serving.finish import Candidate, Decisions, Options, Result, candidate_limit, finish
from recsys.serving.index import ServingIndex
from recsys.serving.served_rules import rule_key
from recsys.serving.session import NO_SESSION, Session, rescore

__all__ = ["Options", "Decisions", "Result", "also_viewed", "bought_together", "bundles_for",
           "cart_addons", "cart_category", "for_customer", "popular", "warm_up"]


@functools.lru_cache(maxsize=8)
def _blocked_pairs(blocked_rules: frozenset[str]) -> frozenset[tuple[str, str]]:
    """(seed, product) of every blocked single-antecedent rule: a merchandiser who rejects
    ``A->B`` does not want B offered for A by any source."""
    out = set()
    for key in blocked_rules:
        antecedent, _, consequent = key.partition("->")
        if consequent and "+" not in antecedent:
            out.add((antecedent, consequent))
    return frozenset(out)


@functools.lru_cache(maxsize=8)
def _blocked_by_antecedent(blocked_rules: frozenset[str]) -> dict[str, frozenset[str]]:
    """Blocked rule keys as antecedent key ("A+B") -> blocked consequents."""
    out: dict[str, set[str]] = {}
    for key in blocked_rules:
        antecedent, _, consequent = key.partition("->")
        if consequent:
            out.setdefault(antecedent, set()).add(consequent)
    return {a: frozenset(c) for a, c in out.items()}


_NO_MASK = np.zeros(0, dtype=bool)
_NO_TABLE = (np.zeros((0, 0), np.int32), np.zeros((0, 0), np.float32), np.zeros((0, 0), np.int64))


def _arrays(table: Neighbours | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A neighbour table's arrays (plain ndarray views of the memory maps), or empty ones."""
    if table is None:
        return _NO_TABLE
    return np.asarray(table.ids), np.asarray(table.scores), np.asarray(table.support)


def _scored_for(index: ServingIndex, codes: list[int], seed_weights: np.ndarray,
                decisions: Decisions, banned: np.ndarray, limit: int,
                reasons: dict[str, np.ndarray]) -> tuple[list[Candidate], int, dict[str, int]]:
    """The ``limit`` best bought-together candidates for a set of seed products (one
    product, or a cart).

    score = EASE sums / max + ``cart_knn_weight`` x item-kNN sums / max + ``rule_weight`` x
    the best confidence of a (not blocked) rule whose antecedent the seeds hold; each seed's
    neighbour scores count times its ``seed_weights`` entry. The reason is
    that rule when one fired, else the seed with the strongest neighbour evidence. ``banned``
    products are never candidates; those in a ``reasons`` mask are left out and counted
    (as ``finish`` would count them). Returns the candidates, how many rules merchandisers'
    blocks left out, and the counts per reason. The arithmetic is ``blend.blend``.
    """
    weights, rules = index.ranking, index.rules
    sets = rules.sets_in(np.unique(np.asarray(codes, dtype=np.int32))) if len(rules) else []
    spans = np.array([rules.rules_of(a) for a in sets], dtype=np.int64).reshape(-1, 2)
    blocked_rows, pair_seed, pair_item = NO_ROWS, NO_ROWS, NO_ROWS
    if decisions.blocked_rules:
        blocked_rows, pair_seed, pair_item = _blocks(index, codes, sets, spans, decisions)
    knn = index.bought_together_knn if weights.cart_knn_weight > 0 else None
    names = list(reasons)
    masks = [reasons[n] for n in names] + [_NO_MASK] * (2 - len(names))
    e_ids, e_scores, e_support = _arrays(index.bought_together)
    k_ids, k_scores, k_support = _arrays(knn)
    top, score, row, set_of, n_rules, seed, support, counts = blend(BlendInput(
        seeds=np.asarray(codes, dtype=np.int64), seed_weights=seed_weights, e_ids=e_ids,
        e_scores=e_scores, e_support=e_support, k_ids=k_ids, k_scores=k_scores, k_support=k_support,
        knn_weight=weights.cart_knn_weight, rule_lo=spans[:, 0].copy(),
        rule_hi=spans[:, 1].copy(), rule_consequent=rules.consequent,
        rule_confidence=rules.confidence, rule_weight=weights.rule_weight,
        blocked_rows=blocked_rows, pair_seed=pair_seed, pair_item=pair_item, silent=banned,
        reason_a=masks[0], reason_b=masks[1], limit=limit))
    candidates = []
    set_ids: dict[int, list[str]] = {}
    for i, (code, value) in enumerate(zip(top.tolist(), score.tolist(), strict=True)):
        pid = index.ids[code]
        r = int(row[i])
        if r >= 0:
            g = int(set_of[i])
            if g not in set_ids:
                set_ids[g] = sorted(index.ids[a] for a in sets[g].tolist())
            seeds = set_ids[g]
            key = rule_key(seeds, pid)
            candidates.append(Candidate(pid, value, "rule", {
                "seed": seeds[0] if len(seeds) == 1 else seeds,
                "co_purchases": int(rules.count[r]),
                "confidence": round(float(rules.confidence[r]), 6),
                "lift": round(float(rules.lift[r]), 6), "rules": int(n_rules[i]),
                "rule": key}, 0, key))
        else:
            candidates.append(Candidate(pid, value, "bought_together", {
                "seed": index.ids[int(seed[i])], "co_purchases": int(support[i]),
                "similarity": round(value, 6)}))
    return candidates, int(counts[2]), {n: int(counts[j]) for j, n in enumerate(names)}


def _blocks(index: ServingIndex, codes: list[int], sets: list[np.ndarray], spans: np.ndarray,
            decisions: Decisions) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows of the fired rules that merchandisers blocked, and the blocked (seed, product)
    neighbour pairs of these seeds, as codes."""
    by_antecedent = _blocked_by_antecedent(decisions.blocked_rules)
    rows = []
    for antecedents, (lo, hi) in zip(sets, spans.tolist(), strict=True):
        consequents = by_antecedent.get("+".join(sorted(index.ids[a]
                                                        for a in antecedents.tolist())))
        if consequents:
            blocked = np.asarray(index.codes(consequents), dtype=np.int64)
            rows.append(lo + np.flatnonzero(np.isin(index.rules.consequent[lo:hi], blocked)))
    seeds = {index.ids[c] for c in codes}
    pairs = [(index.code_of[a], index.code_of[b])
             for a, b in _blocked_pairs(decisions.blocked_rules)
             if a in seeds and b in index.code_of]
    return (np.sort(np.concatenate(rows)).astype(np.int64) if rows else NO_ROWS,
            np.array([a for a, _ in pairs], dtype=np.int64),
            np.array([b for _, b in pairs], dtype=np.int64))


def warm_up(index: ServingIndex) -> None:
    """One answer of each kind (with a session: its merge is compiled too), so that compiled
    code is loaded before the first request."""
    if index.ids:
        seen = Session((index.ids[-1],), (1.0,), (index.ids[-1],), knn_weight=1.0)
        cart_addons(index, index.ids[:2], Options(k=1), Decisions(), seen)
        also_viewed(index, index.ids[0], Options(k=1), Decisions(), seen)


def bought_together(index: ServingIndex, product_id: str, options: Options,
                    decisions: Decisions, session: Session = NO_SESSION) -> Result:
    """Frequently bought together: the cart scorer on a one-product cart (its substitutes,
    and what the ``session`` put in the cart or bought, are never offered)."""
    return _bought_with(index, [product_id], options, decisions, session)


def bundles_for(index: ServingIndex, product_id: str, k: int, *,
                in_stock_only: bool = True,
                blocked: frozenset[str] = frozenset()) -> list[dict[str, Any]]:
    """Bundles holding the product, best expected order-value gain first."""
    code = index.code_of.get(product_id)
    out = []
    for bundle in index.bundles.get(code, []) if code is not None else []:
        members = [index.ids[c] for c in bundle.products]
        if any(m in blocked for m in members) or (
                in_stock_only and any(m not in index.available for m in members)):
            continue
        out.append({
            "products": [index.describe(m) for m in members],
            "expected_gain": round(bundle.expected_gain, 4),
            "co_purchases": bundle.count,
            "anchor": index.ids[bundle.anchor],
            "anchor_confidence": round(bundle.anchor_confidence, 6),
            "reason": {"source": "bundle", "evidence": {
                "seed": product_id, "co_purchases": bundle.count,
                "confidence": round(bundle.anchor_confidence, 6)}},
        })
        if len(out) == k:
            break
    return out


def cart_addons(index: ServingIndex, cart: list[str], options: Options,
                decisions: Decisions, session: Session = NO_SESSION,
                line_weights: Mapping[str, float] | None = None) -> Result:
    """Add-ons for a whole cart: neighbour scores summed over every cart item, plus every
    rule whose antecedent the cart holds (see ``_scored_for``); cart items, their
    substitutes and what the ``session`` put in the cart or bought are never offered; the
    ``session``'s other products add their neighbours; a cart product's neighbour scores
    count times its ``line_weights`` entry (``recsys.serving.session.line_weights``: the
    line the shopper touched last weighs most; default 1)."""
    return _bought_with(index, cart, options, decisions, session, line_weights)


def _bought_with(index: ServingIndex, cart: list[str], options: Options,
                 decisions: Decisions, session: Session = NO_SESSION,
                 line_weights: Mapping[str, float] | None = None) -> Result:
    codes = list(dict.fromkeys(index.codes(cart)))
    seed_weights = np.array([line_weights.get(index.ids[c], 1.0) for c in codes]
                            if line_weights else np.ones(len(codes)), dtype=np.float64)
    banned = np.zeros(len(index.ids), dtype=bool)
    banned[codes] = True
    for c in codes:
        banned[list(index.substitutes.get(c, ()))] = True
    never = (frozenset(index.ids[b] for b in np.flatnonzero(banned).tolist()) | frozenset(cart)
             | session.in_cart)
    # Left out before scoring (counted as finish() would), so few candidates need building:
    # the caller's exclusions, the session's cart and purchases, blocked products, and
    # out-of-stock products.
    silent = banned.copy()
    silent[index.codes(options.exclude)] = True
    silent[index.codes(session.in_cart)] = True
    reasons = {}
    if decisions.blocked_products:
        reasons["blocked_product"] = np.zeros(len(index.ids), dtype=bool)
        reasons["blocked_product"][index.codes(decisions.blocked_products)] = True
    if options.in_stock_only:
        reasons["out_of_stock_or_inactive"] = index.unavailable_mask
    reordering = options.category or decisions.category_cap or decisions.boosts or (
        options.rank_by == "value")
    limit = candidate_limit(options) + 50 if reordering else options.k + 10
    candidates, blocked, considered = _scored_for(index, codes, seed_weights, decisions,
                                                  silent, limit, reasons)
    candidates = rescore(index, index.bought_together, candidates, session, candidate_limit(options))
    category = cart_category(index, cart)
    rejected = frozenset(b for a, b in _blocked_pairs(decisions.blocked_rules) if a in cart) if (
        decisions.blocked_rules) else frozenset()  # not even as a best-seller fill
    result = finish(index, candidates, options, decisions, seeds=cart,
                    fallback_category=category, never=never | rejected,
                    prefiltered={r: n for r, n in considered.items() if n})
    if blocked:
        result.applied.insert(0, f"blocked_rule:{blocked}")
    return result


def cart_category(index: ServingIndex, cart: list[str]) -> str | None:
    """The category a short cart list is filled from: the one most of the cart's products
    are in (ties: the first met in the cart); None when the catalogue has none of them."""
    held = Counter(index.categories[p] for p in dict.fromkeys(cart) if p in index.categories)
    return max(held, key=held.__getitem__) if held else None


def _user_vector(model: Any, history: np.ndarray) -> np.ndarray:
    """ALS user factors recalculated from items (implicit feedback, confidence 1 + alpha)."""
    y = model.item_factors[history].astype(np.float64)
    conf = 1.0 + model.alpha
    a = model.gram + (conf - 1.0) * (y.T @ y) + model.regularization * np.eye(len(model.gram))
    b = conf * y.sum(axis=0)
    return np.linalg.solve(a, b)


def for_customer(index: ServingIndex, customer_id: str | None, history: list[str],
                 options: Options, decisions: Decisions) -> Result:
    """Personalised: what the customer buys again, then ALS.

    The products the customer bought come first, most often bought first (ties: the better
    seller), except durable products (bought again by few of their buyers) that this customer
    bought only once; consumables with a known cycle say whether they are due (past 80% of
    the cycle). Ranking due ones first measured worse on next baskets (BENCHMARKS.md). Then
    ALS scores (factors recalculated from ``history`` or for unknown customers)."""
    model = index.customer_model
    candidates: list[Candidate] = []
    never: set[str] = set()
    if model is not None:
        row = model.customers.get(customer_id) if customer_id else None
        bought: dict[int, tuple[int, int]] = {}  # code -> (last day, orders)
        if row is not None:
            lo, hi = model.purchases_indptr[row], model.purchases_indptr[row + 1]
            bought = dict(zip(model.purchases_indices[lo:hi].tolist(),
                              zip(model.purchases_day[lo:hi].tolist(),
                                  model.purchases_orders[lo:hi].tolist(), strict=True),
                              strict=True))
        extra = [index.code_of[p] for p in history if p in index.code_of]
        if row is not None and not extra:
            vector = model.user_factors[row].astype(np.float64)
        elif bought or extra:
            vector = _user_vector(model, np.array(sorted(set(bought) | set(extra))))
        else:
            vector = None
        top = max(float(model.popularity.max()), 1.0) if len(model.popularity) else 1.0
        for code, (last_day, orders) in bought.items():
            pid = index.ids[code]
            cycle = model.cycle_days[code]
            since = model.today - last_day
            evidence: dict[str, Any] = {"days_since_purchase": int(since),
                                        "times_bought": int(orders)}
            if not np.isnan(cycle):
                evidence.update(cycle_days=float(cycle), due=bool(since >= 0.8 * cycle))
            elif model.durable[code] and orders < 2:
                never.add(pid)
                continue
            score = orders + 0.49 * model.popularity[code] / top  # ties: the better seller
            candidates.append(Candidate(pid, score, "replenishment", evidence, 1))
        never |= {index.ids[c] for c in extra}
        history_items = len(set(bought) | set(extra))
        if vector is not None:
            scores = model.item_factors @ vector.astype(np.float32)
            best = np.argsort(-scores)[: options.k * 5 + len(bought) + len(extra)]
            # a known customer with little history (not a shopper's explicit ``history``)
            short = not extra and history_items < index.ranking.als_min_history
            candidates += [Candidate(index.ids[int(c)], float(scores[c]), "als",
                                     {"customer": customer_id, "history_items": history_items},
                                     3 if short else 2) for c in best.tolist()]
            if short:  # too little history for a reliable taste: what customers buy most
                wanted = options.k * 3 + len(bought)
                candidates += [Candidate(index.ids[c], float(model.popularity[c]), "popular", {
                    "orders": int(model.popularity[c]), "scope": "customers",
                    "history_items": history_items}, 2)
                    for c in model.by_popularity[:wanted].tolist() if c not in bought]
    segment = index.segments.get(customer_id) if customer_id else None
    applied: list[str] = []
    if segment is not None and segment in decisions.best_sellers_first:
        # e.g. at-risk customers: what is due first, then what sells best, then their taste
        for cand in candidates:
            if cand.source == "replenishment":
                cand.tier = 0 if cand.evidence.get("due") else 2
            else:
                cand.tier = 1 if cand.source == "popular" else 3
        own = {c.product_id for c in candidates if c.source == "replenishment"}
        candidates += [Candidate(pid, float(n), "popular", {"orders": n, "scope": "global",
                                                            "segment": segment}, 1)
                       for pid, n in index.best_sellers(None, options.k * 2 + len(own),
                                                        in_stock_only=options.in_stock_only)
                       if pid not in own]  # what they bought keeps its own reason
        applied.append(f"segment:{segment}")
    result = finish(index, candidates, options, decisions, never=frozenset(never))
    result.applied = applied + result.applied
    return result


def popular(index: ServingIndex, options: Options, decisions: Decisions) -> Result:
    """Best sellers, globally or in a category (any level of its path)."""
    scope = options.category
    fallback = None
    if scope and scope not in index.popular:
        fallback, scope = "global_best_sellers", None
    ranked = index.best_sellers(scope, options.k * 3 + len(options.exclude) +
                                len(decisions.blocked_products),
                                in_stock_only=options.in_stock_only)
    candidates = [Candidate(pid, float(n), "popular", {"orders": n, "scope": scope or "global"})
                  for pid, n in ranked]
    result = finish(index, candidates, options if scope else Options(
        **{**options.__dict__, "category": None}), decisions)
    result.fallback = fallback or result.fallback
    return result
