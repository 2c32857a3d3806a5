"""The cold-start score, written once: serving ranks a new product's also-viewed list with it
(``recsys.serving.cold_start``) and the cold_start job scores held-out products with it to
choose the weights (``recsys.models.cold_start_job``).

score(q) = sum over the product's first ``neighbours`` content neighbours c of
cosine(product, c) x (sim(c, q) / max sim of c + ``support_weight`` x support(c, q) / max
support of c), scaled to the best score, plus ``prior_weight`` x the prior's share of q
(its orders / the best seller's, among the best sellers of the product's category or of the
shop: ``cold_start_prior_scope``). The product itself scores 0;
``ranked`` keeps the positive scores, best first (ties: lower code first).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsys.models.neighbours import Neighbours

__all__ = ["BorrowedParts", "borrowed_parts", "cold_start_scores", "ranked"]


@dataclass(frozen=True)
class BorrowedParts:
    """Each (content neighbour, one of its also-viewed neighbours) pair, flat."""

    ids: np.ndarray  # the candidate's code
    part: np.ndarray  # cosine x the neighbour's also-viewed score of the candidate
    via: np.ndarray  # which content neighbour gave it (its position, 0 = nearest)


def borrowed_parts(table: Neighbours, rows: np.ndarray, cosine: np.ndarray,
                   support_weight: float) -> BorrowedParts:
    """The parts from the also-viewed ``table``'s ``rows`` (content neighbours' codes, nearest
    first) and their ``cosine`` with the product."""
    ids = np.asarray(table.ids)[rows].astype(np.int64)
    keep = ids >= 0
    sims = np.where(keep, np.asarray(table.scores)[rows], 0.0).astype(np.float64)
    support = np.where(keep, np.asarray(table.support)[rows], 0).astype(np.float64)
    part = (_row_scaled(sims) + support_weight * _row_scaled(support)) * cosine[:, None]
    via = np.broadcast_to(np.arange(len(rows))[:, None], ids.shape)[keep]
    return BorrowedParts(ids=ids[keep], part=part[keep], via=via)


def cold_start_scores(parts: BorrowedParts, n_items: int, *, own: int | None,
                      prior_codes: np.ndarray, prior_shares: np.ndarray, prior_weight: float,
                      neighbours: int | None = None) -> np.ndarray:
    """Per product code the score above (float64); ``neighbours``: only the parts of the
    first that many content neighbours (None: all)."""
    ids, part = parts.ids, parts.part
    if neighbours is not None:
        first = parts.via < neighbours
        ids, part = ids[first], part[first]
    score = np.bincount(ids, weights=part, minlength=n_items).astype(np.float64)
    peak = float(score.max()) if len(score) else 0.0
    if peak > 0:
        score /= peak
    if prior_weight > 0 and len(prior_codes):
        np.add.at(score, prior_codes, prior_weight * prior_shares)
    if own is not None:
        score[own] = 0.0
    return score


def ranked(score: np.ndarray, limit: int) -> np.ndarray:
    """The codes of the ``limit`` best positive scores, best first (ties: lower code)."""
    scored = np.flatnonzero(score > 0)  # a few hundred of the catalogue, in code order
    return scored[np.argsort(-score[scored], kind="stable")[:limit]]


def _row_scaled(values: np.ndarray) -> np.ndarray:
    """Each row divided by its maximum (rows without a positive value stay zero)."""
    peak = values.max(axis=1, keepdims=True) if values.size else values
    return np.divide(values, peak, out=np.zeros_like(values), where=peak > 0)
