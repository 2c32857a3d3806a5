"""Request-time ranking: candidates from the index, then business rules, pins and fallbacks.

Every list goes through ``finish``: caller exclusions, blocked products and rules, stock and
active flags, the category filter, boosts and buries, a per-category cap for diversity, pins
at fixed positions, and finally a fill from best sellers (the seed's category first, then
global) so that a list is never empty unless the catalogue is. ``applied`` names every rule
that changed the list; ``fallback`` names the best-seller list used to fill it, if any.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from recsys.serving.index import ServingIndex

__all__ = ["Options", "Decisions", "Result", "also_viewed", "bought_together", "bundles_for",
           "cart_addons", "for_customer", "popular"]


@dataclass(frozen=True)
class Options:
    """The common query options of list endpoints."""

    k: int = 10
    category: str | None = None
    exclude: frozenset[str] = frozenset()
    in_stock_only: bool = True
    rank_by: Literal["score", "value"] = "score"


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
    tier: int = 0  # lower tiers rank first (rules before similarity, due before ALS)
    rule_key: str | None = None


@dataclass
class Result:
    items: list[dict[str, Any]]
    fallback: str | None
    applied: list[str]


def _in_category(index: ServingIndex, product_id: str, root: str) -> bool:
    category = index.categories.get(product_id)
    return category is not None and (category == root or category.startswith(root + " > "))


def finish(index: ServingIndex, candidates: Iterable[Candidate], options: Options,
           decisions: Decisions, *, seeds: Iterable[str] = (), fallback_category: str | None = None,
           never: frozenset[str] = frozenset()) -> Result:
    """Apply exclusions, business rules, pins and fallbacks; return the final list."""
    applied: list[str] = []
    counts: dict[str, int] = {}
    excluded = options.exclude | never
    seen: set[str] = set()
    kept: list[Candidate] = []
    for cand in candidates:  # candidates of one request: at most a few hundred
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
    else:
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
    # Pins: a merchandiser's product at a fixed position for a seed product.
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
    fallback = None
    if len(items) < options.k:
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
                have.add(pid)
                fallback = fallback or name
            if len(items) == options.k:
                break
    return Result(items=[_render(index, c) for c in items], fallback=fallback, applied=applied)


def _render(index: ServingIndex, cand: Candidate) -> dict[str, Any]:
    item = index.describe(cand.product_id)
    item["score"] = round(float(cand.score), 6)
    item["reason"] = {"source": cand.source, "evidence": cand.evidence}
    return item


def _neighbour_candidates(index: ServingIndex, table: Any, code: int, source: str,
                          tier: int, seed: str, support_name: str, limit: int) -> list[Candidate]:
    """The first ``limit`` neighbours of a product (enough to survive the filters)."""
    if table is None:
        return []
    ids = table.ids[code, :limit].tolist()
    scores = table.scores[code, :limit].tolist()
    support = table.support[code, :limit].tolist()
    return [Candidate(index.ids[i], sc, source, {"seed": seed, support_name: su,
                                                 "similarity": round(sc, 6)}, tier)
            for i, sc, su in zip(ids, scores, support, strict=True) if i >= 0]


def _limit(options: Options) -> int:
    return 3 * options.k + len(options.exclude) + 10


def also_viewed(index: ServingIndex, product_id: str, options: Options,
                decisions: Decisions) -> Result:
    """Customers who viewed this also viewed (item-kNN over view sessions)."""
    code = index.code_of.get(product_id)
    candidates = [] if code is None else _neighbour_candidates(
        index, index.also_viewed, code, "also_viewed", 0, product_id, "sessions_with_both",
        _limit(options))
    return finish(index, candidates, options, decisions, seeds=[product_id],
                  fallback_category=index.categories.get(product_id), never=frozenset([product_id]))


def bought_together(index: ServingIndex, product_id: str, options: Options,
                    decisions: Decisions) -> Result:
    """Frequently bought together: the product's rules first, then co-purchase similarity."""
    code = index.code_of.get(product_id)
    subs = index.substitutes.get(code, frozenset()) if code is not None else frozenset()
    candidates: list[Candidate] = []
    if code is not None:
        for rule in index.pair_rules.get(code, []):
            if rule.consequent in subs:
                continue
            candidates.append(Candidate(
                index.ids[rule.consequent], rule.confidence, "rule",
                {"seed": product_id, "co_purchases": rule.count,
                 "confidence": round(rule.confidence, 6), "lift": round(rule.lift, 6),
                 "rule": rule.key}, 0, rule.key))
        candidates += [c for c in _neighbour_candidates(
            index, index.bought_together, code, "bought_together", 1, product_id, "co_purchases",
            _limit(options)) if index.code_of[c.product_id] not in subs]
    # substitutes share the seed's category: keep them out of the best-seller fill too
    never = frozenset([product_id]) | frozenset(index.ids[s] for s in subs)
    return finish(index, candidates, options, decisions, seeds=[product_id],
                  fallback_category=index.categories.get(product_id), never=never)


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
                decisions: Decisions) -> Result:
    """Add-ons for a whole cart: every rule whose antecedent the cart holds counts.

    Score = 1 - prod(1 - confidence) over the rules that recommend the product (any of them
    firing); cart items and their substitutes are never offered; co-purchase similarity of
    the cart's items ranks after the rules.
    """
    codes = [index.code_of[p] for p in cart if p in index.code_of]
    in_cart = frozenset(codes)
    banned = set(in_cart)
    for c in codes:
        banned |= index.substitutes.get(c, frozenset())
    # consequent -> (probability no rule fires, best rule, its seeds, number of rules)
    best: dict[int, tuple[float, Any, list[str], int]] = {}

    def add(consequent: int, rule: Any, seeds: list[str]) -> None:
        miss, top, top_seeds, n = best.get(consequent, (1.0, None, [], 0))
        if top is None or rule.confidence > top.confidence:
            top, top_seeds = rule, seeds
        best[consequent] = (miss * (1.0 - rule.confidence), top, top_seeds, n + 1)

    blocked = 0  # rules left out by a merchandiser's block_rule (reported in ``applied``)
    for c in codes:
        for rule in index.pair_rules.get(c, []):
            if rule.consequent in banned:
                continue
            if rule.key in decisions.blocked_rules:
                blocked += 1
                continue
            add(rule.consequent, rule, [index.ids[c]])
        for multi in index.multi_rules.get(c, []):
            # counted once: from its smallest antecedent code
            if min(multi.antecedents) == c and multi.antecedents <= in_cart and (
                    multi.consequent not in banned):
                if multi.key in decisions.blocked_rules:
                    blocked += 1
                    continue
                add(multi.consequent, multi, sorted(index.ids[a] for a in multi.antecedents))
    candidates = []
    for consequent, (miss, top, seeds, n) in best.items():
        candidates.append(Candidate(index.ids[consequent], 1.0 - miss, "rule", {
            "seed": seeds, "co_purchases": top.count, "confidence": round(top.confidence, 6),
            "lift": round(top.lift, 6), "rules": n, "rule": top.key}, 0, top.key))
    for c in codes:
        candidates += [cand for cand in _neighbour_candidates(
            index, index.bought_together, c, "bought_together", 1, index.ids[c], "co_purchases",
            _limit(options)) if index.code_of[cand.product_id] not in banned]
    first_category = next((index.categories[p] for p in cart if p in index.categories), None)
    result = finish(index, candidates, options, decisions, seeds=cart,
                    fallback_category=first_category,
                    never=frozenset(index.ids[b] for b in banned) | frozenset(cart))
    if blocked:
        result.applied.insert(0, f"blocked_rule:{blocked}")
    return result


def _user_vector(model: Any, history: np.ndarray) -> np.ndarray:
    """ALS user factors recalculated from items (implicit feedback, confidence 1 + alpha)."""
    y = model.item_factors[history].astype(np.float64)
    conf = 1.0 + model.alpha
    a = model.gram + (conf - 1.0) * (y.T @ y) + model.regularization * np.eye(len(model.gram))
    b = conf * y.sum(axis=0)
    return np.linalg.solve(a, b)


def for_customer(index: ServingIndex, customer_id: str | None, history: list[str],
                 options: Options, decisions: Decisions) -> Result:
    """Personalised: ALS scores; durable products the customer bought are left out, while
    consumables due for repurchase (past 80% of their cycle) come first."""
    model = index.customer_model
    candidates: list[Candidate] = []
    never: set[str] = set()
    if model is not None:
        row = model.customers.get(customer_id) if customer_id else None
        bought: dict[int, int] = {}
        if row is not None:
            lo, hi = model.purchases_indptr[row], model.purchases_indptr[row + 1]
            bought = dict(zip(model.purchases_indices[lo:hi].tolist(),
                              model.purchases_day[lo:hi].tolist(), strict=True))
        extra = [index.code_of[p] for p in history if p in index.code_of]
        if row is not None and not extra:
            vector = model.user_factors[row].astype(np.float64)
        elif bought or extra:
            vector = _user_vector(model, np.array(sorted(set(bought) | set(extra))))
        else:
            vector = None
        if vector is not None:
            scores = model.item_factors @ vector.astype(np.float32)
            top = np.argsort(-scores)[: options.k * 5 + len(bought) + len(extra)]
            for code, last_day in bought.items():
                cycle = model.cycle_days[code]
                since = model.today - last_day
                if not np.isnan(cycle) and since >= 0.8 * cycle:
                    candidates.append(Candidate(index.ids[code], float(since / cycle),
                                                "replenishment", {
                                                    "days_since_purchase": int(since),
                                                    "cycle_days": float(cycle)}, 0))
                else:
                    never.add(index.ids[code])
            never |= {index.ids[c] for c in extra}
            candidates += [Candidate(index.ids[int(c)], float(scores[c]), "als",
                                     {"customer": customer_id, "history_items": len(bought) +
                                      len(extra)}, 1) for c in top.tolist()]
    segment = index.segments.get(customer_id) if customer_id else None
    applied: list[str] = []
    if segment is not None and segment in decisions.best_sellers_first:
        # e.g. at-risk customers: what is due first, then what sells best, then their taste
        for cand in candidates:
            cand.tier = max(cand.tier, 2) if cand.source == "als" else cand.tier
        candidates += [Candidate(pid, float(n), "popular", {"orders": n, "scope": "global",
                                                            "segment": segment}, 1)
                       for pid, n in index.best_sellers(None, options.k * 2,
                                                        in_stock_only=options.in_stock_only)]
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
