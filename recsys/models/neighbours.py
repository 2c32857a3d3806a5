"""Top-K neighbour tables: the precomputed answer to "similar items" for every product.

A table is dense (n_items, K) arrays: neighbour codes (int32, -1 padded), scores (float32)
and support (int64), best first, the item itself left out. Saved as plain ``.npy`` files in a
folder, so that server workers memory-map them read-only and share one copy.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from numba import njit

from recsys.errors import ArtifactError
from recsys.layout import NEIGHBOUR_ARRAYS

__all__ = ["Neighbours", "top_k_neighbours", "cooccurrence_at"]


@dataclass(frozen=True)
class Neighbours:
    """neighbour codes and scores, (n_items, k), best first, -1 / 0 padded."""

    ids: np.ndarray
    scores: np.ndarray
    support: np.ndarray  # rows (sessions or orders) holding both items, same shape

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        for array in NEIGHBOUR_ARRAYS:
            np.save(folder / f"{array.name}.npy", getattr(self, array.name), allow_pickle=False)

    @classmethod
    def load(cls, folder: Path, *, mmap: bool = True) -> Neighbours:
        """Read a table; memory-mapped read-only by default."""
        arrays = {}
        for name in (array.name for array in NEIGHBOUR_ARRAYS):
            path = folder / f"{name}.npy"
            try:
                arrays[name] = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise ArtifactError(f"{path}: cannot read neighbour table ({exc})") from None
        return cls(**arrays)


def top_k_neighbours(similarity: sp.csr_matrix, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's k highest-scoring other items with a positive score (ties: lower code first)."""
    sim = sp.csr_matrix(similarity, dtype=np.float32, copy=True)
    sim.sum_duplicates()  # canonical: sorted column indices, so a stable sort breaks ties
    n = sim.shape[0]
    ids = np.full((n, k), -1, dtype=np.int32)
    scores = np.zeros((n, k), dtype=np.float32)
    _top_k_rows(sim.indptr.astype(np.int64), sim.indices.astype(np.int32), sim.data, ids, scores)
    return ids, scores


@njit(cache=True, nogil=True)
def _top_k_rows(indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, ids: np.ndarray,
                scores: np.ndarray) -> None:
    k = ids.shape[1]
    for r in range(len(indptr) - 1):
        start, end = indptr[r], indptr[r + 1]
        cols = np.empty(end - start, np.int32)
        vals = np.empty(end - start, np.float32)
        m = 0
        for p in range(start, end):
            if indices[p] != r and data[p] > 0:
                cols[m], vals[m] = indices[p], data[p]
                m += 1
        order = np.argsort(-vals[:m], kind="mergesort")  # stable: lower code first on ties
        for t in range(min(k, m)):
            ids[r, t] = cols[order[t]]
            scores[r, t] = vals[order[t]]


def cooccurrence_at(rows_items: sp.csr_matrix, ids: np.ndarray) -> np.ndarray:
    """How many rows hold both item i and each of its neighbours ids[i, j] (0 for padding):
    exact counts, item by item over the rows holding it."""
    binary = sp.csr_matrix(rows_items, copy=True)
    binary.sum_duplicates()
    binary.eliminate_zeros()
    by_item = binary.tocsc()
    out = np.zeros(ids.shape, dtype=np.int64)
    _support_at(binary.indptr.astype(np.int64), binary.indices.astype(np.int32),
                by_item.indptr.astype(np.int64), by_item.indices.astype(np.int32),
                ids.astype(np.int32), out)
    return out


@njit(cache=True, nogil=True)
def _support_at(indptr: np.ndarray, indices: np.ndarray, item_ptr: np.ndarray,
                item_rows: np.ndarray, ids: np.ndarray, out: np.ndarray) -> None:
    slot = np.full(len(item_ptr) - 1, -1, np.int32)  # column of out for i's neighbours
    for i in range(ids.shape[0]):
        if ids[i, 0] < 0:
            continue
        for j in range(ids.shape[1]):
            if ids[i, j] >= 0:
                slot[ids[i, j]] = j
        for p in range(item_ptr[i], item_ptr[i + 1]):
            row = item_rows[p]
            for q in range(indptr[row], indptr[row + 1]):
                j = slot[indices[q]]
                if j >= 0:
                    out[i, j] += 1
        for j in range(ids.shape[1]):
            if ids[i, j] >= 0:
                slot[ids[i, j]] = -1
