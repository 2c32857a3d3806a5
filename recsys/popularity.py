"""Best sellers, globally and per category (every level of the category path).

The fallback of every list: an unknown or cold product gets its category's best sellers, else
the global ones. Counts are distinct orders per product within the window (exact integers).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["GLOBAL_SCOPE", "best_sellers", "category_ancestors", "rank_scopes"]

GLOBAL_SCOPE = "*"


def category_ancestors(category: pd.Series) -> pd.DataFrame:
    """(product row index, scope) pairs: 'A > B > C' yields 'A', 'A > B', 'A > B > C'."""
    parts = category.reset_index(drop=True).dropna().str.split(" > ")
    frames = []
    max_depth = int(parts.str.len().max()) if len(parts) else 0
    for depth in range(1, max_depth + 1):  # a loop over path depth (a handful), not rows
        has = parts.str.len() >= depth
        scope = parts[has].str[:depth].str.join(" > ")
        frames.append(pd.DataFrame({"row": scope.index, "scope": scope.to_numpy()}))
    if not frames:
        return pd.DataFrame({"row": pd.Series(dtype=np.int64), "scope": pd.Series(dtype="string")})
    return pd.concat(frames, ignore_index=True)


def best_sellers(orders: pd.DataFrame, catalog: pd.DataFrame | None, *, window_days: int,
                 top_k: int) -> pd.DataFrame:
    """Top ``top_k`` products per scope by distinct orders (ties: more units, then product id).

    Columns: scope (``*`` = global, else a category path prefix), rank (1-based), product_id,
    orders, units, revenue (NaN without prices).
    """
    lines = orders
    if window_days and "ordered_at" in orders and orders["ordered_at"].notna().any():
        start = orders["ordered_at"].max() - pd.Timedelta(days=window_days)
        lines = orders[orders["ordered_at"] > start]
    revenue = (lines["quantity"] * lines["unit_price"]) if "unit_price" in lines else np.nan
    per_line = pd.DataFrame({"order_id": lines["order_id"], "product_id": lines["product_id"],
                             "units": lines["quantity"], "revenue": revenue})
    stats = per_line.groupby("product_id", sort=False).agg(
        orders=("order_id", "nunique"), units=("units", "sum"), revenue=("revenue", "sum"))
    return rank_scopes(stats.reset_index(), catalog, top_k=top_k)


def rank_scopes(stats: pd.DataFrame, catalog: pd.DataFrame | None, *,
                top_k: int) -> pd.DataFrame:
    """The best-seller table from per-product ``stats`` (product_id, orders, units, revenue),
    however they were counted (here, or on Spark)."""
    scoped = [stats.assign(scope=GLOBAL_SCOPE)]
    if catalog is not None and "category" in catalog:
        anc = category_ancestors(catalog["category"])
        anc["product_id"] = catalog["product_id"].to_numpy()[anc["row"].to_numpy()]
        scoped.append(anc[["product_id", "scope"]].merge(stats, on="product_id", how="inner"))
    table = pd.concat(scoped, ignore_index=True)
    table = table.sort_values(["scope", "orders", "units", "product_id"],
                              ascending=[True, False, False, True], kind="stable")
    table["rank"] = table.groupby("scope", sort=False).cumcount() + 1
    table = table[table["rank"] <= top_k]
    table["orders"] = table["orders"].astype(np.int64)
    return table[["scope", "rank", "product_id", "orders", "units", "revenue"]].reset_index(drop=True)
