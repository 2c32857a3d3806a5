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
from numba import njit

__all__ = ["SessionKNN", "query_matrix", "load_sessions", "sessions_by_item", "sums_by_key",
           "score_session", "session_votes", "session_neighbours",
           "table_bits", "slot_of"]


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

    @property
    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(items -> sessions indptr, indices, sessions -> items indptr, indices): what
        ``score_session`` reads, fitted or served alike."""
        return (*self._items, *self._rows)

    def fit(self, sessions: sp.csr_matrix) -> SessionKNN:
        binary = sp.csr_matrix(sessions, dtype=np.float64, copy=True)
        binary.data[:] = 1.0
        binary.eliminate_zeros()
        self.sessions = binary
        self.by_item = binary.T.tocsr()
        self.by_item.sort_indices()  # score_session merges the rows in order
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
        """(item codes ascending, scores) for one session (oldest first), weighted by
        position: the same figures as ``score`` with a "linear" ``query_matrix`` row and "dot"
        similarity, compiled (``score_session``: a request scores one session, and sparse
        products cost more in overhead than in arithmetic)."""
        return score_session(*self.arrays, np.asarray(session, dtype=np.int64),
                             k or self.k)

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


@njit(cache=True, nogil=True)
def table_bits(n: int) -> int:
    """The bits of an open-addressing table for up to ``n`` keys (at most half full)."""
    bits = 4
    while (1 << bits) < 2 * n:
        bits += 1
    return bits


@njit(cache=True, nogil=True, inline="always")
def slot_of(slot_key: np.ndarray, key: np.int64, bits: int) -> np.int64:
    """Where ``key`` is, or goes, in a table of ``2**bits`` slots (``slot_key``: -1 empty):
    Fibonacci hashing, linear probing; inlined where it is called (a call per key would
    cost more than the probe)."""
    h = np.int64((np.uint64(key) * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(64 - bits))
    while slot_key[h] >= 0 and slot_key[h] != key:
        h = (h + 1) & ((1 << bits) - 1)
    return h


@njit(cache=True, nogil=True)
def sums_by_key(keys: np.ndarray, values: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(distinct keys ascending, each one's values summed in the order given, each key's
    position among them): what ``np.unique`` (with ``return_inverse``) + ``np.bincount``
    compute, to the last bit. One pass accumulates into an
    open-addressing table (Fibonacci hashing, linear probing); only the distinct keys are
    sorted (a session's few thousand votes fall on a few hundred products)."""
    n = len(keys)
    bits = table_bits(n)
    slot_key = np.full(1 << bits, -1, np.int64)
    slot_at = np.empty(1 << bits, np.int64)
    found = np.empty(n, np.int64)
    sums = np.zeros(n, np.float64)
    inverse = np.empty(n, np.int64)
    u = 0
    for i in range(n):
        key = np.int64(keys[i])
        if key < 0:
            raise ValueError("sums_by_key: a negative key")
        h = slot_of(slot_key, key, bits)
        if slot_key[h] < 0:
            slot_key[h], slot_at[h], found[u] = key, u, key
            u += 1
        sums[slot_at[h]] += values[i]
        inverse[i] = slot_at[h]
    order = np.argsort(found[:u])
    rank = np.empty(u, np.int64)
    rank[order] = np.arange(u)
    return found[order], sums[order], rank[inverse]


@njit(cache=True, nogil=True)
def score_session(by_indptr: np.ndarray, by_indices: np.ndarray, s_indptr: np.ndarray,
                  s_indices: np.ndarray, session: np.ndarray,
                  k: int) -> tuple[np.ndarray, np.ndarray]:
    """V-SKNN for one ``session`` (item codes, oldest first): the p-th of n items weighs
    p / n (a repeated item its latest); the training sessions holding them score the summed
    weights of the items they hold (the weighted overlap); the ``k`` best (ties: the lower
    session) vote for their items with that score. ``by_*``: the items x sessions CSR,
    ``s_*``: the sessions x items CSR. Returns (item codes ascending, votes): the sums of
    ``session_votes``."""
    items, votes = session_votes(by_indptr, by_indices, s_indptr, s_indices, session, k)
    found, sums, _ = sums_by_key(items, votes)
    return found, sums


@njit(cache=True, nogil=True)
def session_votes(by_indptr: np.ndarray, by_indices: np.ndarray, s_indptr: np.ndarray,
                  s_indices: np.ndarray, session: np.ndarray,
                  k: int) -> tuple[np.ndarray, np.ndarray]:
    """V-SKNN's votes before they are summed (see ``score_session``): (item, vote) per item
    of each of the ``k`` best sessions (``session_neighbours``), best session first, each
    session's items in order."""
    sessions, sims = session_neighbours(by_indptr, by_indices, session, k)
    n = 0
    for row in sessions:
        n += s_indptr[row + 1] - s_indptr[row]
    items = np.empty(n, np.int64)
    votes = np.empty(n, np.float64)
    m = 0
    for r in range(len(sessions)):
        for j in range(s_indptr[sessions[r]], s_indptr[sessions[r] + 1]):
            items[m] = s_indices[j]
            votes[m] = sims[r]
            m += 1
    return items, votes


@njit(cache=True, nogil=True)
def session_neighbours(by_indptr: np.ndarray, by_indices: np.ndarray, session: np.ndarray,
                       k: int, sample: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """V-SKNN's ``k`` best training sessions for ``session`` (item codes, oldest first; see
    ``score_session``) and their similarities, best first (ties: the lower session). With a
    ``sample`` (0: none), each item brings only its last ``sample`` sessions (the highest;
    the latest in the models job's ``sessions.npz``, whose rows are in time order): V-SKNN's
    sample of candidate neighbours, which bounds the work for popular items."""
    codes = np.empty(len(session), np.int64)  # distinct, in order of first appearance
    weights = np.empty(len(session), np.float64)
    distinct = 0
    for p in range(len(session)):
        at = distinct
        for d in range(distinct):
            if codes[d] == session[p]:
                at = d
        if at == distinct:
            codes[at] = session[p]
            distinct += 1
        weights[at] = (p + 1) / len(session)
    starts = np.zeros(distinct + 1, np.int64)  # item d's entries: starts[d]..starts[d + 1]
    first = np.empty(distinct, np.int64)  # item d's first session read, in by_indices
    for d in range(distinct):
        c = codes[d]
        if c < 0 or c + 1 >= len(by_indptr):
            raise ValueError("V-SKNN: a product code is outside the training sessions")
        first[d] = by_indptr[c] if sample <= 0 else max(by_indptr[c], by_indptr[c + 1] - sample)
        starts[d + 1] = starts[d] + by_indptr[c + 1] - first[d]
    n = starts[distinct]
    # each session holding query items sums their weights in the query's item order, in a
    # hash table over the sessions met
    bits = table_bits(n)
    slot_key = np.full(1 << bits, -1, np.int64)
    slot_at = np.empty(1 << bits, np.int64)
    neighbours = np.empty(n, np.int64)
    sims = np.zeros(n, np.float64)
    held = np.zeros(n, np.int64)  # how many query items each holds
    entry_at = np.empty(n, np.int64)  # each entry's session, as its place among them
    u = 0
    for d in range(distinct):
        c, e = codes[d], starts[d]
        for j in range(first[d], by_indptr[c + 1]):
            key = np.int64(by_indices[j])
            h = slot_of(slot_key, key, bits)
            if slot_key[h] < 0:
                slot_key[h], slot_at[h], neighbours[u] = key, u, key
                u += 1
            at = slot_at[h]
            sims[at] += weights[d]
            held[at] += 1
            entry_at[e] = at
            e += 1
    best = _best_sessions(neighbours[:u], sims[:u], held[:u], weights[:distinct], starts,
                          entry_at, k)
    return neighbours[best], sims[best]


@njit(cache=True, nogil=True)
def _best_sessions(neighbours: np.ndarray, sims: np.ndarray, held: np.ndarray,
                   weights: np.ndarray, starts: np.ndarray, entry_at: np.ndarray,
                   k: int) -> np.ndarray:
    """The places of the ``k`` best sessions (``neighbours``, their ``sims``), best first,
    ties: the lower session; what a stable sort of ``-sims`` over the sessions in ascending
    order gives, without sorting them all. A session holding one query item scores exactly
    that item's weight (the items' weights differ: each is its latest place), and the
    sessions holding item d are its entries ``starts[d]..starts[d + 1]`` (``entry_at``) in
    ascending order; so only the sessions holding several items (few) are sorted, and the
    rest are read item by item, heaviest first, merged with those."""
    n = min(max(k, 0), len(sims))
    out = np.empty(n, np.int64)
    several = np.flatnonzero(held > 1)
    several = several[np.argsort(neighbours[several], kind="mergesort")]
    several = several[np.argsort(-sims[several], kind="mergesort")]
    m, i = 0, 0
    for d in np.argsort(-weights):
        w = weights[d]
        while m < n and i < len(several) and sims[several[i]] > w:
            out[m] = several[i]
            m, i = m + 1, i + 1
        e, end = starts[d], starts[d + 1]
        while m < n:
            while e < end and held[entry_at[e]] != 1:
                e += 1
            tie = i < len(several) and sims[several[i]] == w
            if e == end and not tie:
                break
            if tie and (e == end or neighbours[several[i]] < neighbours[entry_at[e]]):
                out[m] = several[i]
                i += 1
            else:
                out[m] = entry_at[e]
                e += 1
            m += 1
    while m < n:
        out[m] = several[i]
        m, i = m + 1, i + 1
    return out


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
