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

from recsys.errors import ArtifactError
from recsys.rules.itemsets import DENSE_PAIR_LIMIT, dense_pair_counts

__all__ = ["Neighbours", "top_k_neighbours", "cooccurrence_at"]


@dataclass(frozen=True)
class Neighbours:
    """neighbour codes and scores, (n_items, k), best first, -1 / 0 padded."""

    ids: np.ndarray
    scores: np.ndarray
    support: np.ndarray  # rows (sessions or orders) holding both items, same shape

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        for name in ("ids", "scores", "support"):
            np.save(folder / f"{name}.npy", getattr(self, name), allow_pickle=False)

    @classmethod
    def load(cls, folder: Path, *, mmap: bool = True) -> Neighbours:
        """Read a table; memory-mapped read-only by default."""
        arrays = {}
        for name in ("ids", "scores", "support"):
            path = folder / f"{name}.npy"
            try:
                arrays[name] = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise ArtifactError(f"{path}: cannot read neighbour table ({exc})") from None
        return cls(**arrays)


def top_k_neighbours(similarity: sp.csr_matrix, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's k highest-scoring other items (ties: lower code first), vectorised."""
    sim = sp.csr_matrix(similarity, dtype=np.float32).tocoo()
    keep = (sim.row != sim.col) & (sim.data > 0)
    rows, cols, vals = sim.row[keep], sim.col[keep], sim.data[keep]
    order = np.lexsort((cols, -vals, rows))
    rows, cols, vals = rows[order], cols[order], vals[order]
    starts = np.searchsorted(rows, np.arange(similarity.shape[0]))
    rank = np.arange(len(rows)) - starts[rows]
    top = rank < k
    ids = np.full((similarity.shape[0], k), -1, dtype=np.int32)
    scores = np.zeros((similarity.shape[0], k), dtype=np.float32)
    ids[rows[top], rank[top]] = cols[top]
    scores[rows[top], rank[top]] = vals[top]
    return ids, scores


def cooccurrence_at(rows_items: sp.csr_matrix, ids: np.ndarray) -> np.ndarray:
    """How many rows hold both item i and each of its neighbours ids[i, j] (0 for padding).

    Exact pair counts from the compiled dense kernel when the catalogue fits, else X^T X."""
    binary = sp.csr_matrix(rows_items, dtype=np.int32)
    binary.sum_duplicates()
    binary.sort_indices()
    n, k = ids.shape
    rows = np.repeat(np.arange(n), k)
    cols = np.maximum(ids.ravel(), 0)
    if n <= DENSE_PAIR_LIMIT:
        table = dense_pair_counts(binary.indptr.astype(np.int64),
                                  binary.indices.astype(np.int32), n)  # upper triangle
        values = table[np.minimum(rows, cols), np.maximum(rows, cols)].astype(np.int64)
    else:
        binary.data[:] = 1
        co = sp.csr_matrix(binary.T @ binary)
        values = np.asarray(co[rows, cols]).ravel().astype(np.int64)
    return np.where(ids.ravel() >= 0, values, 0).reshape(n, k)
