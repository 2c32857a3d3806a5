"""Also-viewed for a product without co-view data (added since the artifact, or never
viewed with another): borrowed from its content neighbours' own also-viewed lists.

score(q) = sum over the product's ``cold_start_neighbours`` best content neighbours c of
cosine(product, c) x (sim(c, q) / max sim of c + ``also_viewed_support_weight`` x
support(c, q) / max support of c), i.e. each neighbour's served also-viewed score weighted
by how alike the two products are; scaled to the best score, plus ``cold_start_prior`` x
the orders of the product's category's best sellers (global ones without a category)
scaled to the best seller's. The product
itself is never a candidate. The weights are the artifact's ``ranking.json``.
"""

from __future__ import annotations

import numpy as np

from recsys.popularity import GLOBAL_SCOPE
from recsys.serving.finish import Candidate
from recsys.serving.index import ServingIndex

__all__ = ["borrowed_also_viewed"]


def borrowed_also_viewed(index: ServingIndex, product_id: str, code: int | None,
                         limit: int) -> list[Candidate]:
    """The ``limit`` best candidates by the score above (source ``content_co_viewed``;
    evidence: the content neighbour that contributed most, and its cosine); empty without
    an also-viewed table or content neighbours."""
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
    ids = np.asarray(table.ids)[rows].astype(np.int64)
    keep = ids >= 0
    sims = np.where(keep, np.asarray(table.scores)[rows], 0.0).astype(np.float64)
    support = np.where(keep, np.asarray(table.support)[rows], 0).astype(np.float64)
    part = (_row_scaled(sims) + ranking.also_viewed_support_weight * _row_scaled(support)
            ) * cosine[:, None]
    flat_ids, flat_part = ids[keep], part[keep]
    via_row = np.broadcast_to(np.arange(len(rows))[:, None], ids.shape)[keep]
    n = len(index.ids)
    score = np.bincount(flat_ids, weights=flat_part, minlength=n).astype(np.float64)
    peak = float(score.max()) if len(score) else 0.0
    if peak > 0:
        score /= peak
    best_row = np.full(n, -1, np.int64)  # per candidate: the neighbour that gave the most
    order = np.lexsort((-flat_part, flat_ids))
    first = np.ones(len(order), dtype=bool)
    first[1:] = flat_ids[order][1:] != flat_ids[order][:-1]
    best_row[flat_ids[order][first]] = via_row[order][first]
    prior = index.popular.get(index.categories.get(product_id) or GLOBAL_SCOPE, [])
    if ranking.cold_start_prior > 0 and prior:
        top = max(prior[0][1], 1)
        for pid, orders in prior:
            c = index.code_of.get(pid)
            if c is not None:
                score[c] += ranking.cold_start_prior * orders / top
    if code is not None:
        score[code] = 0.0
    scored = np.flatnonzero(score > 0)  # a few hundred of the catalogue, in code order
    ranked = scored[np.argsort(-score[scored], kind="stable")[:limit]]
    out = []
    for c in ranked.tolist():
        evidence: dict[str, object] = {"seed": product_id, "score": round(float(score[c]), 6)}
        if best_row[c] >= 0:
            evidence.update(via=index.ids[int(rows[best_row[c]])],
                            content_similarity=round(float(cosine[best_row[c]]), 6))
        else:
            evidence.update(category_best_seller=True)
        out.append(Candidate(index.ids[c], float(score[c]), "content_co_viewed", evidence))
    return out


def _row_scaled(values: np.ndarray) -> np.ndarray:
    """Each row divided by its maximum (rows without a positive value stay zero)."""
    peak = values.max(axis=1, keepdims=True) if values.size else values
    return np.divide(values, peak, out=np.zeros_like(values), where=peak > 0)
