"""Thin adapter over the `implicit` library: item-kNN (cosine, BM25) and ALS.

Every model takes a rows x items CSR matrix (rows = sessions, orders or customers) and is
fitted with BLAS limited to one thread (implicit's own advice). Nothing else imports implicit.
"""

from __future__ import annotations

import warnings
from typing import Literal

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

__all__ = ["ItemKNN", "ALS"]


class ItemKNN:
    """Item-item similarity from co-occurrence (``cosine`` or ``bm25``), K neighbours per item."""

    def __init__(self, kind: Literal["cosine", "bm25"] = "bm25", k: int = 100, k1: float = 1.2,
                 b: float = 0.75) -> None:
        self.kind, self.k, self.k1, self.b = kind, k, k1, b
        self.similarity: sp.csr_matrix | None = None

    def fit(self, rows_items: sp.csr_matrix, *, show_progress: bool = False) -> ItemKNN:
        """Fit on a rows x items matrix; ``similarity`` becomes items x items (CSR)."""
        from implicit.nearest_neighbours import BM25Recommender, CosineRecommender

        model = (BM25Recommender(K=self.k, K1=self.k1, B=self.b, num_threads=1)
                 if self.kind == "bm25" else CosineRecommender(K=self.k, num_threads=1))
        with threadpool_limits(limits=1, user_api="blas"), warnings.catch_warnings():
            # BM25Recommender hands its own COO weighting to the base fit, which then warns.
            warnings.filterwarnings("ignore", message="Method expects CSR input")
            model.fit(sp.csr_matrix(rows_items, dtype=np.float32), show_progress=show_progress)
        self.similarity = sp.csr_matrix(model.similarity)
        return self


class ALS:
    """Implicit-feedback matrix factorisation (Hu, Koren and Volinsky 2008)."""

    def __init__(self, factors: int = 64, regularization: float = 0.05, alpha: float = 1.0,
                 iterations: int = 15, seed: int = 42) -> None:
        self.factors, self.regularization, self.alpha = factors, regularization, alpha
        self.iterations, self.seed = iterations, seed
        self.user_factors: np.ndarray | None = None
        self.item_factors: np.ndarray | None = None

    def fit(self, users_items: sp.csr_matrix, *, show_progress: bool = False) -> ALS:
        """Fit on a users x items confidence matrix; factors become dense float32 arrays."""
        from implicit.cpu.als import AlternatingLeastSquares

        with threadpool_limits(limits=1, user_api="blas"):  # the constructor checks it too
            model = AlternatingLeastSquares(
                factors=self.factors, regularization=self.regularization, alpha=self.alpha,
                iterations=self.iterations, random_state=self.seed, num_threads=1)
            model.fit(sp.csr_matrix(users_items, dtype=np.float32), show_progress=show_progress)
        self.user_factors = np.asarray(model.user_factors, dtype=np.float32)
        self.item_factors = np.asarray(model.item_factors, dtype=np.float32)
        return self
