"""Also-viewed for a product without co-view data (added since the artifact, or never
viewed with another): borrowed from its content neighbours' own also-viewed lists.

The score (``recsys.models.borrowed``): over the product's ``cold_start_neighbours`` best
content neighbours, each neighbour's served also-viewed score (similarity and
``also_viewed_support_weight`` x support, each scaled to that neighbour's best) weighted by
how alike the two products are, scaled to the best score, plus ``cold_start_prior`` x the
orders of the best sellers of the product's category (global ones without a category), or
of the shop (``cold_start_prior_scope``), scaled to the best seller's. The product itself is
never a candidate. The weights are the artifact's (``ranking.json``; ``cold_start.json``:
the cold-start settings, chosen per shop by the cold_start job unless the config pins them).
"""

from __future__ import annotations

import numpy as np

from recsys.models.borrowed import borrowed_parts, cold_start_scores, ranked
from recsys.popularity import GLOBAL_SCOPE
from recsys.serving.finish import Candidate
from recsys.serving.index import ServingIndex

__all__ = ["borrowed_also_viewed"]


def borrowed_also_viewed(index: ServingIndex, product_id: str, code: int | None,
                         limit: int) -> list[Candidate]:
    """The ``limit`` best candidates by the score above (source ``content_co_viewed``;
    evidence: the content neighbour that contributed most, and its cosine, and whether the
    prior's best sellers raised it); empty without an also-viewed table or content
    neighbours."""
    content, table, ranking = index.content, index.also_viewed, index.ranking
    if content is None or table is None or ranking.cold_start_neighbours == 0:
        return []
    near = [(c, cos) for c, cos, _ in content.neighbours(code, product_id,
                                                         ranking.cold_start_neighbours)
            if c < len(table.ids)]
    if not near:
        return []
    rows = np.array([c for c, _ in near], dtype=np.int64)
    cosine = np.array([cos for _, cos in near], dtype=np.float64)
    parts = borrowed_parts(table, rows, cosine, ranking.also_viewed_support_weight)
    shop = ranking.cold_start_prior_scope == "shop"
    prior = index.popular.get(GLOBAL_SCOPE if shop else
                              index.categories.get(product_id) or GLOBAL_SCOPE, [])
    known = [(index.code_of[pid], orders) for pid, orders in prior if pid in index.code_of]
    top = max(prior[0][1], 1) if prior else 1
    n = len(index.ids)
    score = cold_start_scores(
        parts, n, own=code, prior_codes=np.array([c for c, _ in known], dtype=np.int64),
        prior_shares=np.array([o / top for _, o in known], dtype=np.float64),
        prior_weight=ranking.cold_start_prior)
    best_row = np.full(n, -1, np.int64)  # per candidate: the neighbour that gave the most
    order = np.lexsort((-parts.part, parts.ids))
    first = np.ones(len(order), dtype=bool)
    first[1:] = parts.ids[order][1:] != parts.ids[order][:-1]
    best_row[parts.ids[order][first]] = parts.via[order][first]
    best_seller = {c for c, _ in known} if ranking.cold_start_prior > 0 else set()
    out = []
    for c in ranked(score, limit).tolist():
        evidence: dict[str, object] = {"seed": product_id, "score": round(float(score[c]), 6)}
        if best_row[c] >= 0:
            evidence.update(via=index.ids[int(rows[best_row[c]])],
                            content_similarity=round(float(cosine[best_row[c]]), 6))
        if c in best_seller or best_row[c] < 0:
            evidence["shop_best_seller" if shop else "category_best_seller"] = True
        out.append(Candidate(index.ids[c], float(score[c]), "content_co_viewed", evidence))
    return out

