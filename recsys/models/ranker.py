"""The ranker contract every model follows (after implicit's RecommenderBase), batch first.

``fit(rows x items CSR) -> self``; ``score(queries) -> (n_queries, n_items) float32`` for a
queries x items CSR (a cart, a viewed product, a purchase history: one row per query; a
single query is a batch of one); ``recommend(queries, k) -> (ids, scores)``, both
(n_queries, k), best first, ties to the lower item code, ``-1`` / ``-inf`` padded when fewer
than k items are allowed. ``filter_query`` leaves each query's own items out (basket
completion, also viewed) or keeps them (next basket: people buy again). ``save`` writes the
fitted state and hyperparameters to ``.npz`` without pickle; ``Ranker.load`` reads any saved
ranker back. The served models (``recsys.models.rankers``), the evaluation baselines and the
served engine itself (``recsys.evaluation.engine``) implement it; evaluation uses nothing else.

A ranker whose answer is a finished list rather than a score per item (the engine: tiers,
pins, best-seller fills) overrides ``recommend``, raises NotImplementedError from ``score``,
and may list ``-2``: a product outside the fitted item columns (a miss, never a match).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from recsys.errors import ArtifactError

__all__ = ["Ranker", "load_ranker", "top_k", "binary", "csr_state", "csr_restore", "BATCH_CELLS"]

BATCH_CELLS = 1 << 23  # dense scores per batch of queries (32 MiB of float32; top_k's
# temporaries are a few times that)


def binary(matrix: sp.spmatrix) -> sp.csr_matrix:
    """A float32 copy with every stored non-zero set to 1."""
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
    """The contract (module docstring). Subclasses set ``name`` and implement ``fit``,
    ``score``, ``_state`` and ``_restore``; every subclass is known to ``load``."""

    name: ClassVar[str] = "ranker"
    n_items: int = 0
    _classes: ClassVar[dict[str, type[Ranker]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        Ranker._classes[cls.__name__] = cls

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
                  batch_size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top k per query row, in batches of rows (default: as many as keep a batch's dense
        (rows, n_items) scores within ``BATCH_CELLS``, whatever the catalogue's size).
        ``exclude``: item codes never listed."""
        queries = sp.csr_matrix(queries)
        if queries.shape[1] != self.n_items:
            raise ValueError(f"queries have {queries.shape[1]} item columns; the ranker was "
                             f"fitted on {self.n_items}")
        n = queries.shape[0]
        batch_size = batch_size or max(1, BATCH_CELLS // max(self.n_items, 1))
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

    @classmethod
    def load(cls, path: Path | str) -> Ranker:
        """Read a ranker written by ``save`` (its class must be imported: it registers itself);
        called on a subclass, the file must hold that class."""
        ranker = load_ranker(path)
        if not isinstance(ranker, cls):
            raise ArtifactError(f"{path} holds a {type(ranker).__name__}, not a {cls.__name__}")
        return ranker


def load_ranker(path: Path | str) -> Ranker:
    """Read a ranker saved with ``Ranker.save``, whatever its class."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{path}: cannot read a saved ranker ({exc})") from None
    name = str(arrays.pop("__ranker__"))
    known = Ranker._classes
    if name not in known:
        raise ArtifactError(f"{path}: unknown ranker {name!r}; import the module defining it "
                            f"(known: {', '.join(sorted(known))})")
    ranker = known[name](**json.loads(str(arrays.pop("__params__"))))
    ranker.n_items = int(arrays.pop("__n_items__"))
    ranker._restore(arrays)
    return ranker


def csr_state(prefix: str, matrix: sp.csr_matrix) -> dict[str, np.ndarray]:
    """A CSR matrix as named arrays for ``_state`` (restored by ``csr_restore``)."""
    return {f"{prefix}_data": matrix.data, f"{prefix}_indices": matrix.indices,
            f"{prefix}_indptr": matrix.indptr, f"{prefix}_shape": np.array(matrix.shape)}


def csr_restore(prefix: str, state: dict[str, np.ndarray]) -> sp.csr_matrix:
    """The CSR matrix ``csr_state`` stored under ``prefix``."""
    return sp.csr_matrix((state[f"{prefix}_data"], state[f"{prefix}_indices"],
                          state[f"{prefix}_indptr"]),
                         shape=tuple(state[f"{prefix}_shape"].tolist()))
