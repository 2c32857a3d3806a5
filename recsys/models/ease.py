"""EASE item-item weights (Steck 2019) for "bought together" and cart add-ons.

B = -P / diag(P) with P = (X'X + lambda I)^-1, X the orders x products matrix with each row
weighted 1/sqrt(basket size), so that big wholesale baskets do not drown the rest. Unlike
co-occurrence similarity, the weights explain an item *given the other items*, which is what a
cart scorer needs. Only positive weights become neighbours.

The closed form inverts a dense (m x m) Gram matrix over the m products in most orders,
m = min(products, ``max_items``, the most that fit ``memory_mb``), O(m^3) time. Memory is one
float32 m x m array (4 m^2 bytes: 381 MiB at 10,000), built in row blocks and inverted in
place (Cholesky, LAPACK potrf + potri), plus block-sized temporaries; a cap set by the budget is
logged as a warning and reported. The other products get no EASE neighbours; the co-purchase
item-kNN table still covers them.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from scipy.linalg import lapack
from threadpoolctl import threadpool_limits

__all__ = ["EaseTable", "ease_neighbours", "ease_item_limit", "ease_coverage", "ease_items",
           "ease_from_gram", "DEFAULT_MEMORY_MB", "GRAM_DTYPE"]

log = logging.getLogger(__name__)

DEFAULT_MEMORY_MB = 512  # the dense matrix's budget: 11,585 products in float32
GRAM_DTYPE = np.float32  # the dense matrix EASE inverts in place
_BLOCK_FLOATS = 1 << 22  # block x m elements per temporary (16 MiB of float32 at most)


@dataclass(frozen=True)
class EaseTable:
    """Top-K EASE neighbours of every product: ids (int32, -1 padded) and scores (float32),
    (n_items, top_k), best first; ``warnings`` says when the memory budget capped the items."""

    ids: np.ndarray
    scores: np.ndarray
    products: int  # how many products the dense matrix covered
    warnings: list[str] = field(default_factory=list)


def ease_item_limit(max_items: int, memory_mb: float) -> int:
    """The most products EASE covers: ``max_items``, lowered until the dense float32 m x m
    matrix fits in ``memory_mb`` MiB."""
    fits = math.isqrt(int(memory_mb * 2**20) // np.dtype(GRAM_DTYPE).itemsize)
    return max(min(max_items, fits), 0)


def ease_neighbours(orders_items: sp.csr_matrix, *, lam: float, top_k: int,
                    max_items: int = 10_000, memory_mb: float = DEFAULT_MEMORY_MB,
                    sqrt_row_weight: bool = True, threads: int | None = 1) -> EaseTable:
    """Top-K EASE neighbours of every product (ties to the lower code, the product itself left
    out), over the products in most orders (see the module docstring for the caps)."""
    x = sp.csr_matrix(orders_items, dtype=np.float64, copy=True)
    x.eliminate_zeros()
    x.data[:] = 1.0
    n_items = x.shape[1]
    if sqrt_row_weight:
        sizes = np.diff(x.indptr).astype(np.float64)
        x.data /= np.sqrt(np.maximum(np.repeat(sizes, np.diff(x.indptr)), 1.0))
    x = sp.csc_matrix(x)
    kept, warnings = ease_coverage(np.diff(x.indptr), max_items, memory_mb)
    gram = _gram(x[:, kept]) if len(kept) >= 2 else np.zeros((0, 0), GRAM_DTYPE)
    ids, scores = ease_from_gram(gram, kept, n_items, lam=lam, top_k=top_k, threads=threads)
    return EaseTable(ids, scores, len(kept) if len(kept) >= 2 else 0, warnings)


def ease_coverage(counts: np.ndarray, max_items: int,
                  memory_mb: float) -> tuple[np.ndarray, list[str]]:
    """The codes EASE covers (see :func:`ease_items`) under the memory budget, and the warning
    when the budget, not ``max_items``, set the cap. ``counts``: orders per product code."""
    ordered = int((counts > 0).sum())
    limit = ease_item_limit(max_items, memory_mb)
    warnings = []
    if limit < min(max_items, ordered):
        message = (f"EASE covers the {limit:,} best-selling of {ordered:,} ordered products, "
                   f"not {min(max_items, ordered):,}: its dense {limit:,} x {limit:,} matrix "
                   f"must fit ease_memory_mb = {memory_mb:g} MiB (4 m^2 bytes); the others "
                   "get co-purchase neighbours only")
        log.warning(message)
        warnings.append(message)
    return ease_items(counts, limit), warnings


def ease_items(counts: np.ndarray, max_items: int) -> np.ndarray:
    """The codes EASE covers, ascending: the ``max_items`` products in most orders (ties to
    the lower code), never one in no order."""
    kept = np.sort(np.argsort(-counts, kind="stable")[:max_items])
    return kept[counts[kept] > 0]


def ease_from_gram(gram: np.ndarray, kept: np.ndarray, n_items: int, *, lam: float,
                   top_k: int, threads: int | None = 1) -> tuple[np.ndarray, np.ndarray]:
    """Top-K EASE neighbours from the Gram matrix X'X of the ``kept`` products (m x m; its
    upper triangle is read; a float32 one is overwritten, another dtype is copied to float32
    first): ids (int32, -1 padded) and scores (float32), (n_items, top_k)."""
    ids = np.full((n_items, top_k), -1, dtype=np.int32)
    scores = np.zeros((n_items, top_k), dtype=np.float32)
    if len(kept) < 2:
        return ids, scores
    weights = np.ascontiguousarray(gram, dtype=GRAM_DTYPE)
    weights[np.diag_indices(len(kept))] += GRAM_DTYPE(lam)
    with threadpool_limits(limits=threads, user_api="blas"):
        _inverse_in_place(weights)
    diagonal = np.diag(weights).copy()
    block = max(1, _BLOCK_FLOATS // len(kept))
    for lo in range(0, len(kept), block):
        rows = weights[lo: lo + block]
        rows /= -diagonal[None, :]  # B[i, j] = -P[i, j] / P[j, j]
        rows[np.arange(len(rows)), np.arange(lo, lo + len(rows))] = 0.0
        block_ids, block_scores = _row_top_k(rows, top_k)
        codes = kept[lo: lo + block]
        ids[codes] = np.where(block_ids >= 0, kept[np.maximum(block_ids, 0)], -1)
        scores[codes] = block_scores
    return ids, scores


def _gram(x: sp.csc_matrix) -> np.ndarray:
    """X'X as a dense float32 array, built in row blocks (each entry summed in float64 and
    rounded once); only the upper triangle is filled (LAPACK reads one)."""
    m = x.shape[1]
    rows = sp.csr_matrix(x.T)
    gram = np.zeros((m, m), dtype=GRAM_DTYPE)
    block = max(1, _BLOCK_FLOATS // m)
    for lo in range(0, m, block):
        hi = min(lo + block, m)
        gram[lo:hi, lo:] = (rows[lo:hi] @ x[:, lo:]).toarray()
    return gram


def _inverse_in_place(gram: np.ndarray) -> np.ndarray:
    """The inverse of a symmetric positive definite matrix whose upper triangle ``gram``
    holds, written over ``gram`` (Cholesky: no second m x m array) and made symmetric."""
    potrf, potri = lapack.get_lapack_funcs(("potrf", "potri"), (gram,))
    # gram.T is Fortran-ordered with gram's upper triangle as its lower one: LAPACK works on
    # it without a copy
    factor, info = potrf(gram.T, lower=1, clean=0, overwrite_a=1)
    if info == 0:
        factor, info = potri(factor, lower=1, overwrite_c=1)
    if info != 0:
        raise ValueError(f"EASE: X'X + lambda I is not positive definite in "
                         f"{np.dtype(GRAM_DTYPE).name} (LAPACK info {info}); raise ease_lambda")
    assert np.shares_memory(factor, gram), "LAPACK copied the m x m matrix"
    m = gram.shape[0]
    block = max(1, _BLOCK_FLOATS // m)
    for lo in range(0, m, block):  # lower triangle from the upper, one block of rows at a time
        hi = min(lo + block, m)
        gram[lo:hi, :lo] = gram[:lo, lo:hi].T
        square = gram[lo:hi, lo:hi]
        square[:] = np.triu(square) + np.triu(square, 1).T
    return gram


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
