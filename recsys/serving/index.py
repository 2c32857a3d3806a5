"""The serving index: a verified artifact version loaded into plain Python/numpy lookups.

No FastAPI here: the API routes only look things up in a ``ServingIndex``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recsys.artifacts import ArtifactStore, Manifest
from recsys.popularity import GLOBAL_SCOPE
from recsys.vocab import Vocabulary

__all__ = ["ServingIndex", "load_index"]


@dataclass(frozen=True)
class ServingIndex:
    """Everything the API answers from, for one artifact version."""

    manifest: Manifest
    items: Vocabulary
    names: dict[str, str]
    prices: dict[str, float]
    categories: dict[str, str]
    available: frozenset[str]  # in stock and active (all products when there is no catalog)
    popular: dict[str, list[tuple[str, int]]]  # scope -> [(product_id, orders)] best first
    loaded_at: datetime

    @property
    def version(self) -> str:
        return self.manifest.version

    def age_seconds(self) -> float:
        created = datetime.fromisoformat(self.manifest.created_at)
        return (datetime.now(UTC) - created).total_seconds()

    def describe(self, product_id: str) -> dict[str, Any]:
        """The display fields the catalog has for a product."""
        out: dict[str, Any] = {"product_id": product_id}
        if product_id in self.names:
            out["name"] = self.names[product_id]
        if product_id in self.prices:
            out["price"] = self.prices[product_id]
        if product_id in self.categories:
            out["category"] = self.categories[product_id]
        return out

    def best_sellers(self, category: str | None, k: int, *, in_stock_only: bool = True,
                     exclude: frozenset[str] = frozenset()) -> list[tuple[str, int]]:
        """Top k of a category path (or globally), filtered."""
        ranked = self.popular.get(category if category else GLOBAL_SCOPE, [])
        out = []
        for product_id, count in ranked:  # a list of at most top_k entries
            if product_id in exclude or (in_stock_only and product_id not in self.available):
                continue
            out.append((product_id, count))
            if len(out) == k:
                break
        return out


def load_index(store_root: Path | str, version: str | None = None) -> ServingIndex:
    """Verify (checksums) and load an artifact version (default: current)."""
    store = ArtifactStore(store_root)
    manifest = store.verify(version)
    folder = store.path(manifest.version)
    items = Vocabulary.load(folder / "items.parquet")
    names: dict[str, str] = {}
    prices: dict[str, float] = {}
    categories: dict[str, str] = {}
    available = frozenset(items.ids.tolist())
    catalog_path = folder / "catalog.parquet"
    if catalog_path.exists():
        catalog = pd.read_parquet(catalog_path)
        ids = catalog["product_id"].astype(str)
        for column, target in (("name", names), ("category", categories)):
            if column in catalog:
                present = catalog[column].notna()
                target.update(zip(ids[present], catalog.loc[present, column].astype(str),
                                  strict=True))
        if "price" in catalog:
            present = catalog["price"].notna()
            prices.update(zip(ids[present], catalog.loc[present, "price"].astype(float),
                              strict=True))
        ok = np.ones(len(catalog), dtype=bool)
        for flag in ("in_stock", "is_active"):
            if flag in catalog:
                ok &= catalog[flag].to_numpy(dtype=bool)
        unknown_to_catalog = set(items.ids.tolist()) - set(ids)
        available = frozenset(ids[ok]) | frozenset(unknown_to_catalog)
    popular_table = pd.read_parquet(folder / "popular.parquet")
    popular: dict[str, list[tuple[str, int]]] = {}
    for scope, group in popular_table.groupby("scope", sort=False):
        popular[str(scope)] = list(zip(group["product_id"].astype(str),
                                       group["orders"].astype(int), strict=True))
    return ServingIndex(manifest=manifest, items=items, names=names, prices=prices,
                        categories=categories, available=available, popular=popular,
                        loaded_at=datetime.now(UTC))
