"""The serving index: a verified artifact version loaded into plain Python/numpy lookups.

No FastAPI here: the API routes only look things up in a ``ServingIndex``. Large neighbour
tables are memory-mapped read-only, so server workers share one copy. Every part but the
catalog vocabulary and the best sellers is optional: a missing file turns its endpoint into
a fallback, not an error.
"""

from __future__ import annotations

import functools
import itertools
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from recsys import layout
from recsys.artifacts import ArtifactStore, Manifest, load_npz, load_parquet
from recsys.errors import ArtifactError
from recsys.models.neighbours import Neighbours
from recsys.popularity import GLOBAL_SCOPE
from recsys.vocab import Vocabulary

__all__ = ["ServingIndex", "RuleTable", "Bundle", "Ranking", "load_index", "rule_key"]


def rule_key(antecedents: tuple[str, ...] | list[str], consequent: str) -> str:
    """The stable id of a rule across retraining: sorted antecedent ids, '->', consequent."""
    return "+".join(sorted(antecedents)) + "->" + consequent


@dataclass(frozen=True)
class RuleTable:
    """The mined rules with one consequent, as arrays grouped by antecedent set (best
    confidence first within a set): millions of rules, no Python object per rule.

    ``groups`` maps the antecedent codes (sorted int32, as bytes) to a slice of the arrays;
    a cart finds its rules by looking up its own subsets (or, for a large cart, by testing
    every antecedent set of a length at once), never by walking the rules of each item.
    """

    groups: dict[bytes, tuple[int, int]]
    antecedents: dict[int, np.ndarray]  # length -> (n_sets, length) codes of every set
    consequent: np.ndarray  # int32
    confidence: np.ndarray  # float32
    lift: np.ndarray
    count: np.ndarray  # int64

    @classmethod
    def empty(cls) -> RuleTable:
        return cls({}, {}, np.zeros(0, np.int32), np.zeros(0, np.float32),
                   np.zeros(0, np.float32), np.zeros(0, np.int64))

    def __len__(self) -> int:
        return len(self.consequent)

    def sets_in(self, cart: np.ndarray, combinations_limit: int = 2_000) -> list[np.ndarray]:
        """Every stored antecedent set that the sorted, distinct ``cart`` codes hold."""
        out = []
        for length, sets in self.antecedents.items():
            if len(cart) < length:
                continue
            if math.comb(len(cart), length) <= combinations_limit:
                for combo in itertools.combinations(cart.tolist(), length):
                    key = np.asarray(combo, dtype=np.int32)
                    if key.tobytes() in self.groups:
                        out.append(key)
            else:
                held = np.isin(sets, cart).all(axis=1)
                out += list(sets[held])
        return out

    def rules_of(self, antecedents: np.ndarray) -> tuple[int, int]:
        """The slice of the arrays holding the rules of this antecedent set."""
        return self.groups[np.ascontiguousarray(antecedents, dtype=np.int32).tobytes()]


@dataclass(frozen=True)
class Bundle:
    products: tuple[int, ...]
    count: int
    expected_gain: float
    anchor: int
    anchor_confidence: float


@dataclass(frozen=True)
class Ranking:
    """Blend weights the models job chose for this artifact (``ranking.json``)."""

    cart_knn_weight: float = 0.2
    rule_weight: float = 0.1
    also_viewed_support_weight: float = 3.0
    als_min_history: int = 10


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
    rules: RuleTable = field(default_factory=RuleTable.empty)
    substitutes: dict[int, frozenset[int]] = field(default_factory=dict)
    bundles: dict[int, list[Bundle]] = field(default_factory=dict)  # by each member
    customer_model: CustomerModel | None = None
    segments: dict[str, str] = field(default_factory=dict)  # customer -> RFM segment
    # viewed product code -> (codes bought instead in the same session, sessions), best first
    bought_instead: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    discount_only: frozenset[str] = frozenset()  # customers who buy only on discount

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
    def unavailable_mask(self) -> np.ndarray:
        """Out-of-stock or inactive, as a boolean array by product code (built once)."""
        return np.fromiter((pid not in self.available for pid in self.ids), dtype=bool,
                           count=len(self.ids))

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


def _list_codes(column: pa.ChunkedArray, items: Vocabulary) -> tuple[np.ndarray, np.ndarray]:
    """A list-of-ids column as flat item codes (-1 = unknown) and row offsets. Dictionary
    encoded ids (as ``save_parquet`` writes them) are looked up once per distinct id."""
    codes, offsets, base = [], [np.zeros(1, np.int64)], 0
    for chunk in column.chunks:
        chunk_offsets = np.asarray(chunk.offsets, dtype=np.int64)
        values = chunk.values.slice(int(chunk_offsets[0]),
                                    int(chunk_offsets[-1] - chunk_offsets[0]))
        if pa.types.is_dictionary(values.type):
            distinct = items.lookup(pd.Series(values.dictionary.to_pylist(), dtype="string"),
                                    on_unknown="mask")
            codes.append(distinct[np.asarray(values.indices, dtype=np.int64)])
        else:
            codes.append(items.lookup(pd.Series(values.to_pylist(), dtype="string"),
                                      on_unknown="mask"))
        offsets.append(chunk_offsets[1:] - chunk_offsets[0] + base)
        base += int(chunk_offsets[-1] - chunk_offsets[0])
    flat = np.concatenate(codes) if codes else np.zeros(0, np.int64)
    return flat.astype(np.int64), np.concatenate(offsets)


def _load_rules(folder: Path, items: Vocabulary) -> RuleTable:
    path = layout.RULES.at(folder)
    if not path.exists():
        return RuleTable.empty()
    try:
        rules = pq.read_table(path, columns=["antecedents", "consequents", "confidence", "lift",
                                             "count"])
    except (OSError, pa.ArrowInvalid) as exc:
        raise ArtifactError(f"table file {path} is not readable Parquet: {exc}") from exc
    ant_codes, offsets = _list_codes(rules.column("antecedents"), items)
    con_flat, con_offsets = _list_codes(rules.column("consequents"), items)
    single = np.diff(con_offsets) == 1
    con_codes = np.where(single, con_flat[np.minimum(con_offsets[:-1], len(con_flat) - 1)], -1)
    lengths = np.diff(offsets)
    known = np.minimum.reduceat(ant_codes, offsets[:-1]) >= 0 if len(lengths) else np.zeros(
        0, bool)
    known &= con_codes >= 0
    starts = offsets[:-1]
    parts: list[tuple[np.ndarray, np.ndarray]] = []  # (rule rows, sorted antecedent codes)
    for length in sorted(set(lengths[known].tolist())):
        rows = np.flatnonzero(known & (lengths == length))
        sets = np.sort(ant_codes[starts[rows][:, None] + np.arange(length)], axis=1)
        parts.append((rows, sets.astype(np.int32)))
    return rule_table(parts, con_codes, rules.column("confidence").to_numpy().astype(np.float32),
                      rules.column("lift").to_numpy().astype(np.float32),
                      rules.column("count").to_numpy().astype(np.int64))


def rule_table(parts: list[tuple[np.ndarray, np.ndarray]], consequent: np.ndarray,
               conf: np.ndarray, lift: np.ndarray, count: np.ndarray) -> RuleTable:
    """Group rules by antecedent set (``parts``: rule rows and their sorted antecedent codes,
    one part per antecedent length); within a set, by confidence (best first)."""
    if not parts:
        return RuleTable.empty()
    groups: dict[bytes, tuple[int, int]] = {}
    antecedents: dict[int, np.ndarray] = {}
    order_all, base = [], 0
    for rows, sets in parts:
        keys = np.ascontiguousarray(sets).view(np.dtype((np.void, sets.shape[1] * 4))).ravel()
        unique, inverse = np.unique(keys, return_inverse=True)
        order = np.lexsort((-conf[rows], inverse))
        bounds = np.searchsorted(inverse[order], np.arange(len(unique) + 1))
        groups.update(zip((u.tobytes() for u in unique),
                          zip((base + bounds[:-1]).tolist(), (base + bounds[1:]).tolist(),
                              strict=True), strict=True))
        antecedents[sets.shape[1]] = sets[order][bounds[:-1]]
        order_all.append(rows[order])
        base += len(rows)
    rows = np.concatenate(order_all)
    return RuleTable(groups, antecedents, consequent[rows].astype(np.int32), conf[rows],
                     lift[rows], count[rows])


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
    als = load_npz(layout.ALS.at(folder))
    purchases = load_npz(layout.PURCHASES.at(folder))
    customers = Vocabulary.load(layout.CUSTOMERS.at(folder))
    cycles = np.full(len(items), np.nan)
    cycle_path = layout.REPURCHASE.at(folder)
    if cycle_path.exists():
        table = load_parquet(cycle_path)
        codes = items.lookup(table["product_id"].astype(str), on_unknown="mask")
        cycles[codes[codes >= 0]] = table["cycle_days"].to_numpy(float)[codes >= 0]
    item_factors = als["item_factors"].astype(np.float32)
    day = purchases["last_day"]
    indices = purchases["indices"]
    popularity = np.bincount(indices, weights=purchases.get("orders"), minlength=len(items))
    return CustomerModel(
        user_factors=als["user_factors"], item_factors=item_factors,
        gram=(item_factors.T @ item_factors).astype(np.float64),
        regularization=float(als["regularization"]), alpha=float(als["alpha"]),
        customers={c: i for i, c in enumerate(customers.ids.tolist())},
        purchases_indptr=purchases["indptr"], purchases_indices=indices, purchases_day=day,
        purchases_orders=purchases.get("orders", np.ones_like(day)),
        durable=purchases.get("durable", np.zeros(len(items), bool)),
        popularity=popularity, by_popularity=np.argsort(-popularity, kind="stable"),
        cycle_days=cycles,
        today=int(day.max()) if len(day) else 0)


def load_index(store_root: Path | str, version: str | None = None) -> ServingIndex:
    """Verify (checksums) and load an artifact version (default: current)."""
    store = ArtifactStore(store_root)
    manifest = store.verify(version)
    folder = store.path(manifest.version)
    items = Vocabulary.load(layout.ITEMS.at(folder))
    ids = items.ids.tolist()
    code_of = {pid: i for i, pid in enumerate(ids)}
    names: dict[str, str] = {}
    prices: dict[str, float] = {}
    margins: dict[str, float] = {}
    categories: dict[str, str] = {}
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
    rules = _load_rules(folder, items)
    return ServingIndex(
        manifest=manifest, items=items, code_of=code_of, ids=ids, names=names, prices=prices,
        margins=margins, categories=categories, available=available, popular=popular,
        loaded_at=datetime.now(UTC),
        also_viewed=_table(layout.ALSO_VIEWED.at(folder)),
        bought_together=_table(layout.BOUGHT_TOGETHER.at(folder)),
        bought_together_knn=_table(layout.BOUGHT_TOGETHER_KNN.at(folder)),
        ranking=Ranking(**json.loads(layout.RANKING.at(folder).read_text()))
        if layout.RANKING.at(folder).exists() else Ranking(),
        rules=rules, substitutes=_load_substitutes(folder, code_of),
        bundles=_load_bundles(folder, code_of),
        customer_model=_load_customer_model(folder, items),
        segments=_load_segments(folder), bought_instead=_load_bought_instead(folder, items),
        discount_only=_load_discount_only(folder))


def _table(folder: Path) -> Neighbours | None:
    return Neighbours.load(folder) if folder.exists() else None


def _load_segments(folder: Path) -> dict[str, str]:
    path = layout.CUSTOMER_SEGMENTS.at(folder)
    if not path.exists():
        return {}
    table = load_parquet(path)
    return dict(zip(table["customer_id"].astype(str), table["segment"].astype(str),
                    strict=True))


def _load_discount_only(folder: Path) -> frozenset[str]:
    path = layout.DISCOUNT_CUSTOMERS.at(folder)
    if not path.exists():
        return frozenset()
    table = load_parquet(path)
    return frozenset(table.loc[table["discount_only"].astype(bool), "customer_id"].astype(str))


def _load_bought_instead(folder: Path,
                         items: Vocabulary) -> dict[int, tuple[np.ndarray, np.ndarray]]:
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
    starts = np.flatnonzero(np.r_[True, a[1:] != a[:-1]])
    ends = np.r_[starts[1:], len(a)]
    return {int(a[lo]): (b[lo:hi], n[lo:hi]) for lo, hi in zip(starts.tolist(), ends.tolist(),
                                                                strict=True)}
