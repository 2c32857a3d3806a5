"""The serving index: a verified artifact version loaded into plain Python/numpy lookups.

No FastAPI here: the API routes only look things up in a ``ServingIndex``. Large arrays
(neighbour tables, ALS factors, purchases, V-SKNN sessions) are memory-mapped read-only, so
server workers share one copy, and per-customer or per-rule lookups are compact arrays, not
dicts of Python objects (``recsys.serving.lookups``, ``IdLookup``). Every part but the
catalog vocabulary and the best sellers is optional: a missing file turns its endpoint into
a fallback, not an error.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Container, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from recsys import layout
from recsys.artifacts import ArtifactStore, Manifest, load_npz, load_parquet
from recsys.errors import ArtifactError
from recsys.models.neighbours import Neighbours
from recsys.models.session_knn import SessionKNN, load_sessions
from recsys.models.settings import (
    DEFAULT_COLD_START_NEIGHBOURS,
    DEFAULT_COLD_START_PRIOR,
    DEFAULT_COLD_START_PRIOR_SCOPE,
    PriorScope,
)
from recsys.models.upsell_prior import UpsellPrior
from recsys.popularity import GLOBAL_SCOPE
from recsys.serving.content import ContentIndex, load_content
from recsys.serving.lookups import Grouped, Labels
from recsys.serving.served_rules import ServedRules, load_rules
from recsys.serving.session_weights import SessionWeights, load_session_weights
from recsys.vocab import IdLookup, Vocabulary

__all__ = ["ServingIndex", "Bundle", "Ranking", "load_index"]


@dataclass(frozen=True)
class Bundle:
    products: tuple[int, ...]
    count: int
    expected_gain: float
    anchor: int
    anchor_confidence: float


@dataclass(frozen=True)
class OrderCounts:
    """Orders holding each product (the rules job's frequent single products; the others,
    under its ``min_count``, count as ``min_count``) and all orders: what a co-purchase count
    is compared with (``expected = n(a) x n(b) / orders``)."""

    per_product: np.ndarray  # by product code
    total: int


@dataclass(frozen=True)
class Ranking:
    """Blend weights the models job chose for this artifact (``ranking.json``)."""

    cart_knn_weight: float = 0.2
    rule_weight: float = 0.1
    also_viewed_support_weight: float = 3.0
    cold_start_neighbours: int = DEFAULT_COLD_START_NEIGHBOURS  # cold_start.json's, if any
    cold_start_prior: float = DEFAULT_COLD_START_PRIOR
    cold_start_prior_scope: PriorScope = DEFAULT_COLD_START_PRIOR_SCOPE
    cold_start_chosen_by: str = "default"  # or "validation" (the cold_start job), "config"
    als_min_history: int = 10
    # what also_viewed/'s support counted: view "sessions", or "orders" (no view events)
    also_viewed_counts: Literal["sessions", "orders"] = "sessions"


@dataclass
class CustomerModel:
    """ALS factors, customers' purchases (last day bought) and repurchase cycles; the
    factors and purchases are memory-mapped from the artifact (shared by server workers)."""

    user_factors: np.ndarray
    item_factors: np.ndarray
    gram: np.ndarray  # item_factors.T @ item_factors, for recalculating a user
    regularization: float
    alpha: float
    customers: Mapping[str, int]  # customer id -> row of user_factors and purchases
    purchases_indptr: np.ndarray
    purchases_indices: np.ndarray
    purchases_day: np.ndarray
    purchases_orders: np.ndarray  # how many of the customer's orders held the product
    durable: np.ndarray  # per product code: bought again by (almost) nobody
    popularity: np.ndarray  # per product code: customers' orders that held it
    by_popularity: np.ndarray  # product codes, most bought first (ties: lower code)
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
    bought_together_knn: Neighbours | None = None  # blended into bought_together's scores
    ranking: Ranking = field(default_factory=Ranking)
    rules: ServedRules = field(default_factory=ServedRules.empty)
    substitutes: dict[int, frozenset[int]] = field(default_factory=dict)
    bundles: dict[int, list[Bundle]] = field(default_factory=dict)  # by each member
    customer_model: CustomerModel | None = None
    sessions: SessionKNN | None = None  # the training view sessions, for V-SKNN
    segments: Mapping[str, str] = field(default_factory=dict)  # customer -> RFM segment
    orders: OrderCounts | None = None  # for the significance of co-purchase counts
    content: ContentIndex | None = None  # catalogue similarity (no catalogue: None)
    # viewed product code -> (codes bought instead in the same session, sessions), best first
    bought_instead: Mapping[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    discount_only: Container[str] = frozenset()  # customers who buy only on discount
    brands: dict[str, str] = field(default_factory=dict)  # non-empty brands (for upsell)
    upsell_prior: UpsellPrior = field(default_factory=UpsellPrior)
    session_weights: SessionWeights = field(default_factory=SessionWeights)  # the chosen

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

    @functools.cached_property
    def category_paths(self) -> frozenset[str]:
        """Every level of every product's category path ("Home", "Home > Kitchen", ...) and
        every best-seller scope: the values a ``category`` parameter may take."""
        paths = {scope for scope in self.popular if scope != GLOBAL_SCOPE}
        for category in set(self.categories.values()):
            parts = category.split(" > ")
            paths.update(" > ".join(parts[:d]) for d in range(1, len(parts) + 1))
        return frozenset(paths)

    @functools.cached_property
    def unavailable_mask(self) -> np.ndarray:
        """Out-of-stock or inactive, as a boolean array by product code (built once)."""
        return np.fromiter((pid not in self.available for pid in self.ids), dtype=bool,
                           count=len(self.ids))

    @functools.cached_property
    def id_array(self) -> np.ndarray:
        """The product ids as an object array by code (built once): an array of codes names
        its products in one indexing."""
        out = np.empty(len(self.ids), dtype=object)
        out[:] = self.ids
        return out

    @functools.cached_property
    def by_category(self) -> dict[str, list[str]]:
        """The products of each category (exact path), built once."""
        out: dict[str, list[str]] = {}
        for product_id, category in self.categories.items():
            out.setdefault(category, []).append(product_id)
        return out

    def codes(self, product_ids: Iterable[str]) -> list[int]:
        """The codes of the ids the index knows (others are left out)."""
        return [self.code_of[p] for p in product_ids if p in self.code_of]

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


def _load_order_counts(folder: Path, code_of: dict[str, int]) -> OrderCounts | None:
    itemsets, report = layout.ITEMSETS.at(folder), layout.RULES_REPORT.at(folder)
    if not (itemsets.exists() and report.exists()):
        return None
    figures = json.loads(report.read_text())
    try:  # the single products only: the whole table can hold millions of itemsets
        singles = pq.read_table(itemsets, columns=["items", "count"],
                                filters=[("length", "=", 1)])
    except (OSError, pa.ArrowInvalid) as exc:
        raise ArtifactError(f"table file {itemsets} is not readable Parquet: {exc}") from exc
    counts = np.full(len(code_of), max(int(figures["min_count"]), 1), dtype=np.float64)
    for items, count in zip(singles.column("items").to_pylist(),
                            singles.column("count").to_pylist(), strict=True):
        code = code_of.get(str(items[0]))
        if code is not None:
            counts[code] = int(count)
    return OrderCounts(per_product=counts, total=max(int(figures["n_orders"]), 1))


def _load_substitutes(folder: Path, code_of: dict[str, int]) -> dict[int, frozenset[int]]:
    path = layout.SUBSTITUTES.at(folder)
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
    path = layout.BUNDLES.at(folder)
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
    if not layout.ALS.at(folder).exists():
        return None
    als = load_npz(layout.ALS.at(folder), mmap=True)
    purchases = load_npz(layout.PURCHASES.at(folder), mmap=True)
    customers = Vocabulary.load(layout.CUSTOMERS.at(folder))
    cycles = np.full(len(items), np.nan)
    cycle_path = layout.REPURCHASE.at(folder)
    if cycle_path.exists():
        table = load_parquet(cycle_path)
        codes = items.lookup(table["product_id"].astype(str), on_unknown="mask")
        cycles[codes[codes >= 0]] = table["cycle_days"].to_numpy(float)[codes >= 0]
    item_factors = als["item_factors"].astype(np.float32, copy=False)
    day = purchases["last_day"]
    indices = purchases["indices"]
    popularity = np.bincount(indices, weights=purchases.get("orders"), minlength=len(items))
    return CustomerModel(
        user_factors=als["user_factors"], item_factors=item_factors,
        gram=(item_factors.T @ item_factors).astype(np.float64),
        regularization=float(als["regularization"]), alpha=float(als["alpha"]),
        customers=IdLookup(customers.ids),
        purchases_indptr=purchases["indptr"], purchases_indices=indices, purchases_day=day,
        purchases_orders=purchases.get("orders", np.ones_like(day)),
        durable=purchases.get("durable", np.zeros(len(items), bool)),
        popularity=popularity, by_popularity=np.argsort(-popularity, kind="stable"),
        cycle_days=cycles,
        today=int(day.max()) if len(day) else 0)


def load_index(store_root: Path | str, version: str | None = None, *,
               check: Callable[[Path], None] | None = None) -> ServingIndex:
    """Verify (checksums) and load an artifact version (default: current); ``check`` (the
    server's structural checks) sees the verified folder before anything is read."""
    store = ArtifactStore(store_root)
    manifest = store.verify(version)
    folder = store.path(manifest.version)
    if check is not None:
        check(folder)
    items = Vocabulary.load(layout.ITEMS.at(folder))
    ids = items.ids.tolist()
    code_of = {pid: i for i, pid in enumerate(ids)}
    names: dict[str, str] = {}
    prices: dict[str, float] = {}
    margins: dict[str, float] = {}
    categories: dict[str, str] = {}
    brands: dict[str, str] = {}
    available = frozenset(ids)
    catalog_path = layout.CATALOG.at(folder)
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
        brands = _brands(catalog, cat_ids)
        ok = np.ones(len(catalog), dtype=bool)
        for flag in ("in_stock", "is_active"):
            if flag in catalog:
                ok &= catalog[flag].to_numpy(dtype=bool)
        available = frozenset(cat_ids[ok]) | (frozenset(ids) - frozenset(cat_ids))
    popular_table = pd.read_parquet(layout.POPULAR.at(folder))
    popular: dict[str, list[tuple[str, int]]] = {}
    for scope, group in popular_table.groupby("scope", sort=False):
        popular[str(scope)] = list(zip(group["product_id"].astype(str),
                                       group["orders"].astype(int), strict=True))
    rules = load_rules(folder, items)
    return ServingIndex(
        manifest=manifest, items=items, code_of=code_of, ids=ids, names=names, prices=prices,
        margins=margins, categories=categories, available=available, popular=popular,
        loaded_at=datetime.now(UTC),
        also_viewed=_table(layout.ALSO_VIEWED.at(folder)),
        bought_together=_table(layout.BOUGHT_TOGETHER.at(folder)),
        bought_together_knn=_table(layout.BOUGHT_TOGETHER_KNN.at(folder)),
        ranking=_load_ranking(folder),
        rules=rules, substitutes=_load_substitutes(folder, code_of),
        bundles=_load_bundles(folder, code_of),
        customer_model=_load_customer_model(folder, items),
        sessions=load_sessions(layout.SESSIONS.at(folder), layout.SESSIONS_BY_ITEM.at(folder)),
        segments=_load_segments(folder),
        orders=_load_order_counts(folder, code_of), content=load_content(folder, len(ids)),
        bought_instead=_load_bought_instead(folder, items),
        discount_only=_load_discount_only(folder), brands=brands,
        upsell_prior=UpsellPrior.load(layout.UPSELL_PRIOR.at(folder))
        if layout.UPSELL_PRIOR.at(folder).exists() else UpsellPrior(),
        session_weights=load_session_weights(folder))


def _load_ranking(folder: Path) -> Ranking:
    """``ranking.json``'s weights with ``cold_start.json``'s cold-start settings, where present
    (a version from before the prior's scope was chosen has its category's)."""
    ranking = Ranking(**json.loads(layout.RANKING.at(folder).read_text())) \
        if layout.RANKING.at(folder).exists() else Ranking()
    if layout.COLD_START.at(folder).exists():
        chosen = json.loads(layout.COLD_START.at(folder).read_text())
        ranking = replace(ranking, cold_start_neighbours=int(chosen["cold_start_neighbours"]),
                          cold_start_prior=float(chosen["cold_start_prior"]),
                          cold_start_prior_scope=chosen.get("cold_start_prior_scope",
                                                            DEFAULT_COLD_START_PRIOR_SCOPE),
                          cold_start_chosen_by=str(chosen["chosen_by"]))
    return ranking


def _brands(catalog: pd.DataFrame, cat_ids: pd.Series) -> dict[str, str]:
    """Each product's non-empty brand, stripped; one string object per brand."""
    if "brand" not in catalog:
        return {}
    brand = catalog["brand"].astype("string").str.strip()
    present = (brand.str.len() > 0).fillna(False).to_numpy(bool)
    codes = pd.Categorical(brand[present])
    labels = [str(b) for b in codes.categories]
    return {pid: labels[c] for pid, c in zip(cat_ids[present], codes.codes.tolist(),
                                             strict=True)}


def _table(folder: Path) -> Neighbours | None:
    return Neighbours.load(folder) if folder.exists() else None


def _load_segments(folder: Path) -> Mapping[str, str]:
    path = layout.CUSTOMER_SEGMENTS.at(folder)
    if not path.exists():
        return {}
    table = pq.read_table(path, columns=["customer_id", "segment"]).to_pandas()
    table = table[table["segment"].notna() & table["customer_id"].notna()]
    table = table.drop_duplicates("customer_id", keep="last")
    return Labels(table["customer_id"], table["segment"])


def _load_discount_only(folder: Path) -> Container[str]:
    path = layout.DISCOUNT_CUSTOMERS.at(folder)
    if not path.exists():
        return frozenset()
    table = pq.read_table(path, columns=["customer_id", "discount_only"],
                          filters=[("discount_only", "=", True)])
    return IdLookup(table.column("customer_id").to_pandas().astype("string").dropna().unique())


def _load_bought_instead(folder: Path,
                         items: Vocabulary) -> Mapping[int, tuple[np.ndarray, np.ndarray]]:
    path = layout.VIEWED_BOUGHT.at(folder)
    if not path.exists():
        return {}
    table = load_parquet(path)
    a = items.lookup(table["product_a"].astype(str), on_unknown="mask")
    b = items.lookup(table["product_b"].astype(str), on_unknown="mask")
    n = table["sessions"].to_numpy(np.int64)
    keep = (a >= 0) & (b >= 0)
    a, b, n = a[keep], b[keep], n[keep]
    if not len(a):
        return {}
    order = np.lexsort((-n, a))  # stable within a product: the job's order
    a, b, n = a[order], b[order], n[order]
    return Grouped.from_pairs(a, b, n, len(items))
