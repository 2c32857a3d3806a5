"""``engine_candidate``: variants of the served rankers, measured beside the engine.

Each is built only from what an artifact can hold (per-item neighbour tables cut to the
engine's ``top_k``, purchase histories) and scores a whole query at once, so that a change to
``recsys/serving/recommend.py`` can be judged on numbers before it is made:

- carts (``CartCandidate``): the EASE neighbour scores of every cart item summed
  (``recsys.models.rankers.EaseRanker``), plus ``bm25_weight`` x the BM25 table's sums, each
  part scaled to a row maximum of 1: the served cart score without the rules term.
- also viewed (``ViewCandidate``): the BM25 also-viewed table blended with session
  co-occurrence counts.
- next basket (``HistoryCandidate``): the customer's own most-bought products blended with
  BM25 item-kNN over their history (repeat purchases first, then what goes with them).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import scipy.sparse as sp

from recsys.evaluation.baselines import Cooccurrence, OwnMostBought
from recsys.models.neighbours import top_k_neighbours
from recsys.models.ranker import Ranker, binary, csr_restore, csr_state
from recsys.models.rankers import ItemKNNRanker, ease_similarity, table_matrix

__all__ = ["CartCandidate", "ViewCandidate", "HistoryCandidate", "CANDIDATES"]


def _scaled(scores: np.ndarray) -> np.ndarray:
    """Each row divided by its largest absolute score (rows of zeros stay zero)."""
    peak = np.abs(scores).max(axis=1, keepdims=True) if scores.shape[1] else scores[:, :0]
    return scores / np.where(peak > 0, peak, 1.0)


def _knn_table(matrix: sp.csr_matrix, k: int, top_k: int) -> sp.csr_matrix:
    """implicit BM25 similarity cut to ``top_k`` neighbours per item (self left out)."""
    knn = ItemKNNRanker("bm25", k=k).fit(matrix)
    ids, scores = top_k_neighbours(knn.similarity, top_k)
    return table_matrix(ids, scores, matrix.shape[1])


class CartCandidate(Ranker):
    """Sum of EASE neighbour scores over every cart item, plus a share of BM25's sums."""

    name = "engine_candidate"

    def __init__(self, lam: float = 3.0, row_weight: Literal["none", "sqrt"] = "sqrt",
                 bm25_weight: float = 0.2, top_k: int = 50, knn_k: int = 100,
                 max_items: int = 10_000, ease_weight: float = 1.0) -> None:
        self.lam, self.row_weight, self.bm25_weight = lam, row_weight, bm25_weight
        self.top_k, self.knn_k, self.max_items = top_k, knn_k, max_items
        self.ease_weight = ease_weight  # 0: the BM25 table alone (no EASE fit)
        self.ease = sp.csr_matrix((0, 0), dtype=np.float32)
        self.bm25 = sp.csr_matrix((0, 0), dtype=np.float32)

    def params(self) -> dict[str, Any]:
        return {"lam": self.lam, "row_weight": self.row_weight, "bm25_weight": self.bm25_weight,
                "top_k": self.top_k, "knn_k": self.knn_k, "max_items": self.max_items,
                "ease_weight": self.ease_weight}

    def describe(self) -> str:
        bm25 = f"{self.bm25_weight} x BM25 K={self.knn_k} top {self.top_k}"
        if not self.ease_weight:
            return bm25
        ease = "" if self.ease_weight == 1 else f"{self.ease_weight} x "
        ease += f"EASE lambda={self.lam} rows/{self.row_weight} top {self.top_k}"
        return f"{ease} + {bm25}" if self.bm25_weight else ease

    def fit_key(self) -> str:
        return repr({k: v for k, v in self.params().items() if k != "bm25_weight"})

    def fit(self, matrix: sp.csr_matrix) -> CartCandidate:
        self.ease = ease_similarity(
            matrix, lam=self.lam, row_weight=self.row_weight, top_k=self.top_k,
            max_items=self.max_items) if self.ease_weight else sp.csr_matrix(
            (matrix.shape[1], matrix.shape[1]), dtype=np.float32)
        self.bm25 = _knn_table(matrix, self.knn_k, self.top_k)
        self.n_items = matrix.shape[1]
        return self

    def score(self, queries: sp.csr_matrix) -> np.ndarray:
        q = binary(queries)
        out = self.ease_weight * _scaled((q @ self.ease).toarray())
        if self.bm25_weight:
            out += self.bm25_weight * _scaled((q @ self.bm25).toarray())
        return out

    def _state(self) -> dict[str, np.ndarray]:
        return {**csr_state("ease", self.ease), **csr_state("bm25", self.bm25)}

    def _restore(self, state: dict[str, np.ndarray]) -> None:
        self.ease, self.bm25 = csr_restore("ease", state), csr_restore("bm25", state)


class ViewCandidate(Ranker):
    """BM25 also-viewed table (top_k per item) plus ``cooc_weight`` x session co-occurrence."""

    name = "engine_candidate"

    def __init__(self, cooc_weight: float = 1.0, top_k: int = 50, knn_k: int = 100,
                 within_table: bool = False) -> None:
        self.cooc_weight, self.top_k, self.knn_k = cooc_weight, top_k, knn_k
        self.within_table = within_table  # co-views of the table's neighbours only (the
        # ``support`` the also-viewed table already stores: a re-rank at request time)
        self.bm25 = sp.csr_matrix((0, 0), dtype=np.float32)
        self.cooc = Cooccurrence()

    def params(self) -> dict[str, Any]:
        return {"cooc_weight": self.cooc_weight, "top_k": self.top_k, "knn_k": self.knn_k,
                "within_table": self.within_table}

    def describe(self) -> str:
        scope = " (table's neighbours)" if self.within_table else ""
        bm25 = f"BM25 K={self.knn_k} top {self.top_k}"
        return f"{bm25} + {self.cooc_weight} x co-views{scope}" if self.cooc_weight else bm25

    def fit_key(self) -> str:
        return repr({"top_k": self.top_k, "knn_k": self.knn_k, "within": self.within_table})

    def fit(self, matrix: sp.csr_matrix) -> ViewCandidate:
        self.bm25 = _knn_table(matrix, self.knn_k, self.top_k)
        self.cooc = Cooccurrence().fit(matrix)
        if self.within_table:
            listed = self.bm25.copy()
            listed.data[:] = 1.0
            self.cooc.confidence = sp.csr_matrix(self.cooc.confidence.multiply(listed),
                                                 dtype=np.float32)
        self.n_items = matrix.shape[1]
        return self

    def score(self, queries: sp.csr_matrix) -> np.ndarray:
        out = _scaled((binary(queries) @ self.bm25).toarray())
        if self.cooc_weight:
            out += self.cooc_weight * _scaled(self.cooc.score(queries))
        return out

    def _state(self) -> dict[str, np.ndarray]:
        return {**csr_state("bm25", self.bm25), **csr_state("confidence", self.cooc.confidence)}

    def _restore(self, state: dict[str, np.ndarray]) -> None:
        self.bm25 = csr_restore("bm25", state)
        self.cooc = Cooccurrence()
        self.cooc.confidence = csr_restore("confidence", state)
        self.cooc.n_items = self.bm25.shape[1]


class HistoryCandidate(Ranker):
    """Own most-bought products (scaled to 1) plus ``knn_weight`` x BM25 item-kNN of the
    history; best sellers break ties."""

    name = "engine_candidate"

    def __init__(self, knn_weight: float = 0.3, knn_k: int = 100) -> None:
        self.knn_weight, self.knn_k = knn_weight, knn_k
        self.own = OwnMostBought()
        self.knn = ItemKNNRanker("bm25", k=knn_k)

    def params(self) -> dict[str, Any]:
        return {"knn_weight": self.knn_weight, "knn_k": self.knn_k}

    def describe(self) -> str:
        if not self.knn_weight:
            return "own most-bought, then best sellers"
        return f"own most-bought + {self.knn_weight} x BM25 K={self.knn_k}"

    def fit_key(self) -> str:
        return repr({"knn_k": self.knn_k})

    def fit(self, matrix: sp.csr_matrix) -> HistoryCandidate:
        self.own = OwnMostBought().fit(matrix)
        self.knn = ItemKNNRanker("bm25", k=self.knn_k).fit(matrix)
        self.n_items = matrix.shape[1]
        return self

    def score(self, queries: sp.csr_matrix) -> np.ndarray:
        q = sp.csr_matrix(queries, dtype=np.float32)
        own = _scaled(q.toarray())
        if self.knn_weight:
            own += self.knn_weight * _scaled(self.knn.score(q))
        return own + 0.01 * self.own.tiebreak

    def _state(self) -> dict[str, np.ndarray]:
        return {"tiebreak": self.own.tiebreak, **csr_state("similarity", self.knn.similarity)}

    def _restore(self, state: dict[str, np.ndarray]) -> None:
        self.own.tiebreak = state["tiebreak"]
        self.own.n_items = len(self.own.tiebreak)
        self.knn.similarity = csr_restore("similarity", state)
        self.knn.n_items = self.own.n_items


CANDIDATES: dict[str, type[Ranker]] = {
    "basket_completion": CartCandidate,
    "also_viewed": ViewCandidate,
    "next_basket": HistoryCandidate,
}
