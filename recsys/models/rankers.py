"""The served models under the ranker contract (``recsys.models.ranker``), as the models job
trains them: implicit item-kNN (BM25 or cosine; the also-viewed and co-purchase tables), ALS
(customer lists; a query's user vector solved from its items, as for anonymous shoppers) and
EASE (bought together), each scoring whole queries at once.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from recsys.models.ease import ease_neighbours
from recsys.models.implicit_adapter import ALS, ItemKNN
from recsys.models.ranker import Ranker, binary, csr_restore, csr_state

__all__ = ["ItemKNNRanker", "CosineItemKNN", "ALSRanker", "EaseRanker", "solve_users",
           "table_matrix", "ease_similarity"]


class ItemKNNRanker(Ranker):
    """implicit item-kNN (``bm25`` or ``cosine``): query @ item x item similarity."""

    name = "bm25_itemknn"

    def __init__(self, kind: Literal["bm25", "cosine"] = "bm25", k: int = 100, k1: float = 1.2,
                 b: float = 0.75) -> None:
        self.kind, self.k, self.k1, self.b = kind, k, k1, b
        self.similarity = sp.csr_matrix((0, 0), dtype=np.float32)

    def params(self) -> dict[str, Any]:
        if self.kind == "cosine":
            return {"kind": "cosine", "k": self.k}
        return {"kind": self.kind, "k": self.k, "k1": self.k1, "b": self.b}

    def describe(self) -> str:
        return f"{self.kind}, K={self.k}" + (
            f", K1={self.k1}, B={self.b}" if self.kind == "bm25" else "")

    def fit(self, matrix: sp.csr_matrix) -> ItemKNNRanker:
        knn = ItemKNN(self.kind, k=self.k, k1=self.k1, b=self.b).fit(sp.csr_matrix(matrix))
        assert knn.similarity is not None
        self.similarity = sp.csr_matrix(knn.similarity, dtype=np.float32)
        self.n_items = matrix.shape[1]
        return self

    def score(self, queries: sp.csr_matrix) -> np.ndarray:
        return (sp.csr_matrix(queries, dtype=np.float32) @ self.similarity).toarray()

    def _state(self) -> dict[str, np.ndarray]:
        return csr_state("similarity", self.similarity)

    def _restore(self, state: dict[str, np.ndarray]) -> None:
        self.similarity = csr_restore("similarity", state)


class CosineItemKNN(ItemKNNRanker):
    """implicit cosine item-kNN (the reference figures' ``cosine`` row)."""

    name = "cosine_itemknn"

    def __init__(self, kind: Literal["bm25", "cosine"] = "cosine", k: int = 100,
                 k1: float = 1.2, b: float = 0.75) -> None:
        super().__init__("cosine", k, k1, b)


def solve_users(item_factors: np.ndarray, queries: sp.csr_matrix, regularization: float,
                 alpha: float, max_floats: int = 1 << 23) -> np.ndarray:
    """User vectors for query rows as implicit's ALS solves them (confidence = alpha x value).

    x_u = (Y'Y + reg I + sum_i (c_ui - 1) y_i y_i')^-1 sum_i c_ui y_i. Rows are sorted by
    length and solved in batches: each batch's factors padded to (rows, longest, f), its
    (c - 1)-weighted Gram matrices one batched matmul, its systems one batched solve.
    """
    y = item_factors.astype(np.float64)
    f = y.shape[1]
    base = y.T @ y + regularization * np.eye(f)
    conf = sp.csr_matrix(queries, dtype=np.float64, copy=True)
    conf.data *= alpha
    b = np.asarray(conf @ y)
    users = np.zeros((conf.shape[0], f))
    weight = conf.data - 1.0
    if not np.any(weight != 0):  # alpha x value == 1 everywhere: one system for all rows
        return np.linalg.solve(base, b.T).T
    lengths = np.diff(conf.indptr)
    order = np.argsort(lengths, kind="stable")
    padded_len = np.maximum(lengths[order], 1)
    lo = 0
    while lo < len(order):  # batches of rows of similar length, bounded in size
        # rows lo..i fit while (i - lo + 1) x length_i x f <= max_floats (both grow with i)
        fits = np.arange(1, len(order) - lo + 1) * padded_len[lo:] * f <= max_floats
        hi = lo + max(1, int(fits.sum()))
        rows = order[lo:hi]
        longest = max(int(lengths[rows].max()), 1)
        slots = np.arange(longest)
        valid = slots[None, :] < lengths[rows][:, None]
        where = (conf.indptr[rows][:, None] + slots[None, :])[valid]
        padded = np.zeros((len(rows), longest, f))
        padded[valid] = y[conf.indices[where]]
        weights = np.zeros((len(rows), longest))
        weights[valid] = weight[where]
        with threadpool_limits(limits=1, user_api="blas"):  # many small systems: 1 thread
            a = base + np.matmul((padded * weights[:, :, None]).transpose(0, 2, 1), padded)
            users[rows] = np.linalg.solve(a, b[rows][:, :, None])[:, :, 0]
        lo = hi
    return users


class ALSRanker(Ranker):
    """implicit ALS; a query's user vector is solved from its items (no user id needed)."""

    name = "als"

    def __init__(self, factors: int = 64, regularization: float = 0.01, alpha: float = 1.0,
                 iterations: int = 15, seed: int = 42) -> None:
        self.factors, self.regularization, self.alpha = factors, regularization, alpha
        self.iterations, self.seed = iterations, seed
        self.item_factors = np.zeros((0, factors), dtype=np.float32)

    def params(self) -> dict[str, Any]:
        return {"factors": self.factors, "regularization": self.regularization,
                "alpha": self.alpha, "iterations": self.iterations, "seed": self.seed}

    def fit(self, matrix: sp.csr_matrix) -> ALSRanker:
        model = ALS(factors=self.factors, regularization=self.regularization, alpha=self.alpha,
                    iterations=self.iterations, seed=self.seed).fit(sp.csr_matrix(matrix))
        assert model.item_factors is not None
        self.item_factors = model.item_factors
        self.n_items = matrix.shape[1]
        return self

    def score(self, queries: sp.csr_matrix) -> np.ndarray:
        users = solve_users(self.item_factors, sp.csr_matrix(queries), self.regularization,
                             self.alpha)
        return (users @ self.item_factors.T.astype(np.float64)).astype(np.float32)

    def _state(self) -> dict[str, np.ndarray]:
        return {"item_factors": self.item_factors}

    def _restore(self, state: dict[str, np.ndarray]) -> None:
        self.item_factors = state["item_factors"]


def table_matrix(ids: np.ndarray, scores: np.ndarray, n_items: int) -> sp.csr_matrix:
    """An (n_items, K) neighbour table as an items x items CSR matrix (padding dropped)."""
    rows = np.repeat(np.arange(ids.shape[0]), ids.shape[1])
    keep = ids.ravel() >= 0
    return sp.csr_matrix((scores.ravel()[keep].astype(np.float32),
                          (rows[keep], ids.ravel()[keep])), shape=(n_items, n_items))


def ease_similarity(matrix: sp.csr_matrix, *, lam: float,
                    row_weight: Literal["none", "sqrt"] = "sqrt", top_k: int = 50,
                    max_items: int = 10_000) -> sp.csr_matrix:
    """EASE item x item weights (items x items CSR), each row cut to its ``top_k`` best: the
    models job's table (``recsys.models.ease``) as a matrix."""
    ease = ease_neighbours(matrix, lam=lam, top_k=top_k, max_items=max_items,
                           sqrt_row_weight=row_weight == "sqrt", threads=None)
    return table_matrix(ease.ids, ease.scores, matrix.shape[1])


class EaseRanker(Ranker):
    """EASE (Steck 2019) as the models job serves it: each item's ``top_k`` EASE neighbours,
    orders weighted 1/sqrt(size), over the ``max_items`` best sellers; a query scores the sum
    of its items' rows."""

    name = "ease"

    def __init__(self, lam: float = 3.0, top_k: int = 50, max_items: int = 10_000) -> None:
        self.lam, self.top_k, self.max_items = lam, top_k, max_items
        self.table = sp.csr_matrix((0, 0), dtype=np.float32)

    def params(self) -> dict[str, Any]:
        return {"lam": self.lam, "top_k": self.top_k, "max_items": self.max_items}

    def fit(self, matrix: sp.csr_matrix) -> EaseRanker:
        self.table = ease_similarity(matrix, lam=self.lam, top_k=self.top_k,
                                     max_items=self.max_items)
        self.n_items = matrix.shape[1]
        return self

    def score(self, queries: sp.csr_matrix) -> np.ndarray:
        return (binary(queries) @ self.table).toarray()

    def _state(self) -> dict[str, np.ndarray]:
        return csr_state("table", self.table)

    def _restore(self, state: dict[str, np.ndarray]) -> None:
        self.table = csr_restore("table", state)
