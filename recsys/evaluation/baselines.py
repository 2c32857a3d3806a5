"""Baseline rankers under one small batch-first contract (after implicit's RecommenderBase).

``fit(rows x items CSR) -> self``; ``score(queries) -> (n_queries, n_items) float32`` for a
queries x items CSR (a cart, a viewed product, a purchase history: one row per query; a
single query is a batch of one); ``recommend(queries, k) -> (ids, scores)``, both
(n_queries, k), best first, ties to the lower item code, ``-1`` / ``-inf`` padded when fewer
than k items are allowed. ``filter_query`` leaves each query's own items out (basket
completion, also viewed) or keeps them (next basket: people buy again). Fitted state saves
to ``.npz`` without pickle.

Baselines: best sellers (``popularity``); co-occurrence confidence, what plain pairwise rules
give (``cooccurrence``: sum over the query's items of count(i, j) / count(i)); implicit item-kNN
(``bm25_itemknn``, ``cosine_itemknn``: query @ similarity, as implicit scores a user); ALS
(``als``: a user vector solved from the query's items, as implicit's ``recalculate_user``);
each customer's own most-bought products (``own_most_bought``, then best sellers).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from recsys.errors import ArtifactError
from recsys.models.implicit_adapter import ALS, ItemKNN

__all__ = [
    "Ranker",
    "Popularity",
    "Cooccurrence",
    "ItemKNNRanker",
    "ALSRanker",
    "OwnMostBought",
    "top_k",
    "load_ranker",
    "RANKERS",
]

def _binary(matrix: sp.spmatrix) -> sp.csr_matrix:
    out = sp.csr_matrix(matrix, dtype=np.float32, copy=True)
    out.eliminate_zeros()
    out.data[:] = 1.0
    return out


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's k best (score descending, ties to the lower code); -inf never listed.

    Returns ids (int64, -1 padded) and scores (float32, -inf padded), both (n, k).
    """
    n, m = scores.shape
    ids = np.full((n, k), -1, dtype=np.int64)
    out = np.full((n, k), -np.inf, dtype=np.float32)
    kk = min(k, m)
    if kk == 0 or n == 0:
        return ids, out
    s = scores.astype(np.float32, copy=False)
    if np.isnan(s).any():
        s = np.where(np.isnan(s), np.float32(-np.inf), s)
    kth = -np.partition(-s, kk - 1, axis=1)[:, kk - 1: kk]  # the kk-th best score per row
    above = s > kth
    need = kk - above.sum(axis=1, keepdims=True)
    tied = (s == kth) & (np.cumsum(s == kth, axis=1) <= need)  # lowest codes among ties
    rows, flat_cols = np.nonzero(above | tied)  # exactly kk per row, codes ascending
    cols = flat_cols.reshape(n, kk)
    vals = s[rows, flat_cols].reshape(n, kk)
    order = np.lexsort((cols, -vals), axis=1)
    cols = np.take_along_axis(cols, order, axis=1)
    vals = np.take_along_axis(vals, order, axis=1)
    listed = np.isfinite(vals) | (vals > 0)  # +inf is a valid (certain) score
    ids[:, :kk] = np.where(listed, cols, -1)
    out[:, :kk] = np.where(listed, vals, -np.inf)
    return ids, out


class Ranker:
    """Base class: subclasses set ``name``, implement ``fit``, ``score`` and the state hooks."""

    name: ClassVar[str] = "ranker"
    n_items: int = 0

    def fit(self, matrix: sp.csr_matrix) -> Ranker:
        raise NotImplementedError

    def score(self, queries: sp.csr_matrix) -> np.ndarray:
        """(n_queries, n_items) float32 scores; larger = better."""
        raise NotImplementedError

    def params(self) -> dict[str, Any]:
        """Hyperparameters (JSON-able): what the report shows and ``clone`` copies."""
        return {}

    def clone(self) -> Ranker:
        """An unfitted ranker with the same hyperparameters."""
        return type(self)(**self.params())

    def describe(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.params().items()) or "-"

    def fit_key(self) -> str:
        """What fitting depends on: rankers with equal keys can share one fit (``take_fit``)."""
        return repr(self.params())

    def take_fit(self, fitted: Ranker) -> Ranker:
        """Adopt a fitted ranker's state (same ``fit_key``), keeping own hyperparameters."""
        own = self.params()
        for key, value in vars(fitted).items():
            if key not in own:
                setattr(self, key, value)
        return self

    def recommend(self, queries: sp.csr_matrix, k: int, *, filter_query: bool = True,
                  exclude: np.ndarray | None = None,
                  batch_size: int = 1024) -> tuple[np.ndarray, np.ndarray]:
        """Top k per query row, in batches of rows. ``exclude``: item codes never listed."""
        queries = sp.csr_matrix(queries)
        if queries.shape[1] != self.n_items:
            raise ValueError(f"queries have {queries.shape[1]} item columns; the ranker was "
                             f"fitted on {self.n_items}")
        n = queries.shape[0]
        ids = np.full((n, k), -1, dtype=np.int64)
        scores = np.full((n, k), -np.inf, dtype=np.float32)
        banned = np.zeros(self.n_items, dtype=bool)
        if exclude is not None:
            banned[np.asarray(exclude, dtype=np.int64)] = True
        for lo in range(0, n, batch_size):  # a loop over batches of cases, not over rows
            block = queries[lo: lo + batch_size]
            s = np.array(self.score(block), dtype=np.float32)
            s[:, banned] = -np.inf
            if filter_query:
                r, c = block.nonzero()
                s[r, c] = -np.inf
            ids[lo: lo + len(s)], scores[lo: lo + len(s)] = top_k(s, k)
        return ids, scores

    # -- persistence

    def _state(self) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _restore(self, state: dict[str, np.ndarray]) -> None:
        raise NotImplementedError

    def save(self, path: Path | str) -> None:
        """Fitted state and hyperparameters as ``.npz`` (no pickle)."""
        arrays: dict[str, np.ndarray] = {
            "__ranker__": np.array(type(self).__name__),
            "__params__": np.array(json.dumps(self.params())),
            "__n_items__": np.array(self.n_items), **self._state()}
        np.savez(path, **arrays)  # type: ignore[arg-type]


def load_ranker(path: Path | str) -> Ranker:
    """Read a ranker saved with ``Ranker.save``."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{path}: cannot read a saved ranker ({exc})") from None
    from recsys.evaluation.candidate import CANDIDATES

    known = {cls.__name__: cls for cls in [*RANKERS.values(), *CANDIDATES.values()]}
    name = str(arrays.pop("__ranker__"))
    if name not in known:
        raise ArtifactError(f"{path}: unknown ranker {name!r}")
    ranker = known[name](**json.loads(str(arrays.pop("__params__"))))
    ranker.n_items = int(arrays.pop("__n_items__"))
    ranker._restore(arrays)
    return ranker


def _csr_state(prefix: str, matrix: sp.csr_matrix) -> dict[str, np.ndarray]:
    return {f"{prefix}_data": matrix.data, f"{prefix}_indices": matrix.indices,
            f"{prefix}_indptr": matrix.indptr, f"{prefix}_shape": np.array(matrix.shape)}


def _csr_restore(prefix: str, state: dict[str, np.ndarray]) -> sp.csr_matrix:
    return sp.csr_matrix((state[f"{prefix}_data"], state[f"{prefix}_indices"],
                          state[f"{prefix}_indptr"]),
                         shape=tuple(state[f"{prefix}_shape"].tolist()))


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
        x = _binary(matrix)
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
        q = _binary(queries)
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
        return _csr_state("confidence", self.confidence)

    def _restore(self, state: dict[str, np.ndarray]) -> None:
        self.confidence = _csr_restore("confidence", state)


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
        return _csr_state("similarity", self.similarity)

    def _restore(self, state: dict[str, np.ndarray]) -> None:
        self.similarity = _csr_restore("similarity", state)


class CosineItemKNN(ItemKNNRanker):
    """implicit cosine item-kNN (the reference figures' ``cosine`` row)."""

    name = "cosine_itemknn"

    def __init__(self, kind: Literal["bm25", "cosine"] = "cosine", k: int = 100,
                 k1: float = 1.2, b: float = 0.75) -> None:
        super().__init__("cosine", k, k1, b)


def _solve_users(item_factors: np.ndarray, queries: sp.csr_matrix, regularization: float,
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
        users = _solve_users(self.item_factors, sp.csr_matrix(queries), self.regularization,
                             self.alpha)
        return (users @ self.item_factors.T.astype(np.float64)).astype(np.float32)

    def _state(self) -> dict[str, np.ndarray]:
        return {"item_factors": self.item_factors}

    def _restore(self, state: dict[str, np.ndarray]) -> None:
        self.item_factors = state["item_factors"]


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


RANKERS: dict[str, type[Ranker]] = {
    cls.name: cls for cls in (Popularity, Cooccurrence, ItemKNNRanker, CosineItemKNN,
                              ALSRanker, OwnMostBought)
}
