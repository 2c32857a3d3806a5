"""The serving index: a verified artifact version loaded into plain Python/numpy lookups.

No FastAPI here: the API routes only look things up in a ``ServingIndex``. Large neighbour
tables are memory-mapped read-only, so server workers share one copy. Every part but the
catalog vocabulary and the best sellers is optional: a missing file turns its endpoint into
a fallback, not an error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from recsys.artifacts import ArtifactStore, Manifest, load_npz, load_parquet
from recsys.models.neighbours import Neighbours
from recsys.popularity import GLOBAL_SCOPE
from recsys.vocab import Vocabulary

__all__ = ["ServingIndex", "PairRule", "MultiRule", "Bundle", "load_index", "rule_key"]


def rule_key(antecedents: tuple[str, ...] | list[str], consequent: str) -> str:
    """The stable id of a rule across retraining: sorted antecedent ids, '->', consequent."""
    return "+".join(sorted(antecedents)) + "->" + consequent


@dataclass(frozen=True)
class PairRule:
    consequent: int
    confidence: float
    lift: float
    count: int
    key: str


@dataclass(frozen=True)
class MultiRule:
    antecedents: frozenset[int]
    consequent: int
    confidence: float
    lift: float
    count: int
    key: str


@dataclass(frozen=True)
class Bundle:
    products: tuple[int, ...]
    count: int
    expected_gain: float
    anchor: int
    anchor_confidence: float


@dataclass
class CustomerModel:
    """ALS factors, customers' purchases (last day bought) and repurchase cycles."""

    user_factors: np.ndarray
    item_factors: np.ndarray
    gram: np.ndarray  # item_factors.T @ item_factors, for recalculating a user
    regularization: float
    alpha: float
    customers: dict[str, int]
    purchases_indptr: np.ndarray
    purchases_indices: np.ndarray
    purchases_day: np.ndarray
    cycle_days: np.ndarray  # per product code; NaN = not a consumable
    today: int  # the newest purchase day in the data (days since epoch + 1)


@dataclass(frozen=True)
class ServingIndex:
    """Everything the API answers from, for one artifact version."""

    manifest: Manifest
    items: Vocabulary
    code_of: dict[str, int]
    ids: list[str]
    names: dict[str, str]
    prices: dict[str, float]
    margins: dict[str, float]
    categories: dict[str, str]
    available: frozenset[str]  # in stock and active (all products when there is no catalog)
    popular: dict[str, list[tuple[str, int]]]  # scope -> [(product_id, orders)] best first
    loaded_at: datetime
    also_viewed: Neighbours | None = None
    bought_together: Neighbours | None = None
    pair_rules: dict[int, list[PairRule]] = field(default_factory=dict)
    multi_rules: dict[int, list[MultiRule]] = field(default_factory=dict)  # by each antecedent
    substitutes: dict[int, frozenset[int]] = field(default_factory=dict)
    bundles: dict[int, list[Bundle]] = field(default_factory=dict)  # by each member
    customer_model: CustomerModel | None = None
    segments: dict[str, str] = field(default_factory=dict)  # customer -> RFM segment

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

    def value(self, product_id: str) -> float:
        """Price x margin (margin 1 when unknown); 0 without a price."""
        return self.prices.get(product_id, 0.0) * self.margins.get(product_id, 1.0)

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


def _lists(column: pd.Series) -> list[list[str]]:
    return pa.chunked_array([pa.array(column.array)]).combine_chunks().to_pylist()


def _load_rules(folder: Path, code_of: dict[str, int]) -> tuple[dict[int, list[PairRule]],
                                                                dict[int, list[MultiRule]]]:
    pair: dict[int, list[PairRule]] = {}
    multi: dict[int, list[MultiRule]] = {}
    path = folder / "rules.parquet"
    if not path.exists():
        return pair, multi
    rules = load_parquet(path)
    single_consequent = rules["consequents"].list.len().to_numpy() == 1
    rules = rules[single_consequent]
    ants, cons = _lists(rules["antecedents"]), _lists(rules["consequents"])
    conf = rules["confidence"].to_numpy(float)
    lift = rules["lift"].to_numpy(float)
    count = rules["count"].to_numpy(np.int64)
    for i, (ant, con) in enumerate(zip(ants, cons, strict=True)):  # load time, once
        if con[0] not in code_of or any(a not in code_of for a in ant):
            continue
        c = code_of[con[0]]
        key = rule_key(ant, con[0])
        if len(ant) == 1:
            pair.setdefault(code_of[ant[0]], []).append(
                PairRule(c, float(conf[i]), float(lift[i]), int(count[i]), key))
        else:
            rule = MultiRule(frozenset(code_of[a] for a in ant), c, float(conf[i]),
                             float(lift[i]), int(count[i]), key)
            for a in rule.antecedents:
                multi.setdefault(a, []).append(rule)
    for lst in pair.values():
        lst.sort(key=lambda r: (-r.confidence, -r.lift, r.consequent))
    return pair, multi


def _load_substitutes(folder: Path, code_of: dict[str, int]) -> dict[int, frozenset[int]]:
    path = folder / "substitutes.parquet"
    if not path.exists():
        return {}
    table = load_parquet(path)
    out: dict[int, set[int]] = {}
    for a, b in zip(table["product_a"].astype(str), table["product_b"].astype(str), strict=True):
        if a in code_of and b in code_of:
            out.setdefault(code_of[a], set()).add(code_of[b])
            out.setdefault(code_of[b], set()).add(code_of[a])
    return {k: frozenset(v) for k, v in out.items()}


def _load_bundles(folder: Path, code_of: dict[str, int]) -> dict[int, list[Bundle]]:
    path = folder / "bundles.parquet"
    if not path.exists():
        return {}
    table = load_parquet(path)
    out: dict[int, list[Bundle]] = {}
    for products, count, gain, anchor, conf in zip(
            _lists(table["products"]), table["count"], table["expected_gain"], table["anchor"],
            table["anchor_confidence"], strict=True):
        if any(p not in code_of for p in products) or anchor not in code_of:
            continue
        bundle = Bundle(tuple(code_of[p] for p in products), int(count), float(gain),
                        code_of[anchor], float(conf))
        for p in bundle.products:
            out.setdefault(p, []).append(bundle)
    return out


def _load_customer_model(folder: Path, items: Vocabulary) -> CustomerModel | None:
    if not (folder / "als.npz").exists():
        return None
    als = load_npz(folder / "als.npz")
    purchases = load_npz(folder / "purchases.npz")
    customers = Vocabulary.load(folder / "customers.parquet")
    cycles = np.full(len(items), np.nan)
    cycle_path = folder / "repurchase.parquet"
    if cycle_path.exists():
        table = load_parquet(cycle_path)
        codes = items.lookup(table["product_id"].astype(str), on_unknown="mask")
        cycles[codes[codes >= 0]] = table["cycle_days"].to_numpy(float)[codes >= 0]
    item_factors = als["item_factors"].astype(np.float32)
    day = purchases["last_day"]
    return CustomerModel(
        user_factors=als["user_factors"], item_factors=item_factors,
        gram=(item_factors.T @ item_factors).astype(np.float64),
        regularization=float(als["regularization"]), alpha=float(als["alpha"]),
        customers={c: i for i, c in enumerate(customers.ids.tolist())},
        purchases_indptr=purchases["indptr"], purchases_indices=purchases["indices"],
        purchases_day=day, cycle_days=cycles, today=int(day.max()) if len(day) else 0)


def load_index(store_root: Path | str, version: str | None = None) -> ServingIndex:
    """Verify (checksums) and load an artifact version (default: current)."""
    store = ArtifactStore(store_root)
    manifest = store.verify(version)
    folder = store.path(manifest.version)
    items = Vocabulary.load(folder / "items.parquet")
    ids = items.ids.tolist()
    code_of = {pid: i for i, pid in enumerate(ids)}
    names: dict[str, str] = {}
    prices: dict[str, float] = {}
    margins: dict[str, float] = {}
    categories: dict[str, str] = {}
    available = frozenset(ids)
    catalog_path = folder / "catalog.parquet"
    if catalog_path.exists():
        catalog = pd.read_parquet(catalog_path)
        cat_ids = catalog["product_id"].astype(str)
        for column, target in (("name", names), ("category", categories)):
            if column in catalog:
                present = catalog[column].notna()
                target.update(zip(cat_ids[present], catalog.loc[present, column].astype(str),
                                  strict=True))
        for column, numbers in (("price", prices), ("margin", margins)):
            if column in catalog:
                present = catalog[column].notna()
                numbers.update(zip(cat_ids[present], catalog.loc[present, column].astype(float),
                                   strict=True))
        ok = np.ones(len(catalog), dtype=bool)
        for flag in ("in_stock", "is_active"):
            if flag in catalog:
                ok &= catalog[flag].to_numpy(dtype=bool)
        available = frozenset(cat_ids[ok]) | (frozenset(ids) - frozenset(cat_ids))
    popular_table = pd.read_parquet(folder / "popular.parquet")
    popular: dict[str, list[tuple[str, int]]] = {}
    for scope, group in popular_table.groupby("scope", sort=False):
        popular[str(scope)] = list(zip(group["product_id"].astype(str),
                                       group["orders"].astype(int), strict=True))
    pair, multi = _load_rules(folder, code_of)
    return ServingIndex(
        manifest=manifest, items=items, code_of=code_of, ids=ids, names=names, prices=prices,
        margins=margins, categories=categories, available=available, popular=popular,
        loaded_at=datetime.now(UTC),
        also_viewed=Neighbours.load(folder / "also_viewed") if (
            folder / "also_viewed").exists() else None,
        bought_together=Neighbours.load(folder / "bought_together") if (
            folder / "bought_together").exists() else None,
        pair_rules=pair, multi_rules=multi, substitutes=_load_substitutes(folder, code_of),
        bundles=_load_bundles(folder, code_of),
        customer_model=_load_customer_model(folder, items),
        segments=_load_segments(folder))


def _load_segments(folder: Path) -> dict[str, str]:
    path = folder / "analytics" / "customer_segments.parquet"
    if not path.exists():
        return {}
    table = load_parquet(path)
    return dict(zip(table["customer_id"].astype(str), table["segment"].astype(str),
                    strict=True))
