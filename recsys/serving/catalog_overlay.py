"""Catalogue updates without a retrain: rows posted to ``POST /admin/catalog`` are kept in an
overlay that is applied to every index this worker loads (hot reloads included).

An overlay row sets only the fields it gives: name, category, brand, price, margin, and the
flags ``in_stock`` / ``is_active``. A row that gives neither flag keeps the product's
availability; one that gives a flag states it (available = every given flag true). A product
the artifact lacks becomes servable: its catalogue fields, and content neighbours computed
from its row against the artifact's vocabulary and idf. A row is dropped once a loaded
artifact's catalogue holds the same values (the next run included it). The overlay lives in
the worker's memory: with several workers, post the update to each (or restart them after
the next run).
"""

from __future__ import annotations

import threading
from dataclasses import replace
from typing import Annotated, Any

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from recsys.serving.index import ServingIndex
from recsys.serving.params import ID_PATTERN

__all__ = ["CatalogRow", "CatalogOverlay"]

_TEXT = Annotated[str, Field(min_length=1, max_length=512, pattern=ID_PATTERN)]


class CatalogRow(BaseModel):
    """One catalogue row, checked as ingest checks the catalog (non-negative price, margin
    between 0 and 1, printable text)."""

    model_config = ConfigDict(extra="forbid")
    product_id: Annotated[str, Field(min_length=1, max_length=128, pattern=ID_PATTERN)]
    name: _TEXT | None = None
    category: _TEXT | None = None
    brand: _TEXT | None = None
    price: float | None = Field(None, ge=0, le=1e9)
    margin: float | None = Field(None, ge=0, le=1)
    in_stock: bool | None = None
    is_active: bool | None = None


class CatalogOverlay:
    """The catalogue rows posted since the artifact was built, by product (merged: a later
    row's fields replace an earlier one's)."""

    def __init__(self) -> None:
        self._rows: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._rows)

    def update(self, rows: list[CatalogRow]) -> None:
        with self._lock:
            for row in rows:
                given = row.model_dump(exclude_unset=True, exclude_none=True)
                self._rows.setdefault(row.product_id, {}).update(given)

    def unavailable(self) -> frozenset[str]:
        """The products a row makes unavailable (a given ``in_stock`` / ``is_active`` false):
        what ``apply`` takes out of the served lists, for a process without an index (the
        campaign export)."""
        with self._lock:
            return frozenset(pid for pid, row in self._rows.items()
                             if not all(row[f] for f in ("in_stock", "is_active") if f in row))

    def apply(self, index: ServingIndex, min_support: int) -> ServingIndex:
        """``index`` with the overlay's changes (rows it already holds are dropped first)."""
        with self._lock:
            for pid in [p for p, row in self._rows.items() if _included(index, row)]:
                del self._rows[pid]
            rows = {pid: dict(row) for pid, row in self._rows.items()}
        names, prices = dict(index.names), dict(index.prices)
        margins, categories = dict(index.margins), dict(index.categories)
        brands = dict(index.brands) if any("brand" in r for r in rows.values()) else index.brands
        available = set(index.available)
        for pid, row in rows.items():
            for key, target in (("name", names), ("price", prices), ("margin", margins),
                                ("category", categories)):
                if key in row:
                    target[pid] = row[key]
            if "brand" in row:
                brands[pid] = row["brand"].strip()
            flags = [row[f] for f in ("in_stock", "is_active") if f in row]
            ok = all(flags) if flags else (pid in index.available or pid not in index.code_of)
            (available.add if ok else available.discard)(pid)
        content = index.content
        if content is not None:
            new = pd.DataFrame([r for r in rows.values() if r["product_id"] not in
                                index.code_of])
            added = {}
            if len(new):
                table = content.model.similar(content.model.transform(new),
                                              len(content.table.ids[0]) if content.table
                                              is not None and len(content.table.ids) else 50)
                for i, pid in enumerate(new["product_id"].tolist()):
                    keep = table.ids[i] >= 0
                    added[pid] = list(zip(table.ids[i][keep].tolist(),
                                          table.scores[i][keep].tolist(),
                                          table.support[i][keep].tolist(), strict=True))
            content = replace(content, added=added, min_support=min_support)
        return replace(index, names=names, prices=prices, margins=margins,
                       categories=categories, available=frozenset(available), content=content,
                       brands=brands)


def _included(index: ServingIndex, row: dict[str, Any]) -> bool:
    """Whether the artifact's catalogue already holds every value of ``row``."""
    pid = row["product_id"]
    if pid not in index.code_of:
        return False
    for key, held in (("name", index.names), ("price", index.prices),
                      ("margin", index.margins), ("category", index.categories)):
        if key in row and held.get(pid) != row[key]:
            return False
    if "brand" in row and index.brands.get(pid) != row["brand"].strip():
        return False
    flags = [row[f] for f in ("in_stock", "is_active") if f in row]
    return not flags or all(flags) == (pid in index.available)
