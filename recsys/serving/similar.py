"""Similar items: alternatives to a product (substitutes), not complements.

Candidates, best tier first:
  0. substitutes mined by the rules job: viewed together, bought together less than chance;
  1. co-viewed products in the same category that are not bought with it (no bought-together
     neighbour), and content neighbours (catalogue TF-IDF cosine); a product both co-viewed
     and content-similar scores the sum of its scaled co-view similarity and its cosine.
``finish`` then fills from the product's category's best sellers.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from recsys.serving.finish import Candidate, Decisions, Options, Result, finish
from recsys.serving.index import ServingIndex

__all__ = ["similar_items"]


def _row(table: Any, code: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if table is None or code is None or code >= len(table.ids):
        empty = np.zeros(0)
        return empty.astype(np.int64), empty, empty
    ids = np.asarray(table.ids[code])
    keep = ids >= 0
    return (ids[keep].astype(np.int64), np.asarray(table.scores[code], np.float64)[keep],
            np.asarray(table.support[code], np.float64)[keep])


def similar_items(index: ServingIndex, product_id: str, options: Options,
                  decisions: Decisions) -> Result:
    """Alternatives to ``product_id`` with their reasons (see the module docstring)."""
    code = index.code_of.get(product_id)
    category = index.categories.get(product_id)
    limit = 3 * options.k + len(options.exclude) + 10
    candidates: dict[str, Candidate] = {}
    for sub in sorted(index.substitutes.get(code, ())) if code is not None else ():
        pid = index.ids[sub]
        candidates[pid] = Candidate(pid, 1.0, "substitute", {
            "seed": product_id, "viewed_together": True, "bought_together": "rarely"}, 0)
    complements = set(_row(index.bought_together, code)[0].tolist())
    ids, sims, support = _row(index.also_viewed, code)
    peak = float(sims.max()) if len(sims) else 0.0
    for c, sim, both in zip(ids.tolist(), sims.tolist(), support.tolist(), strict=True):
        pid = index.ids[c]
        if pid in candidates or c in complements or category is None or (
                index.categories.get(pid) != category):
            continue
        candidates[pid] = Candidate(pid, sim / peak if peak > 0 else 0.0, "co_viewed", {
            "seed": product_id, "sessions_with_both": int(both), "same_category": category,
            "similarity": round(sim, 6)}, 1)
    if index.content is not None:
        for c, score, shared in index.content.neighbours(code, product_id, limit):
            pid = index.ids[c]
            known = candidates.get(pid)
            if known is None:
                candidates[pid] = Candidate(pid, score, "content", {
                    "seed": product_id, "similarity": round(score, 6),
                    "shared_features": shared}, 1)
            elif known.source == "co_viewed":
                known.score += score
                known.evidence.update(content_similarity=round(score, 6),
                                      shared_features=shared)
    return finish(index, candidates.values(), options, decisions, seeds=[product_id],
                  fallback_category=category, never=frozenset([product_id]))
