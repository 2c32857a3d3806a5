"""Bundles (2 to 4 products bought together) ranked by expected order-value gain over what the
customer would buy anyway, and the substitutes (viewed together, rarely bought together) kept
out of them.

A bundle must be a real association: every pair (a, b) in it bought together more often than
chance, count(ab) x N > count(a) x count(b) (lift > 1, exact integers), and significantly so,
one-sided Fisher p-value <= ``max_p_value`` (0.05 per pair by default; no multiple-testing
correction, so about 5% of truly unrelated pairs that reach the count would pass: lower it,
e.g. to 0.05 / pairs tested, for a Bonferroni bound).

Expected order-value gain of a bundle S with anchor a (the product already in the cart), with
O = S minus a, the other products:

    gain(S, a) = (P(O | a) - P(O)) x sum of value(j) for j in O
               = (count(S) / count(a) - count(O) / N) x sum of value(j),
    value(j) = price(j) x margin(j)

(margin 1 when margins are unknown, so the gain is in revenue; with margins, in profit). The
P(O) term takes out what the customer would buy anyway, so an expensive best seller does not
win on price alone. A bundle's anchor is the product that maximises its gain; bundles with no
positive gain are left out, the rest ranked by that gain, best first, skipping a bundle when
one of its pairs is already in ``max_pair_repeats`` better ones: near-duplicates ({a, b, c},
{a, b, d}, {a, b, c, d}) would otherwise fill a product's list with one pair padded by a
third product (the Regency cakestand in every bundle of 85123A on Online Retail II).

Substitutes: products a and b with at least ``min_coviews`` sessions that viewed both, a
co-view lift (sessions viewing both x sessions / (sessions viewing a x sessions viewing b)) of
at least ``min_view_lift``, and a co-purchase lift of at most ``max_purchase_lift`` (bought
together less often than chance).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp
from numba import njit

from recsys.rules.itemsets import CountIndex, FrequentItemsets, row_keys
from recsys.rules.settings import BundleConfig, SubstituteConfig
from recsys.rules.significance import fisher_upper_tail, p_threshold

__all__ = ["SubstituteConfig", "BundleConfig", "substitute_pairs", "rank_bundles",
           "product_values"]


def _pair_counts(x: sp.csr_matrix) -> sp.coo_matrix:
    """Upper-triangle co-occurrence counts of a binary rows x items matrix."""
    binary = x.copy()
    binary.data[:] = 1
    binary = binary.astype(np.int64)
    return sp.triu(binary.T @ binary, k=1).tocoo()


def substitute_pairs(sessions: sp.csr_matrix, baskets: sp.csr_matrix,
                     config: SubstituteConfig) -> pd.DataFrame:
    """Substitute pairs (item codes a < b) from session x item views and order x item baskets
    over the same item vocabulary. Columns: a, b, coviews, view_lift, copurchases,
    purchase_lift."""
    n_sessions, n_orders = sessions.shape[0], baskets.shape[0]
    views = _pair_counts(sessions)
    keep = views.data >= config.min_coviews
    a, b, coviews = views.row[keep], views.col[keep], views.data[keep]
    per_item_views = np.diff(sessions.tocsc().indptr)
    view_lift = coviews * n_sessions / (per_item_views[a] * per_item_views[b]).astype(np.float64)
    keep = view_lift >= config.min_view_lift
    a, b, coviews, view_lift = a[keep], b[keep], coviews[keep], view_lift[keep]
    by_item = baskets.tocsc()
    by_item.sum_duplicates()  # canonical: each item's orders once, ascending
    bought = _orders_with_both(by_item.indptr.astype(np.int64), by_item.indices,
                               a.astype(np.int64), b.astype(np.int64))
    per_item_orders = np.diff(by_item.indptr).astype(np.float64)
    expected = per_item_orders[a] * per_item_orders[b] / max(n_orders, 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        purchase_lift = np.where(expected > 0, bought / expected, 0.0)
    keep = purchase_lift <= config.max_purchase_lift
    return pd.DataFrame({"a": a[keep], "b": b[keep], "coviews": coviews[keep],
                         "view_lift": view_lift[keep], "copurchases": bought[keep],
                         "purchase_lift": purchase_lift[keep]})


@njit(cache=True, nogil=True)
def _orders_with_both(indptr: np.ndarray, orders: np.ndarray, a: np.ndarray,
                      b: np.ndarray) -> np.ndarray:
    """Per pair (a[i], b[i]), the orders holding both: a merge of the two items' ascending
    order lists (items x orders CSR arrays). Pair by pair, so no intermediate matrix grows
    with the pairs (slicing the basket matrix by millions of pair columns overflowed scipy's
    32-bit index on a 3M-order shop)."""
    out = np.zeros(len(a), np.int64)
    for p in range(len(a)):
        i, i_end = indptr[a[p]], indptr[a[p] + 1]
        j, j_end = indptr[b[p]], indptr[b[p] + 1]
        n = 0
        while i < i_end and j < j_end:
            if orders[i] < orders[j]:
                i += 1
            elif orders[i] > orders[j]:
                j += 1
            else:
                n += 1
                i += 1
                j += 1
        out[p] = n
    return out


def product_values(items: pd.Index, catalog: pd.DataFrame | None,
                   median_prices: pd.Series | None, use_margin: bool) -> np.ndarray:
    """Value per product (catalog price, else ``median_prices``, the median unit price per
    product_id of the order lines; x margin when known)."""
    price = pd.Series(np.nan, index=items)
    if catalog is not None and "price" in catalog:
        price = price.fillna(catalog.set_index("product_id")["price"].reindex(items))
    if median_prices is not None:
        price = price.fillna(median_prices.reindex(items))
    value = price.to_numpy(dtype=np.float64)
    if use_margin and catalog is not None and "margin" in catalog:
        margin = catalog.set_index("product_id")["margin"].reindex(items).to_numpy(np.float64)
        value = value * np.where(np.isnan(margin), 1.0, margin)
    return value


def _pairs_of(sets: np.ndarray) -> list[tuple[int, int]]:
    """Position pairs (i, j), i < j, of a (m, w) itemset array: at most 6 for w = 4."""
    width = sets.shape[1]
    return [(i, j) for i in range(width) for j in range(i + 1, width)]


def _associated(fi: FrequentItemsets, n_orders: int, max_p: float) -> tuple[np.ndarray,
                                                                            np.ndarray,
                                                                            np.ndarray]:
    """Sorted keys of the frequent pairs, whether each is a real association (lift > 1 and
    Fisher p <= max_p), and its lift."""
    bits = max(1, int(fi.items.max(initial=0) + 1).bit_length())
    pairs, together = fi.of_length(2)
    ones, ones_counts = fi.of_length(1)
    single = np.zeros(int(fi.items.max(initial=0)) + 1, np.int64)
    single[ones[:, 0]] = ones_counts
    c_a, c_b = single[pairs[:, 0]], single[pairs[:, 1]]
    ok = together * np.int64(n_orders) > c_a * c_b
    ok &= fisher_upper_tail(together, n_orders, c_b, c_a) <= p_threshold(max_p)
    lift = together * float(n_orders) / np.maximum(c_a * c_b, 1)
    keys = row_keys(pairs, bits)
    order = np.argsort(keys)
    return keys[order], ok[order], lift[order]


_COLUMNS = {"items": object, "size": np.int64, "count": np.int64, "anchor": np.int32,
            "anchor_confidence": float, "others_share": float, "expected_gain": float,
            "bundle_value": float, "min_pair_lift": float}


def rank_bundles(fi: FrequentItemsets, values: np.ndarray, substitutes: pd.DataFrame,
                 config: BundleConfig) -> pd.DataFrame:
    """Rank the frequent itemsets of 2..max_size products (``fi``, over the orders the bundles
    are mined from) as bundles; ``values`` per product code.

    Returns codes-based columns: items (array rows), size, count, anchor, anchor_confidence,
    others_share (P(O)), expected_gain, bundle_value, min_pair_lift; at most ``config.top``
    rows, best first, no pair of products in more than ``config.max_pair_repeats`` of them.
    """
    n_orders = max(fi.n_orders, 1)
    index = CountIndex(fi, len(values))
    pair_keys, pair_ok, pair_lift = _associated(fi, n_orders, config.max_p_value)
    bits = max(1, int(fi.items.max(initial=0) + 1).bit_length())
    sub_keys = np.sort(row_keys(np.sort(np.column_stack(
        [substitutes["a"], substitutes["b"]]), axis=1).astype(np.int32), bits)) if len(
        substitutes) else np.empty(0, np.int64)
    parts = [pd.DataFrame({c: pd.Series(dtype=t) for c, t in _COLUMNS.items()})]
    pair_parts = [np.empty((0, 6), np.int64)]
    for size in range(2, config.max_size + 1):  # a loop over bundle sizes (<= 3)
        sets, counts = fi.of_length(size)
        keep = (counts >= config.min_count) & ~np.isnan(values[sets]).any(axis=1)
        min_lift = np.full(len(sets), np.inf)
        pair_ids = np.full((len(sets), 6), -1, np.int64)
        for col, (i, j) in enumerate(_pairs_of(sets)):  # every pair a real association,
            key = row_keys(sets[:, [i, j]], bits)        # none a substitute pair
            pos = np.minimum(np.searchsorted(pair_keys, key), len(pair_keys) - 1)
            keep &= pair_ok[pos]
            min_lift = np.minimum(min_lift, pair_lift[pos])
            pair_ids[:, col] = pos
            if len(sub_keys):
                at = np.minimum(np.searchsorted(sub_keys, key), len(sub_keys) - 1)
                keep &= sub_keys[at] != key
        sets, counts, min_lift, pair_ids = sets[keep], counts[keep], min_lift[keep], pair_ids[keep]
        value = values[sets]
        total = value.sum(axis=1)
        gains = np.empty(sets.shape)
        share = np.empty(sets.shape)
        for j in range(size):  # anchor at position j: O = the others
            others = np.delete(sets, j, axis=1)
            share[:, j] = index.counts(others) / n_orders
            gains[:, j] = (counts / index.counts(sets[:, [j]]) - share[:, j]) * (
                total - value[:, j])
        best = np.argmax(gains, axis=1)
        rows = np.arange(len(sets))
        positive = gains[rows, best] > 0
        rows, best = rows[positive], best[positive]
        anchors = sets[rows, best]
        parts.append(pd.DataFrame({
            "items": list(np.pad(sets[rows], ((0, 0), (0, config.max_size - size)),
                                 constant_values=-1)),
            "size": np.full(len(rows), size, np.int64), "count": counts[rows],
            "anchor": anchors, "anchor_confidence": counts[rows] / index.counts(anchors[:, None]),
            "others_share": share[rows, best], "expected_gain": gains[rows, best],
            "bundle_value": total[rows], "min_pair_lift": min_lift[rows]}))
        pair_parts.append(pair_ids[rows])
    table = pd.concat(parts, ignore_index=True)
    order = np.lexsort((-table["count"].to_numpy(), -table["expected_gain"].to_numpy(float)))
    chosen = _diverse(order, np.concatenate(pair_parts), len(pair_keys),
                      config.max_pair_repeats or len(order) + 1, config.top)
    return table.iloc[chosen].reset_index(drop=True)


@njit(cache=True, nogil=True)
def _diverse(order: np.ndarray, pair_ids: np.ndarray, n_pairs: int, max_repeats: int,
             top: int) -> np.ndarray:
    """Best first, the rows of ``order`` none of whose pairs (``pair_ids`` rows, -1 padded)
    is already in ``max_repeats`` chosen rows; at most ``top`` of them."""
    used = np.zeros(n_pairs, np.int64)
    chosen = np.empty(min(top, len(order)), np.int64)
    n = 0
    for row in order:
        if n == len(chosen):
            break
        ok = True
        for p in pair_ids[row]:
            if p >= 0 and used[p] >= max_repeats:
                ok = False
        if ok:
            for p in pair_ids[row]:
                if p >= 0:
                    used[p] += 1
            chosen[n] = row
            n += 1
    return chosen[:n]
