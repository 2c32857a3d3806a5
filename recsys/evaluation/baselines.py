"""Baseline rankers under the ranker contract (``recsys.models.ranker``), measured beside the
engine: best sellers (``popularity``); co-occurrence confidence, what plain pairwise rules give
(``cooccurrence``: sum over the query's items of count(i, j) / count(i)); each customer's own
most-bought products (``own_most_bought``, then best sellers). The served models' rankers
(implicit BM25 and cosine item-kNN, ALS: ``recsys.models.rankers``) are baselines too.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import scipy.sparse as sp

from recsys.models.ranker import Ranker, binary, csr_restore, csr_state
from recsys.models.rankers import ALSRanker, CosineItemKNN, ItemKNNRanker

__all__ = ["Popularity", "Cooccurrence", "OwnMostBought", "ItemKNNRanker", "CosineItemKNN",
           "ALSRanker"]


class Popularity(Ranker):
    """Best sellers: the column sums of the training matrix (rows holding the item)."""

    name = "popularity"

    def __init__(self) -> None:
        self.counts = np.zeros(0, dtype=np.float32)

    def fit(self, matrix: sp.csr_matrix) -> Popularity:
        self.counts = np.asarray(sp.csr_matrix(matrix).sum(axis=0), dtype=np.float32).ravel()
        self.n_items = len(self.counts)
        return self

    def score(self, queries: sp.csr_matrix) -> np.ndarray:
        return np.broadcast_to(self.counts, (queries.shape[0], self.n_items))

    def _state(self) -> dict[str, np.ndarray]:
        return {"counts": self.counts}

    def _restore(self, state: dict[str, np.ndarray]) -> None:
        self.counts = state["counts"]


class Cooccurrence(Ranker):
    """Pairwise rule confidence count(i, j) / count(i), combined over the query's items by
    ``sum`` or ``max`` (the best single rule, as a rule list ranks).

    Pairs seen in fewer than ``min_count`` rows are dropped (a rule miner's support threshold).
    """

    name = "cooccurrence"

    def __init__(self, min_count: int = 1, combine: Literal["sum", "max"] = "sum") -> None:
        self.min_count, self.combine = min_count, combine
        self.confidence = sp.csr_matrix((0, 0), dtype=np.float32)

    def params(self) -> dict[str, Any]:
        return {"min_count": self.min_count, "combine": self.combine}

    def fit_key(self) -> str:
        return repr({"min_count": self.min_count})

    def fit(self, matrix: sp.csr_matrix) -> Cooccurrence:
        x = binary(matrix)
        co = sp.csr_matrix(x.T @ x)
        counts = co.diagonal().astype(np.float64)
        co.setdiag(0)
        co.data[co.data < self.min_count] = 0
        co.eliminate_zeros()
        self.confidence = sp.csr_matrix(
            sp.diags(1.0 / np.maximum(counts, 1.0)) @ co, dtype=np.float32)
        self.n_items = x.shape[1]
        return self

    def score(self, queries: sp.csr_matrix, max_floats: int = 1 << 24) -> np.ndarray:
        q = binary(queries)
        if self.combine == "sum":
            return (q @ self.confidence).toarray()
        out = np.zeros(q.shape, dtype=np.float32)
        step = max(1, max_floats // max(self.n_items, 1))  # query items per block
        lo = 0
        while lo < q.shape[0]:  # blocks of rows holding at most ``step`` query items
            hi = int(np.searchsorted(q.indptr, q.indptr[lo] + step, side="right")) - 1
            hi = min(max(hi, lo + 1), q.shape[0])
            block = q[lo:hi]
            if block.nnz:
                rows = self.confidence[block.indices].toarray()  # one row per query item
                starts = block.indptr[:-1]
                filled = np.diff(block.indptr) > 0
                out[lo:hi][filled] = np.maximum.reduceat(rows, starts[filled], axis=0)
            lo = hi
        return out

    def _state(self) -> dict[str, np.ndarray]:
        return csr_state("confidence", self.confidence)

    def _restore(self, state: dict[str, np.ndarray]) -> None:
        self.confidence = csr_restore("confidence", state)


class OwnMostBought(Ranker):
    """The customer's own products by how many of their orders held them, then best sellers.

    Query rows are purchase histories (orders holding each item); ties go to the more popular
    product, and a popularity term below 0.5 never outranks one more order.
    """

    name = "own_most_bought"

    def __init__(self) -> None:
        self.tiebreak = np.zeros(0, dtype=np.float32)

    def fit(self, matrix: sp.csr_matrix) -> OwnMostBought:
        counts = np.asarray(sp.csr_matrix(matrix).sum(axis=0), dtype=np.float64).ravel()
        self.tiebreak = (0.49 * counts / max(counts.max(initial=0.0), 1.0)).astype(np.float32)
        self.n_items = len(counts)
        return self

    def score(self, queries: sp.csr_matrix) -> np.ndarray:
        return sp.csr_matrix(queries, dtype=np.float32).toarray() + self.tiebreak

    def _state(self) -> dict[str, np.ndarray]:
        return {"tiebreak": self.tiebreak}

    def _restore(self, state: dict[str, np.ndarray]) -> None:
        self.tiebreak = state["tiebreak"]

