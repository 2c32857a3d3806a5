"""Frequent itemsets with exact integer counts.

Input is the binary order x product CSR matrix (rows = orders, columns = products). An order
counts an itemset once. Pairs come from integer co-occurrence counting (a compiled kernel
over each order's items into a dense item x item table when it fits in memory, else the
sparse product X^T X); longer itemsets from Eclat (compiled with numba, depth first), where
below each first item the orders are projected onto that item's orders and held as short
bitsets, so each join is an AND and a popcount; candidates are pruned by the frequent pairs.

Items are relabelled to the frequent ones (codes 0..F-1 in product-code order) while mining;
results come back in product codes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from numba import njit

__all__ = ["FrequentItemsets", "TooManyItemsets", "frequent_itemsets", "row_keys",
           "CountIndex", "dense_pair_counts", "DENSE_PAIR_LIMIT"]

DENSE_PAIR_LIMIT = 12_000  # frequent items up to which pairs are counted in a dense F x F table


@dataclass(frozen=True)
class FrequentItemsets:
    """Itemsets of length 1..max_len as a padded (n, max_len) int32 array of product codes
    (sorted ascending per row, -1 padding), their lengths and exact order counts."""

    items: np.ndarray  # (n, width) int32, -1 padded
    lengths: np.ndarray  # (n,) int8
    counts: np.ndarray  # (n,) int64
    n_orders: int
    min_count: int

    def of_length(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(itemsets (m, k) int32, counts (m,)) of exactly k items."""
        mask = self.lengths == k
        return self.items[mask, :k], self.counts[mask]

    def canonical(self) -> FrequentItemsets:
        """The same itemsets ordered by length, then by their codes (lexicographically): an
        order that does not depend on how they were counted, so both engines write the same
        rules and itemsets row for row."""
        width = self.items.shape[1]
        order = np.lexsort((*(self.items[:, j] for j in reversed(range(width))), self.lengths))
        return FrequentItemsets(items=self.items[order], lengths=self.lengths[order],
                                counts=self.counts[order], n_orders=self.n_orders,
                                min_count=self.min_count)

    def at_least(self, min_count: int) -> FrequentItemsets:
        """The itemsets in at least ``min_count`` orders: exactly what mining at that count
        finds (every subset of a kept itemset is counted in at least as many orders)."""
        keep = self.counts >= min_count
        return FrequentItemsets(items=self.items[keep], lengths=self.lengths[keep],
                                counts=self.counts[keep], n_orders=self.n_orders,
                                min_count=max(min_count, self.min_count))


def row_keys(a: np.ndarray, bits: int) -> np.ndarray:
    """One sortable key per row of item codes: packed into int64 when it fits, else bytes."""
    k = a.shape[1]
    if k * bits <= 63:
        key = np.zeros(len(a), dtype=np.int64)
        for j in range(k):  # a loop over itemset positions (<= max_len)
            key = (key << bits) | a[:, j].astype(np.int64)
        return key
    a = np.ascontiguousarray(a, dtype=np.int32)
    return a.view(np.dtype((np.void, 4 * k))).ravel()


class CountIndex:
    """Exact counts of frequent itemsets, looked up by (m, k) arrays of sorted item codes."""

    def __init__(self, fi: FrequentItemsets, n_items: int) -> None:
        self._bits = max(1, int(n_items).bit_length())
        self._single = np.zeros(n_items, dtype=np.int64)
        ones, ones_counts = fi.of_length(1)
        self._single[ones[:, 0]] = ones_counts
        self._by_len: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for k in range(2, int(fi.lengths.max(initial=1)) + 1):
            sets, counts = fi.of_length(k)
            keys = row_keys(sets, self._bits)
            order = np.argsort(keys)
            self._by_len[k] = (keys[order], counts[order])

    def counts(self, sets: np.ndarray) -> np.ndarray:
        k = sets.shape[1]
        if not len(sets):
            return np.empty(0, np.int64)
        if k == 1:
            return self._single[sets[:, 0]]
        keys, counts = self._by_len.get(k, (np.empty(0, np.int64), np.empty(0, np.int64)))
        if not len(keys):  # impossible, as below
            raise AssertionError(f"no frequent itemsets of {k} products to look up")
        query = row_keys(sets, self._bits)
        pos = np.searchsorted(keys, query)
        pos = np.minimum(pos, len(keys) - 1)
        if not np.all(keys[pos] == query):  # impossible: subsets of frequent sets are frequent
            raise AssertionError("an itemset's subset was not among the frequent itemsets")
        return counts[pos]


@njit(cache=True, nogil=True)
def dense_pair_counts(indptr: np.ndarray, indices: np.ndarray, n_items: int) -> np.ndarray:
    """Upper-triangular pair counts (F x F int32) from a CSR of sorted frequent-item codes."""
    counts = np.zeros((n_items, n_items), dtype=np.int32)
    for row in range(len(indptr) - 1):
        start, end = indptr[row], indptr[row + 1]
        for p in range(start, end):
            a = indices[p]
            for q in range(p + 1, end):
                counts[a, indices[q]] += 1
    return counts


@njit(cache=True, nogil=True)
def _project(tids: np.ndarray, f0: int, f1: int, b0: int, b1: int, out: np.ndarray,
             o0: int) -> None:
    """Bitset over the positions of tids[f0:f1] (item i's orders) that are also in
    tids[b0:b1] (item b's orders): the pair's orders in i's conditional database."""
    words = (f1 - f0 + 63) // 64
    for w in range(words):
        out[o0 + w] = 0
    i, j = f0, b0
    while i < f1 and j < b1:
        x, y = tids[i], tids[j]
        if x == y:
            pos = i - f0
            out[o0 + pos // 64] |= np.uint64(1) << np.uint64(pos % 64)
            i += 1
            j += 1
        elif x < y:
            i += 1
        else:
            j += 1


@njit(cache=True, nogil=True, inline="always")
def _popcount(x: np.uint64) -> np.uint64:
    x = x - ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))
    x = (x & np.uint64(0x3333333333333333)) + ((x >> np.uint64(2)) & np.uint64(0x3333333333333333))
    x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return (x * np.uint64(0x0101010101010101)) >> np.uint64(56)


@njit(cache=True, nogil=True)
def _and_bits(a: np.ndarray, a0: int, la: int, b: np.ndarray, b0: int, lb: int,
              out: np.ndarray, o0: int) -> tuple[int, int]:
    """Bitsets of equal width: AND a[a0:a0+la] and b[b0:b0+lb] into out[o0:].

    Returns (orders in common, words written)."""
    total = np.uint64(0)
    for w in range(la):
        v = a[a0 + w] & b[b0 + w]
        out[o0 + w] = v
        total += _popcount(v)
    return int(total), la


@njit(cache=True, nogil=True)
def _pair_frequent(pair_indptr: np.ndarray, pair_indices: np.ndarray, a: int, b: int) -> bool:
    """Whether (a, b), a < b, is a frequent pair (binary search in a's sorted neighbours)."""
    lo, hi = pair_indptr[a], pair_indptr[a + 1]
    while lo < hi:
        mid = (lo + hi) // 2
        v = pair_indices[mid]
        if v == b:
            return True
        if v < b:
            lo = mid + 1
        else:
            hi = mid
    return False


@njit(cache=True, nogil=True)
def _grow(arr: np.ndarray, need: int) -> np.ndarray:
    if need <= len(arr):
        return arr
    size = max(need, 2 * len(arr))
    out = np.empty(size, dtype=arr.dtype)
    out[: len(arr)] = arr
    return out


@njit(cache=True, nogil=True)
def _eclat(tid_indptr: np.ndarray, tids: np.ndarray, pair_indptr: np.ndarray,
           pair_indices: np.ndarray, min_count: int, max_len: int, max_out: int
           ) -> tuple[np.ndarray, np.ndarray, int]:
    """Itemsets of length 3..max_len, depth first from each frequent item.

    ``tids[tid_indptr[i]:tid_indptr[i + 1]]`` are item i's orders (sorted). Below each first
    item i the orders are projected onto i's own orders and held as bitsets of
    ceil(count(i) / 64) words, so a join is a short AND and popcount. Returns (items flat
    int32 with stride max_len, counts int64, n); n = -1 when there would be more than
    ``max_out`` itemsets (it stops there). Bitsets and extension lists live in
    stack-allocated buffers: a frame's children are released when it is done.
    """
    n_items = len(tid_indptr) - 1
    out_items = np.empty(1024 * max_len, dtype=np.int32)
    out_counts = np.empty(1024, dtype=np.int64)
    n_out = 0
    buf = np.empty(1 << 16, dtype=np.uint64)
    ext_item = np.empty(4096, dtype=np.int32)
    ext_off = np.empty(4096, dtype=np.int64)
    ext_len = np.empty(4096, dtype=np.int64)
    frame_start = np.empty(max_len + 1, dtype=np.int64)
    frame_end = np.empty(max_len + 1, dtype=np.int64)
    frame_cur = np.empty(max_len + 1, dtype=np.int64)
    frame_buf_top = np.empty(max_len + 1, dtype=np.int64)
    path = np.empty(max_len + 1, dtype=np.int32)

    for first in range(n_items):
        # Frame 0: extensions of {first} = its frequent pair partners, with the pairs' orders.
        top = 0
        ext_top = 0
        f0, f1 = tid_indptr[first], tid_indptr[first + 1]
        used = (f1 - f0 + 63) // 64
        for p in range(pair_indptr[first], pair_indptr[first + 1]):
            b = pair_indices[p]
            buf = _grow(buf, top + used)
            _project(tids, f0, f1, tid_indptr[b], tid_indptr[b + 1], buf, top)
            ext_item = _grow(ext_item, ext_top + 1)
            ext_off = _grow(ext_off, ext_top + 1)
            ext_len = _grow(ext_len, ext_top + 1)
            ext_item[ext_top] = b
            ext_off[ext_top] = top
            ext_len[ext_top] = used
            ext_top += 1
            top += used
        if ext_top < 2:
            continue
        path[0] = first
        depth = 0
        frame_start[0], frame_end[0], frame_cur[0], frame_buf_top[0] = 0, ext_top, 0, 0
        while depth >= 0:
            if frame_cur[depth] == frame_end[depth]:  # frame done: release its buffers
                ext_top = frame_start[depth]
                top = frame_buf_top[depth]
                depth -= 1
                continue
            a = frame_cur[depth]
            frame_cur[depth] += 1
            size = depth + 3  # first, depth path items, a and b
            # Children of prefix path[0..depth] + ext_item[a]: joins with later extensions.
            # Invariant: ext_top == frame_end[depth] here, so children go after this frame.
            child_start = ext_top
            child_top = top
            ia = ext_item[a]
            for bpos in range(a + 1, frame_end[depth]):
                ib = ext_item[bpos]
                if not _pair_frequent(pair_indptr, pair_indices, ia, ib):
                    continue
                la, lb = ext_len[a], ext_len[bpos]
                buf = _grow(buf, top + la)
                n, used = _and_bits(buf, ext_off[a], la, buf, ext_off[bpos], lb, buf, top)
                if n < min_count:
                    continue
                if n_out == max_out:
                    return out_items[:0], out_counts[:0], -1
                out_items = _grow(out_items, (n_out + 1) * max_len)
                out_counts = _grow(out_counts, n_out + 1)
                row = n_out * max_len
                for d in range(depth + 1):
                    out_items[row + d] = path[d]
                out_items[row + depth + 1] = ia
                out_items[row + depth + 2] = ib
                for d in range(depth + 3, max_len):
                    out_items[row + d] = -1
                out_counts[n_out] = n
                n_out += 1
                if size < max_len:  # keep it as an extension for the next level
                    ext_item = _grow(ext_item, ext_top + 1)
                    ext_off = _grow(ext_off, ext_top + 1)
                    ext_len = _grow(ext_len, ext_top + 1)
                    ext_item[ext_top] = ib
                    ext_off[ext_top] = top
                    ext_len[ext_top] = used
                    ext_top += 1
                    top += used
            if ext_top - child_start >= 2:
                depth += 1
                path[depth] = ia
                frame_start[depth], frame_end[depth] = child_start, ext_top
                frame_cur[depth], frame_buf_top[depth] = child_start, child_top
            else:
                ext_top = child_start
                top = child_top
    return out_items[: n_out * max_len], out_counts[:n_out], n_out


def _pairs(xf: sp.csr_matrix, n_items: int, min_count: int) -> tuple[np.ndarray, np.ndarray,
                                                                     np.ndarray]:
    """Frequent pairs (a < b, frequent-item codes) and their counts."""
    if n_items <= DENSE_PAIR_LIMIT:
        table = dense_pair_counts(xf.indptr.astype(np.int64), xf.indices.astype(np.int32),
                                   n_items)
        a, b = np.nonzero(table >= min_count)
        return a.astype(np.int32), b.astype(np.int32), table[a, b].astype(np.int64)
    co = sp.triu(xf.T.tocsr() @ xf, k=1).tocoo()
    keep = co.data >= min_count
    order = np.lexsort((co.col[keep], co.row[keep]))
    return (co.row[keep][order].astype(np.int32), co.col[keep][order].astype(np.int32),
            co.data[keep][order].astype(np.int64))


class TooManyItemsets(Exception):
    """More itemsets of 3 or more products than the caller allowed (``max_itemsets``)."""


def frequent_itemsets(baskets: sp.csr_matrix, min_count: int, max_len: int, *,
                      max_itemsets: int = -1) -> FrequentItemsets:
    """All itemsets of 1..max_len products contained in at least ``min_count`` orders.

    ``baskets`` is the binary order x product CSR matrix (int). Counts are exact integers.
    ``max_itemsets`` (>= 0) bounds the itemsets of 3 or more products: past it the search
    stops and raises ``TooManyItemsets`` instead of filling the memory.
    """
    if min_count < 1:
        raise ValueError("min_count must be at least 1")
    if max_len < 1:
        raise ValueError("max_len must be at least 1")
    x = baskets.tocsr()
    x.sum_duplicates()
    n_orders = x.shape[0]
    item_counts = np.diff(x.tocsc().indptr).astype(np.int64)
    frequent = np.flatnonzero(item_counts >= min_count).astype(np.int32)
    width = max_len
    parts_items = [np.column_stack([frequent, np.full((len(frequent), width - 1), -1, np.int32)])
                   if width > 1 else frequent[:, None]]
    parts_counts = [item_counts[frequent]]
    parts_len = [np.full(len(frequent), 1, np.int8)]
    if max_len >= 2 and len(frequent) >= 2:
        # Local codes in ascending support: each Eclat root then projects onto the rarest
        # item's orders, the smallest conditional database.
        local_to_code = frequent[np.argsort(item_counts[frequent], kind="stable")]
        xf = x[:, local_to_code].tocsr()
        xf.sort_indices()
        a, b, counts = _pairs(xf, len(frequent), min_count)
        pair_items = np.full((len(a), width), -1, np.int32)
        pair_items[:, :2] = np.sort(np.column_stack([local_to_code[a], local_to_code[b]]), axis=1)
        parts_items.append(pair_items)
        parts_counts.append(counts)
        parts_len.append(np.full(len(a), 2, np.int8))
        if max_len >= 3 and len(a):
            pair_indptr = np.zeros(len(frequent) + 1, np.int64)
            np.add.at(pair_indptr, a.astype(np.int64) + 1, 1)
            pair_indptr = np.cumsum(pair_indptr)
            xc = xf.tocsc()
            xc.sort_indices()
            flat, long_counts, n = _eclat(xc.indptr.astype(np.int64), xc.indices.astype(np.int32),
                                          pair_indptr, b, min_count, max_len,
                                          max_itemsets if max_itemsets >= 0 else -2)
            if n < 0:
                raise TooManyItemsets(f"more than {max_itemsets:,} itemsets of 3 to {max_len} "
                                      f"products in {min_count:,} or more orders")
            local = flat.reshape(n, max_len)
            padding = local < 0
            codes = np.where(padding, np.iinfo(np.int32).max, local_to_code[np.maximum(local, 0)])
            codes = np.sort(codes, axis=1)  # product-code order within each itemset
            parts_items.append(np.where(np.sort(padding, axis=1), -1, codes).astype(np.int32))
            parts_counts.append(long_counts)
            parts_len.append((local >= 0).sum(axis=1).astype(np.int8))
    return FrequentItemsets(items=np.concatenate(parts_items), counts=np.concatenate(parts_counts),
                            lengths=np.concatenate(parts_len), n_orders=n_orders,
                            min_count=min_count)
