"""Session-kNN and V-SKNN (Ludewig & Jannach 2018, "Evaluation of session-based
recommendation algorithms"): score items by the training sessions most similar to the
session so far. Batch-first: many query sessions at once, as sparse matrices.

S-KNN: cosine between the query session's item set and each training session's; the ``k``
most similar sessions vote for their items with their similarity. V-SKNN: the query's items
weighted by position (linear decay, the most recent 1), similarity the weighted overlap.
Every training session sharing an item is a candidate neighbour (no sampling).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import scipy.sparse as sp

__all__ = ["SessionKNN", "query_matrix", "load_sessions", "sessions_by_item"]


def query_matrix(sessions: Sequence[Sequence[int]], n_items: int, *,
                 weighting: Literal["binary", "linear"]) -> sp.csr_matrix:
    """Query sessions (item codes, oldest first) as rows: 1 per item, or the V-SKNN
    position weight (p / len for the p-th item, a repeated item keeping its latest)."""
    rows, cols, vals = [], [], []
    for r, items in enumerate(sessions):
        weights: dict[int, float] = {}
        for p, code in enumerate(items, start=1):
            weights[code] = 1.0 if weighting == "binary" else p / len(items)
        rows += [r] * len(weights)
        cols += list(weights)
        vals += list(weights.values())
    return sp.csr_matrix((np.asarray(vals, dtype=np.float64),
                          (np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64))),
                         shape=(len(sessions), n_items))


class SessionKNN:
    """Fit on a sessions x items matrix (any positive value = viewed); score query rows."""

    def __init__(self, k: int = 100, similarity: Literal["cosine", "dot"] = "cosine") -> None:
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        self.k, self.similarity = k, similarity
        self.sessions = sp.csr_matrix((0, 0))
        self.by_item = sp.csr_matrix((0, 0))
        self.norms = np.zeros(0)
        # (indptr, indices) of sessions -> items and items -> sessions: what score_one reads
        self._rows: tuple[np.ndarray, np.ndarray] = (np.zeros(1, np.int64), np.zeros(0, np.int32))
        self._items = self._rows

    @classmethod
    def served(cls, rows: tuple[np.ndarray, np.ndarray],
               items: tuple[np.ndarray, np.ndarray]) -> SessionKNN:
        """A "dot" model for ``score_one`` over stored CSR arrays (``rows``: sessions ->
        items, ``items``: items -> sessions, each (indptr, indices)) used as they are, e.g.
        memory-mapped; ``score`` needs ``fit``."""
        model = cls(similarity="dot")
        model._rows, model._items = rows, items
        return model

    def fit(self, sessions: sp.csr_matrix) -> SessionKNN:
        binary = sp.csr_matrix(sessions, dtype=np.float64, copy=True)
        binary.data[:] = 1.0
        binary.eliminate_zeros()
        self.sessions = binary
        self.by_item = binary.T.tocsr()
        self.norms = np.sqrt(np.asarray(binary.sum(axis=1)).ravel())
        self._rows = (binary.indptr, binary.indices)
        self._items = (self.by_item.indptr, self.by_item.indices)
        return self

    def score(self, queries: sp.csr_matrix, chunk: int = 2000,
              k: int | None = None) -> sp.csr_matrix:
        """queries x items scores (sparse; items no neighbour holds score 0); ``k``
        overrides the fitted number of neighbours."""
        out = []
        for lo in range(0, queries.shape[0], chunk):
            q = queries[lo:lo + chunk]
            sims = (q @ self.by_item).tocsr()  # queries x training sessions
            if self.similarity == "cosine":
                qnorm = np.sqrt(np.asarray(q.multiply(q).sum(axis=1)).ravel())
                sims = sp.diags(1.0 / np.maximum(qnorm, 1e-12)) @ sims
                sims = (sims @ sp.diags(1.0 / np.maximum(self.norms, 1e-12))).tocsr()
            out.append(self._top(sims, k or self.k) @ self.sessions)
        return sp.vstack(out).tocsr() if out else sp.csr_matrix((0, self.sessions.shape[1]))

    def score_one(self, session: Sequence[int], k: int | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
        """(item codes, scores) for one session (oldest first), weighted by position: the
        same figures as ``score`` with a "linear" ``query_matrix`` row and "dot" similarity,
        without sparse-matrix overhead (a request scores one session)."""
        weights: dict[int, float] = {}
        for p, code in enumerate(session, start=1):
            weights[code] = p / len(session)
        codes = np.fromiter(weights, dtype=np.int64, count=len(weights))
        item_ptr, item_sessions = self._items
        lo, hi = item_ptr[codes], item_ptr[codes + 1]
        held = np.concatenate([item_sessions[a:b] for a, b in zip(lo, hi, strict=True)])
        if not len(held):
            return np.zeros(0, np.int64), np.zeros(0)
        neighbours, inverse = np.unique(held, return_inverse=True)
        sims = np.bincount(inverse, weights=np.repeat(
            np.fromiter(weights.values(), dtype=np.float64, count=len(weights)), hi - lo))
        best = np.lexsort((neighbours, -sims))[: k or self.k]  # ties: the lower session
        rows = neighbours[best]
        row_ptr, row_items = self._rows
        s_lo, s_hi = row_ptr[rows], row_ptr[rows + 1]
        items = np.concatenate([row_items[a:b] for a, b in zip(s_lo, s_hi, strict=True)])
        found, where = np.unique(items, return_inverse=True)
        return found.astype(np.int64), np.bincount(where, weights=np.repeat(sims[best],
                                                                            s_hi - s_lo))

    def _top(self, sims: sp.csr_matrix, k: int) -> sp.csr_matrix:
        """Each row's ``k`` largest entries (ties: the lower session index)."""
        indptr, indices, data = sims.indptr, sims.indices, sims.data
        keep = np.zeros(len(data), dtype=bool)
        for r in range(sims.shape[0]):
            lo, hi = indptr[r], indptr[r + 1]
            if hi - lo <= k:
                keep[lo:hi] = True
                continue
            order = np.lexsort((indices[lo:hi], -data[lo:hi]))[:k]
            keep[lo + order] = True
        rows = np.repeat(np.arange(sims.shape[0]), np.diff(indptr))
        return sp.csr_matrix((data[keep], (rows[keep], indices[keep])), shape=sims.shape)


def sessions_by_item(indptr: np.ndarray, indices: np.ndarray,
                     n_items: int) -> tuple[np.ndarray, np.ndarray]:
    """The transpose of a sessions x items CSR as (indptr, indices): per item, the sessions
    holding it in increasing order (what ``tocsr`` of the transpose gives)."""
    n_rows = len(indptr) - 1
    rows = np.repeat(np.arange(n_rows, dtype=np.int32 if n_rows < 2**31 else np.int64),
                     np.diff(indptr))
    order = np.argsort(indices, kind="stable")
    item_ptr = np.zeros(n_items + 1, np.int64)
    np.cumsum(np.bincount(indices, minlength=n_items), out=item_ptr[1:])
    return item_ptr, rows[order]


def load_sessions(path: Path, by_item: Path | None = None) -> SessionKNN | None:
    """The training view sessions written by the models job (``sessions.npz``: a sessions x
    products CSR, and ``by_item``, its transpose, where the version has it), memory-mapped
    for V-SKNN's ``score_one``; None when the artifact has none."""
    from recsys.artifact_io import load_npz

    if not path.exists():
        return None
    arrays = load_npz(path, mmap=True)
    if by_item is not None and by_item.exists():
        transposed = load_npz(by_item, mmap=True)
        items = (transposed["indptr"], transposed["indices"])
    else:  # a version from before the models job wrote the transpose: built here
        items = sessions_by_item(arrays["indptr"], arrays["indices"], int(arrays["shape"][1]))
    return SessionKNN.served((arrays["indptr"], arrays["indices"]), items)
