"""EASE item-item weights (Steck 2019) for "bought together" and cart add-ons.

B = -P / diag(P) with P = (X'X + lambda I)^-1, X the orders x products matrix with each row
weighted 1/sqrt(basket size), so that big wholesale baskets do not drown the rest. Unlike
co-occurrence similarity, the weights explain an item *given the other items*, which is what a
cart scorer needs. Only positive weights become neighbours.

The closed form inverts a dense (m x m) Gram matrix with m = min(products, ``max_items``):
the ``max_items`` products in most orders (O(m^3) time, 8 m^2 bytes: 800 MB at 10,000). The
other products get no EASE neighbours; the co-purchase item-kNN table still covers them.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

__all__ = ["ease_neighbours", "ease_from_gram", "ease_items"]

_BLOCK = 1024  # rows per top-k block: bounds the copies the selection makes


def ease_neighbours(orders_items: sp.csr_matrix, *, lam: float, top_k: int,
                    max_items: int = 10_000, sqrt_row_weight: bool = True,
                    threads: int | None = 1) -> tuple[np.ndarray, np.ndarray]:
    """Top-K EASE neighbours of every product: ids (int32, -1 padded) and scores (float32),
    (n_items, top_k), best first, ties to the lower code, the product itself left out."""
    x = sp.csr_matrix(orders_items, dtype=np.float64, copy=True)
    x.eliminate_zeros()
    x.data[:] = 1.0
    n_items = x.shape[1]
    if sqrt_row_weight:
        sizes = np.diff(x.indptr).astype(np.float64)
        x.data /= np.sqrt(np.maximum(np.repeat(sizes, np.diff(x.indptr)), 1.0))
    counts = np.diff(sp.csc_matrix(x).indptr)
    kept = ease_items(counts, max_items)
    sub = sp.csc_matrix(x)[:, kept]
    with threadpool_limits(limits=threads, user_api="blas"):
        gram = np.asarray((sub.T @ sub).toarray(), dtype=np.float64)
    return ease_from_gram(gram, kept, n_items, lam=lam, top_k=top_k, threads=threads)


def ease_items(counts: np.ndarray, max_items: int) -> np.ndarray:
    """The codes EASE covers, ascending: the ``max_items`` products in most orders (ties to
    the lower code), never one in no order."""
    kept = np.sort(np.argsort(-counts, kind="stable")[:max_items])
    return kept[counts[kept] > 0]


def ease_from_gram(gram: np.ndarray, kept: np.ndarray, n_items: int, *, lam: float,
                   top_k: int, threads: int | None = 1) -> tuple[np.ndarray, np.ndarray]:
    """Top-K EASE neighbours from the Gram matrix of the ``kept`` products (m x m, float64,
    changed in place): the ids and scores ``ease_neighbours`` returns."""
    ids = np.full((n_items, top_k), -1, dtype=np.int32)
    scores = np.zeros((n_items, top_k), dtype=np.float32)
    if len(kept) < 2:
        return ids, scores
    with threadpool_limits(limits=threads, user_api="blas"):
        gram[np.diag_indices_from(gram)] += lam
        weights = np.linalg.inv(gram)
    del gram
    weights /= -np.diag(weights)[None, :]
    np.fill_diagonal(weights, 0.0)
    for lo in range(0, len(kept), _BLOCK):
        block_ids, block_scores = _row_top_k(weights[lo: lo + _BLOCK], top_k)
        rows = kept[lo: lo + _BLOCK]
        ids[rows] = np.where(block_ids >= 0, kept[np.maximum(block_ids, 0)], -1)
        scores[rows] = block_scores
    return ids, scores


def _row_top_k(block: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's k largest positive entries (ties to the lower column), -1 / 0 padded."""
    n, m = block.shape
    kk = min(k, m)
    part = np.argpartition(-block, kk - 1, axis=1)[:, :kk] if kk < m else np.tile(
        np.arange(m), (n, 1))
    vals = np.take_along_axis(block, part, axis=1)
    # the partition may split ties at the k-th value arbitrarily: widen to every tied column
    kth = vals.min(axis=1, keepdims=True)
    tied = (kth > 0) & ((block == kth).sum(axis=1, keepdims=True)
                        > (vals == kth).sum(axis=1, keepdims=True))
    if tied.any():
        cols = np.tile(np.arange(m), (n, 1))
        order = np.lexsort((cols, -block), axis=1)[:, :kk]
    else:
        order = np.take_along_axis(part, np.lexsort((part, -vals), axis=1), axis=1)
    top = np.take_along_axis(block, order, axis=1)
    positive = top > 0
    out_ids = np.where(positive, order, -1).astype(np.int32)
    out_scores = np.where(positive, top, 0.0).astype(np.float32)
    out_k = np.full((n, k), -1, dtype=np.int32)
    out_s = np.zeros((n, k), dtype=np.float32)
    out_k[:, :kk], out_s[:, :kk] = out_ids, out_scores
    return out_k, out_s
