"""Ranking metrics over top-k lists, vectorised; every formula and range in one place.

A case has a ranked list ``ranked[i]`` (item codes, best first, ``-1`` = empty slot, any other
negative code = an item the evaluation does not know, which never matches) and either one
held-out target ``targets[i]`` or a set of relevant items (a cases x items CSR matrix).

One target (rank r = 1-based position of the target, r > k = missed):
- ``hr@k``  hit rate: share of cases with r <= k, in [0, 1];
- ``mrr@k`` mean reciprocal rank: mean of 1/r, 0 when r > k, in [0, 1];
- ``ndcg@k`` with one relevant item: mean of 1/log2(r + 1), 0 when r > k, in [0, 1];
- ``revenue_hr@k``: sum of the held-out lines' revenue with r <= k / sum of all held-out
  lines' revenue (the share of held-out revenue recovered), in [0, 1]; cases without a known
  revenue are left out of both sums.

A set of relevant items T (a next basket):
- ``recall@k``: |top-k n T| / |T|, averaged over cases, in [0, 1];
- ``ndcg@k``: DCG / IDCG with DCG = sum over positions p <= k holding an item of T of
  1/log2(p + 1), IDCG the same for min(|T|, k) hits at the top, in [0, 1];
- ``hr@k``: share of cases with at least one item of T in the first k.

Both: ``coverage@k``: distinct items in any case's first k / items in the catalog, in [0, 1].
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

__all__ = [
    "target_ranks",
    "hit_rate",
    "mrr",
    "ndcg_single",
    "revenue_hit_rate",
    "coverage",
    "relevant_hits",
    "recall",
    "ndcg_multi",
    "hit_rate_curve",
    "single_target_metrics",
    "multi_target_metrics",
]


def target_ranks(ranked: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """1-based position of each case's target in its list (n,), 0 when absent."""
    ranked = np.asarray(ranked)
    match = ranked == np.asarray(targets)[:, None]
    found = match.any(axis=1)
    return np.where(found, match.argmax(axis=1) + 1, 0).astype(np.int64)


def _within(ranks: np.ndarray, k: int) -> np.ndarray:
    return (ranks > 0) & (ranks <= k)


def hit_rate(ranks: np.ndarray, k: int) -> float:
    """Share of cases whose target ranks in the first k."""
    return float(_within(ranks, k).mean()) if len(ranks) else 0.0


def mrr(ranks: np.ndarray, k: int) -> float:
    """Mean of 1/rank of the target, 0 beyond k."""
    if not len(ranks):
        return 0.0
    return float(np.where(_within(ranks, k), 1.0 / np.maximum(ranks, 1), 0.0).mean())


def ndcg_single(ranks: np.ndarray, k: int) -> float:
    """NDCG@k with one relevant item: mean of 1/log2(rank + 1), 0 beyond k."""
    if not len(ranks):
        return 0.0
    return float(np.where(_within(ranks, k), 1.0 / np.log2(np.maximum(ranks, 1) + 1.0),
                          0.0).mean())


def revenue_hit_rate(ranks: np.ndarray, revenue: np.ndarray, k: int) -> float:
    """Share of held-out revenue whose line ranks in the first k (NaN revenue left out)."""
    revenue = np.asarray(revenue, dtype=np.float64)
    known = np.isfinite(revenue) & (revenue > 0)
    total = revenue[known].sum()
    if total <= 0:
        return float("nan")
    return float(revenue[known & _within(ranks, k)].sum() / total)


def coverage(ranked: np.ndarray, k: int, n_items: int) -> float:
    """Distinct known items in any case's first k positions / n_items."""
    top = np.asarray(ranked)[:, :k]
    return float(len(np.unique(top[top >= 0])) / n_items) if n_items else 0.0


def relevant_hits(ranked: np.ndarray, relevant: sp.csr_matrix) -> np.ndarray:
    """(n, len) bool: whether each listed item is in its case's relevant set."""
    ranked = np.asarray(ranked, dtype=np.int64)
    rel = sp.csr_matrix(relevant)
    n_items = rel.shape[1]
    rows = np.repeat(np.arange(rel.shape[0], dtype=np.int64), np.diff(rel.indptr))
    keys = np.sort(rows * n_items + rel.indices.astype(np.int64))
    query = np.arange(len(ranked), dtype=np.int64)[:, None] * n_items + ranked
    if not len(keys):
        return np.zeros(ranked.shape, dtype=bool)
    pos = np.minimum(np.searchsorted(keys, query), len(keys) - 1)
    return (ranked >= 0) & (keys[pos] == query)


def recall(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> float:
    """Mean over cases of (relevant items in the first k) / (relevant items)."""
    if not len(hits):
        return 0.0
    return float((hits[:, :k].sum(axis=1) / np.maximum(n_relevant, 1)).mean())


def ndcg_multi(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> float:
    """Mean NDCG@k with binary relevance and min(|T|, k) ideal hits."""
    if not len(hits):
        return 0.0
    gains = 1.0 / np.log2(np.arange(2, k + 2))
    top = hits[:, :k]
    dcg = (top * gains[: top.shape[1]]).sum(axis=1)
    ideal = np.concatenate([[0.0], np.cumsum(gains)])[np.minimum(n_relevant, k)]
    return float(np.where(ideal > 0, dcg / np.where(ideal > 0, ideal, 1.0), 0.0).mean())


def hit_rate_curve(ranks: np.ndarray, max_k: int) -> list[float]:
    """HR@1 .. HR@max_k for one-target cases."""
    if not len(ranks):
        return [0.0] * max_k
    counts = np.bincount(ranks[ranks > 0], minlength=max_k + 1)[1: max_k + 1]
    return (np.cumsum(counts) / len(ranks)).tolist()


def single_target_metrics(ranked: np.ndarray, targets: np.ndarray, ks: Sequence[int],
                          n_items: int, *, revenue: np.ndarray | None = None,
                          mrr_ndcg: bool = True) -> tuple[dict[str, float], list[float]]:
    """hr@k (and mrr@k, ndcg@k, revenue_hr@k, coverage@k) for every k, and the HR curve."""
    ranks = target_ranks(ranked, targets)
    out: dict[str, float] = {}
    for k in ks:
        out[f"hr@{k}"] = hit_rate(ranks, k)
        if mrr_ndcg:
            out[f"mrr@{k}"] = mrr(ranks, k)
            out[f"ndcg@{k}"] = ndcg_single(ranks, k)
        if revenue is not None:
            out[f"revenue_hr@{k}"] = revenue_hit_rate(ranks, revenue, k)
        out[f"coverage@{k}"] = coverage(ranked, k, n_items)
    return out, hit_rate_curve(ranks, max(ks))


def multi_target_metrics(ranked: np.ndarray, relevant: sp.csr_matrix, ks: Sequence[int],
                         n_items: int, *, n_relevant: np.ndarray | None = None,
                         ) -> tuple[dict[str, float], list[float]]:
    """recall@k, ndcg@k, hr@k (any hit) and coverage@k for every k, and the HR curve.

    ``n_relevant`` (default: the row counts of ``relevant``) is |T| per case, so that items a
    model cannot know (first sold after the cutoff) still count in the denominator.
    """
    hits = relevant_hits(ranked, relevant)
    n_rel = np.diff(sp.csr_matrix(relevant).indptr) if n_relevant is None else np.asarray(
        n_relevant)
    out: dict[str, float] = {}
    for k in ks:
        out[f"recall@{k}"] = recall(hits, n_rel, k)
        out[f"ndcg@{k}"] = ndcg_multi(hits, n_rel, k)
        out[f"hr@{k}"] = float(hits[:, :k].any(axis=1).mean()) if len(hits) else 0.0
        out[f"coverage@{k}"] = coverage(ranked, k, n_items)
    first = np.where(hits.any(axis=1), hits.argmax(axis=1) + 1, 0) if len(hits) else np.zeros(
        0, dtype=np.int64)
    return out, hit_rate_curve(first.astype(np.int64), max(ks))
