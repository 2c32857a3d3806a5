"""Bundles (2 to 4 products bought together) ranked by expected order-value gain, and the
substitutes (viewed together, rarely bought together) kept out of them.

Expected order-value gain of a bundle S with anchor a (the product already in the cart):

    gain(S, a) = P(S | a) x sum of value(j) for j in S other than a
               = count(S) / count(a) x sum of value(j),  value(j) = price(j) x margin(j)

(margin 1 when margins are unknown, so the gain is in revenue; with margins, in profit).
A bundle's anchor is the product that maximises its gain; bundles are ranked by that gain.

Substitutes: products a and b with at least ``min_coviews`` sessions that viewed both, a
co-view lift (sessions viewing both x sessions / (sessions viewing a x sessions viewing b)) of
at least ``min_view_lift``, and a co-purchase lift of at most ``max_purchase_lift`` (bought
together less often than chance).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.rules.itemsets import row_keys
from recsys.rules.settings import BundleConfig, SubstituteConfig

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
    binary = baskets.copy()
    binary.data[:] = 1
    bought = np.asarray(binary[:, a].multiply(binary[:, b]).sum(axis=0)).ravel()
    per_item_orders = np.diff(binary.tocsc().indptr).astype(np.float64)
    expected = per_item_orders[a] * per_item_orders[b] / max(n_orders, 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        purchase_lift = np.where(expected > 0, bought / expected, 0.0)
    keep = purchase_lift <= config.max_purchase_lift
    return pd.DataFrame({"a": a[keep], "b": b[keep], "coviews": coviews[keep],
                         "view_lift": view_lift[keep], "copurchases": bought[keep],
                         "purchase_lift": purchase_lift[keep]})


def product_values(items: pd.Index, catalog: pd.DataFrame | None, orders: pd.DataFrame,
                   use_margin: bool) -> np.ndarray:
    """Value per product (catalog price, else median unit price; x margin when known)."""
    price = pd.Series(np.nan, index=items)
    if catalog is not None and "price" in catalog:
        price = price.fillna(catalog.set_index("product_id")["price"].reindex(items))
    if "unit_price" in orders:
        price = price.fillna(orders.groupby("product_id")["unit_price"].median().reindex(items))
    value = price.to_numpy(dtype=np.float64)
    if use_margin and catalog is not None and "margin" in catalog:
        margin = catalog.set_index("product_id")["margin"].reindex(items).to_numpy(np.float64)
        value = value * np.where(np.isnan(margin), 1.0, margin)
    return value


def rank_bundles(itemsets: np.ndarray, counts: np.ndarray, lengths: np.ndarray,
                 item_counts: np.ndarray, values: np.ndarray, substitutes: pd.DataFrame,
                 config: BundleConfig) -> pd.DataFrame:
    """Rank itemsets of 2..max_size item codes (padded (n, w) rows, sorted) as bundles.

    Returns codes-based columns: items (array rows), size, count, anchor, anchor_confidence,
    expected_gain, bundle_value; at most ``config.top`` rows, best first.
    """
    keep = (lengths >= 2) & (lengths <= config.max_size) & (counts >= config.min_count)
    sets, set_counts, sizes = itemsets[keep], counts[keep], lengths[keep]
    width = sets.shape[1]
    valid = sets >= 0
    safe = np.maximum(sets, 0)
    item_value = np.where(valid, values[safe], 0.0)
    priced = ~np.any(valid & np.isnan(values[safe]), axis=1)
    if len(substitutes):  # drop bundles holding a substitute pair
        bits = max(1, int(max(len(values), 1)).bit_length())
        sub_keys = np.sort(row_keys(np.column_stack([substitutes["a"], substitutes["b"]]), bits))
        has_sub = np.zeros(len(sets), dtype=bool)
        for i in range(width):  # pairs of positions within a bundle (<= 6)
            for j in range(i + 1, width):
                both = valid[:, i] & valid[:, j]
                pair = np.sort(np.column_stack([safe[:, i], safe[:, j]]), axis=1)
                k = row_keys(pair, bits)
                pos = np.minimum(np.searchsorted(sub_keys, k), len(sub_keys) - 1)
                has_sub |= both & (sub_keys[pos] == k)
        priced &= ~has_sub
    sets, set_counts, sizes, valid, safe, item_value = (
        sets[priced], set_counts[priced], sizes[priced], valid[priced], safe[priced],
        item_value[priced])
    total = np.nansum(item_value, axis=1)
    anchor_counts = np.where(valid, item_counts[safe], np.iinfo(np.int64).max)
    gains = set_counts[:, None] / anchor_counts * (total[:, None] - item_value)
    gains = np.where(valid, gains, -np.inf)
    best = np.argmax(gains, axis=1)
    rows = np.arange(len(sets))
    gain = gains[rows, best]
    top = np.lexsort((-set_counts, -gain))[: config.top]  # best gain first, then more orders
    return pd.DataFrame({
        "items": list(sets[top]),
        "size": sizes[top].astype(np.int64),
        "count": set_counts[top],
        "anchor": sets[top, best[top]],
        "anchor_confidence": set_counts[top] / anchor_counts[top, best[top]],
        "expected_gain": gain[top],
        "bundle_value": total[top],
    })
