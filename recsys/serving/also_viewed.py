"""The also-viewed list ("customers who viewed this also viewed"): the product's co-viewed
neighbours, the session's products, borrowed lists for a product without co-views and
content neighbours for one with little traffic, kept as arrays until ``finish_pool`` says
which can be shown.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
from numba import njit

from recsys.models.neighbours import Neighbours
from recsys.serving.cold_start import borrowed_also_viewed
from recsys.serving.finish import (
    Candidate,
    Decisions,
    Options,
    Pool,
    Result,
    candidate_limit,
    finish_pool,
)
from recsys.serving.index import ServingIndex
from recsys.serving.session import NO_SESSION, Session, merge, rescore, session_evidence

__all__ = ["also_viewed"]


def also_viewed(index: ServingIndex, product_id: str, options: Options,
                decisions: Decisions, session: Session = NO_SESSION) -> Result:
    """Customers who viewed this also viewed: the item-kNN neighbours over view sessions
    (orders when the data had no views), re-ranked by similarity plus a share of their
    co-view support (each scaled to the product's best), plus the ``session``'s other
    products' neighbours; the evidence names what was counted (``sessions_with_both`` or
    ``orders_with_both``). A product without co-view neighbours (added since the artifact,
    or never viewed with another) borrows its content neighbours' also-viewed lists
    (``recsys.serving.cold_start``, source ``content_co_viewed``). A product with little
    traffic (strongest co-view support below the content index's ``min_support``, or added
    since the artifact) is completed from its content neighbours, ranked after the others
    (reason source ``content``). The candidates stay arrays until ``finish_pool`` says which
    can be shown: only those are built."""
    code = index.code_of.get(product_id)
    table = index.also_viewed
    limit = candidate_limit(options)
    parts = []
    strongest = 0
    if code is not None and table is not None:
        ids, sims, support, scores, strongest = _co_viewed(
            np.asarray(table.ids), np.asarray(table.scores), np.asarray(table.support), code,
            index.ranking.also_viewed_support_weight, limit)
        if len(ids):
            parts = [_co_viewed_rows(index, table, product_id, ids, sims, support, scores,
                                     session, limit)]
    if not parts:  # no co-view data: borrowed from its content neighbours' lists
        borrowed = rescore(index, table, borrowed_also_viewed(index, product_id, code, limit),
                           session, limit)
        parts = [_Rows.built(index, borrowed)]
    content = index.content
    if content is not None and strongest < content.min_support:
        near = content.neighbours(code, product_id, limit)
        codes = np.array([c for c, _, _ in near], np.int64)
        values = np.array([score for _, score, _ in near], np.float64)
        parts.append(_Rows(codes, values, 1, np.zeros(len(near), np.bool_), lambda rows: [
            Candidate(index.ids[c], score, "content", {
                "seed": product_id, "similarity": round(score, 6), "shared_features": shared,
                "co_view_support": strongest}, 1)
            for c, score, shared in (near[r] for r in rows)]))
    return finish_pool(index, _pool(parts), options, decisions, seeds=[product_id],
                       fallback_category=index.categories.get(product_id),
                       never=frozenset([product_id]))


class _Rows(NamedTuple):
    """One kind of a list's candidates as arrays, and their builder (rows -> candidates)."""

    codes: np.ndarray
    scores: np.ndarray
    tier: int
    judged: np.ndarray  # per row: an engine item judged on its share alone (``Pool.judged``)
    build: Callable[[list[int]], list[Candidate]]

    @classmethod
    def built(cls, index: ServingIndex, candidates: list[Candidate]) -> _Rows:
        """Candidates built already (each of one tier and an unjudged source)."""
        tiers = {c.tier for c in candidates}
        assert len(tiers) <= 1 and not any(c.source == "also_viewed" for c in candidates)
        return cls(np.array([index.code_of[c.product_id] for c in candidates], np.int64),
                   np.array([c.score for c in candidates], np.float64),
                   tiers.pop() if tiers else 0, np.zeros(len(candidates), np.bool_),
                   lambda rows: [candidates[r] for r in rows])


def _pool(parts: list[_Rows]) -> Pool:
    """The rows of every part, in order, as one ``Pool``."""
    if len(parts) == 1:
        part = parts[0]
        return Pool(part.codes, part.scores, np.full(len(part.codes), part.tier, np.int64),
                    part.judged, part.build)
    sizes = [len(p.codes) for p in parts]
    starts = list(itertools.accumulate(sizes, initial=0))

    def build(rows: list[int]) -> list[Candidate]:
        kinds = [bisect.bisect_right(starts, r) - 1 for r in rows]
        built = [iter(part.build([r - starts[k] for r, kind in zip(rows, kinds, strict=True)
                                  if kind == k])) for k, part in enumerate(parts)]
        return [next(built[kind]) for kind in kinds]

    return Pool(np.concatenate([p.codes for p in parts]),
                np.concatenate([p.scores for p in parts]),
                np.repeat(np.array([p.tier for p in parts], np.int64), sizes),
                np.concatenate([p.judged for p in parts]), build)


def _co_viewed_rows(index: ServingIndex, table: Neighbours, product_id: str, ids: np.ndarray,
                    sims: np.ndarray, support: np.ndarray, scores: np.ndarray,
                    session: Session, limit: int) -> _Rows:
    """The co-viewed neighbours (codes ``ids``, their similarity, support and score), then
    the products the session adds (``session.merge``: ``rescore``'s arithmetic on arrays)."""
    counted = f"{index.ranking.also_viewed_counts}_with_both"
    n = len(ids)
    found = merge(index, table, ids, scores, session, limit)
    if found is None:
        codes, judged = ids, np.ones(n, np.bool_)
    else:
        codes, scores = found.codes, found.scores
        judged = np.arange(len(codes)) < n

    def build(rows: list[int]) -> list[Candidate]:
        at = np.asarray(rows, np.int64)
        own = np.minimum(at, n - 1)  # a neighbour's own figures (the session's rows: unused)
        pids = index.id_array[codes[at]].tolist()
        values = scores[at].tolist()
        supports, similarities = support[own].tolist(), sims[own].tolist()
        if found is None:
            return [Candidate(pid, value, "also_viewed", {
                "seed": product_id, counted: count, "similarity": round(similarity, 6)})
                for pid, value, count, similarity in zip(pids, values, supports, similarities,
                                                         strict=True)]
        names = found.named(index, at)
        out = []
        for r, pid, value, count, similarity, hit, named in zip(
                rows, pids, values, supports, similarities, found.hit[own].tolist(), names,
                strict=True):
            if r >= n:  # a product the session adds
                out.append(Candidate(pid, value, "session", session_evidence(named, value)))
                continue
            evidence = {"seed": product_id, counted: count, "similarity": round(similarity, 6)}
            if hit:
                evidence["session"] = named
            out.append(Candidate(pid, value, "also_viewed", evidence))
        return out

    return _Rows(codes, scores, 0, judged, build)


@njit(cache=True, nogil=True)
def _co_viewed(t_ids: np.ndarray, t_scores: np.ndarray, t_support: np.ndarray, code: int,
               weight: float, limit: int
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """A product's also-viewed row, ranked: its ``limit`` best neighbours (ties: row order)
    by similarity / the row's best + ``weight`` x support / the row's best (a best that is
    not positive scales nothing), as (codes, similarities, supports, scores), and the row's
    strongest support (0: an empty row)."""
    if code >= t_ids.shape[0]:
        raise ValueError("also-viewed: a product code is outside the neighbour table")
    width = t_ids.shape[1]
    n = 0
    for j in range(width):
        if t_ids[code, j] >= 0:
            n += 1
    ids = np.empty(n, np.int64)
    sims = np.empty(n, np.float64)
    support = np.empty(n, np.int64)
    m = 0
    for j in range(width):
        if t_ids[code, j] >= 0:
            ids[m], sims[m], support[m] = t_ids[code, j], t_scores[code, j], t_support[code, j]
            m += 1
    if n == 0:
        return ids, sims, support, sims, 0
    sims_peak = sims.max()
    support_f = support.astype(np.float64)
    support_peak = support_f.max()
    scaled_sims = sims / sims_peak if sims_peak > 0 else sims
    scaled_support = support_f / support_peak if support_peak > 0 else support_f
    scores = scaled_sims + weight * scaled_support
    top = np.argsort(-scores, kind="mergesort")[:limit]
    return ids[top], sims[top], support[top], scores[top], int(support.max())
