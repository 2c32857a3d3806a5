"""The upsell list: better alternatives to a product, priced above it.

Candidates are the products of the product's category (exact path) and its co-viewed
substitutes (``substitutes.parquet``), priced within ``band`` times its price. They rank by
how many sessions viewed this product, did not buy it and bought the candidate instead
(``viewed_bought.parquet``), shrunk toward the upsell prior: ``sessions + prior_sessions x
P(candidate | product)``, where P comes from the candidate's category orders, same brand and
price ratio with weights fitted on the whole shop's evidence (``recsys.models.upsell_prior``).
The margin amount (price x margin, where the catalog has margins) only breaks ties.
``finish`` applies the merchandisers' decisions as on every list, without a best-seller fill
(a filler would not be an upsell). The A/B control arm gets the same candidates by category
orders alone (the margin breaking ties). A customer who buys only on discount
(``discount_customers.parquet``) is offered nothing pricier.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from recsys.models.upsell_prior import features
from recsys.serving.finish import Candidate, Decisions, Options, Result, finish
from recsys.serving.index import ServingIndex

__all__ = ["upsell"]

_TIE = 1e-6  # the margin only breaks ties: its share of a score stays below any real difference


def upsell(index: ServingIndex, product_id: str, options: Options, decisions: Decisions, *,
           band: tuple[float, float], popular_only: bool = False,
           customer_id: str | None = None) -> Result:
    """Pricier alternatives to ``product_id`` (``popular_only``: by category orders alone)."""
    if customer_id is not None and customer_id in index.discount_only:
        return Result([], "discount_only_customer", [])
    price = index.prices.get(product_id)
    code = index.code_of.get(product_id)
    if code is None or price is None or price <= 0:
        return Result([], "no_price", [])
    category = index.categories.get(product_id)
    pool = set(index.by_category.get(category, ())) if category is not None else set()
    pool |= {index.ids[c] for c in index.substitutes.get(code, ())}
    lo, hi = band[0] * price, band[1] * price
    pool = {p for p in pool if p != product_id and lo <= index.prices.get(p, 0.0) <= hi}
    sessions: dict[str, int] = {}
    if not popular_only and code in index.bought_instead:
        ids, counts = index.bought_instead[code]
        sessions = {index.ids[c]: n for c, n in zip(ids.tolist(), counts.tolist(), strict=True)
                    if index.ids[c] in pool}
    orders = dict(index.popular.get(category, ())) if category is not None else {}
    ranked = sorted(pool)  # ties keep one order
    top_margin = max((index.value(p) for p in pool if p in index.margins), default=0.0)
    prior = index.upsell_prior
    probability = np.zeros(len(ranked)) if popular_only else prior.probabilities(features(
        np.array([orders.get(p, 0) for p in ranked], dtype=float),
        np.array([_same_brand(index, product_id, p) for p in ranked], dtype=bool),
        np.array([index.prices[p] / price for p in ranked])))
    candidates = []
    for pid, p in zip(ranked, probability.tolist(), strict=True):
        evidence = {"seed": product_id, "price_difference": round(index.prices[pid] - price, 2),
                    "price_ratio": round(index.prices[pid] / price, 3),
                    "orders": orders.get(pid, 0)}
        tie = 0.5 * index.value(pid) / top_margin if top_margin and pid in index.margins else 0.0
        if pid in index.margins:
            evidence["margin"] = index.margins[pid]
        if pid in sessions:
            evidence["viewed_then_bought"] = sessions[pid]
        if popular_only:
            score = orders.get(pid, 0) + tie
        else:
            evidence["prior"] = round(p, 4)
            score = sessions.get(pid, 0) + prior.prior_sessions * p + tie * _TIE
        candidates.append(Candidate(pid, score, "upsell", evidence, 0))
    result = finish(index, candidates, replace(options, fill=False), decisions,
                    seeds=[product_id],
                    never=frozenset([product_id]))
    if not result.items:
        result.fallback = "no_upsell"
    return result


def _same_brand(index: ServingIndex, a: str, b: str) -> bool:
    brand = index.brands.get(a)
    return bool(brand) and index.brands.get(b) == brand
