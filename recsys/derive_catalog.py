"""The catalog derived from order lines, for exports that carry names and prices on every line
(Online Retail II's ``Description`` and ``Price``) but come without a product file.

Per product, over the accepted order lines: name = its most frequent non-blank value of the
mapped name column (ties: the alphabetically first), category likewise, price = the median
or the latest (by ``ordered_at``, else file order) accepted unit price. An explicit catalog
file wins for the products it has: derived rows only add the products it lacks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from recsys.mapping import CatalogFromOrders

__all__ = ["DerivedCatalog", "derive_catalog", "merge_catalogs"]


@dataclass
class DerivedCatalog:
    """The derived catalog (canonical catalog columns) and what it was derived from."""

    catalog: pd.DataFrame
    note: dict[str, Any]


def _most_frequent(products: pd.Series, values: pd.Series) -> pd.Series:
    """Per product, its most frequent non-blank value (ties: alphabetically first)."""
    text = values.astype("string").str.strip()
    frame = pd.DataFrame({"product_id": products.to_numpy(), "value": text.to_numpy()})
    frame = frame[frame["value"].notna() & (frame["value"] != "")]
    counts = frame.groupby(["product_id", "value"], sort=False).size().rename("n").reset_index()
    counts = counts.sort_values(["product_id", "n", "value"], ascending=[True, False, True],
                                kind="stable")
    return counts.drop_duplicates("product_id").set_index("product_id")["value"]


def derive_catalog(orders: pd.DataFrame, text: pd.DataFrame, spec: CatalogFromOrders,
                   *, price_source: str | None, known: pd.Series | None = None) -> DerivedCatalog:
    """Derive one catalog row per product of ``orders`` (accepted canonical order lines) that
    is not in ``known`` (the explicit catalog's product ids, which win).

    ``text``: the raw columns named by ``spec`` (name, category), row-aligned with ``orders``.
    ``price_source``: the orders column the unit price came from (for the note), None when the
    orders have no unit price.
    """
    every = pd.Index(pd.unique(orders["product_id"].to_numpy()), name="product_id")
    in_file = every.isin(known) if known is not None else np.zeros(len(every), bool)
    ids = every[~in_file].sort_values()
    keep = orders["product_id"].isin(ids).to_numpy()
    orders, text = orders[keep], text[keep]
    products = orders["product_id"]
    catalog = pd.DataFrame({"product_id": ids.astype("string")})
    note: dict[str, Any] = {"products": len(ids), "source": "order lines",
                            "from_catalog_file": int(in_file.sum())}
    for column, source in spec.source_columns().items():
        values = _most_frequent(products, text[source]).reindex(ids)
        if column == "category":
            values = values.str.replace(r"\s*>\s*", " > ", regex=True)
        catalog[column] = pd.array(values.to_numpy(), dtype="string")
        note[column] = {"from": source, "rule": "most frequent value per product",
                        "products_with_value": int(values.notna().sum())}
    if spec.price != "none" and price_source is not None and "unit_price" in orders:
        priced = orders[orders["unit_price"].notna()]
        if spec.price == "median":
            price = priced.groupby("product_id")["unit_price"].median()
        else:
            if "ordered_at" in priced:
                priced = priced.sort_values("ordered_at", kind="stable")
            price = priced.groupby("product_id")["unit_price"].last()
        values = price.reindex(ids)
        catalog["price"] = values.to_numpy("float64")
        note["price"] = {"from": price_source, "rule": f"{spec.price} accepted unit price",
                         "products_with_value": int(values.notna().sum())}
    catalog["in_stock"] = True
    catalog["is_active"] = True
    return DerivedCatalog(catalog=catalog, note=note)


def merge_catalogs(explicit: pd.DataFrame | None, derived: DerivedCatalog) -> pd.DataFrame:
    """The explicit catalog's rows, then the derived rows (products it lacks)."""
    if explicit is None or derived.catalog.empty:
        return derived.catalog if explicit is None else explicit
    merged = pd.concat([explicit, derived.catalog], ignore_index=True)
    for flag in ("in_stock", "is_active"):
        merged[flag] = merged[flag].fillna(True).astype(bool)
    return merged
