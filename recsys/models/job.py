"""The training job: also-viewed and bought-together neighbour tables, ALS factors for
personalised lists, each customer's purchase history and the repurchase cycles.

Writes into the artifact: ``also_viewed/`` (item-kNN over view sessions), ``bought_together/``
(EASE over orders, or item-kNN) and ``bought_together_knn/`` (co-purchase item-kNN, blended
into EASE's scores at request time): top-K neighbours of every product with scores and
co-occurrence support, as memory-mappable ``.npy`` files; ``ranking.json`` (the blend weights
the API applies); ``sessions.npz`` (the view sessions, for session-kNN); ``als.npz`` (user and item factors), ``customers.parquet`` (the customer
vocabulary), ``purchases.npz`` (customer x product CSR of purchases: last day and number of
orders; which products are durable), ``repurchase.parquet`` and ``viewed_bought.parquet``
(viewed A, bought B instead in the same session: the upsell evidence).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys import layout
from recsys.artifacts import save_npz, save_parquet
from recsys.matrices import (
    Confidence,
    Interactions,
    InteractionWeights,
    customer_item_matrix,
    order_item_matrix,
    view_sessions,
)
from recsys.models.ease import ease_neighbours
from recsys.models.implicit_adapter import ALS, ItemKNN
from recsys.models.neighbours import Neighbours, cooccurrence_at, top_k_neighbours
from recsys.models.purchases import PurchaseHistory, PurchaseLines
from recsys.models.session_knn import sessions_by_item
from recsys.models.settings import ModelsConfig
from recsys.models.upsell import top_bought_instead, viewed_bought_counts
from recsys.progress import bars_enabled, timed_step
from recsys.repurchase import COLUMNS as CYCLE_COLUMNS
from recsys.repurchase import cycles_of_sorted
from recsys.vocab import Vocabulary

__all__ = ["ModelsConfig", "run_models_job", "save_view_models", "knn_table",
           "CoPurchaseTables", "LocalCoPurchase", "Factorizer", "LocalALS"]

log = logging.getLogger(__name__)


def knn_table(rows_items: sp.csr_matrix, config: ModelsConfig) -> Neighbours:
    """The item-kNN neighbour table (``similarity``, ``knn_k``, ``top_k``) of a rows x
    products matrix (view sessions or orders), with co-occurrence support."""
    knn = ItemKNN(config.similarity, k=config.knn_k).fit(rows_items,
                                                          show_progress=bars_enabled())
    assert knn.similarity is not None
    ids, scores = top_k_neighbours(knn.similarity, config.top_k)
    return Neighbours(ids=ids, scores=scores, support=cooccurrence_at(rows_items, ids))


class CoPurchaseTables(Protocol):
    """Makes the co-purchase neighbour tables (item-kNN, EASE) of the orders."""

    ease_warnings: list[str]  # set by save_ease when the memory budget capped EASE

    def save_knn(self, folder: Path) -> None:
        """The item-kNN table (``similarity``, ``knn_k``, ``top_k``) into ``folder``."""

    def save_ease(self, folder: Path) -> int:
        """The EASE table into ``folder``; returns the products that got neighbours."""

    def close(self) -> None:
        """Let go of what the tables were made from (called once the last one is saved)."""


class LocalCoPurchase:
    """The co-purchase tables from the order x product matrix, in this process."""

    def __init__(self, baskets: sp.csr_matrix, config: ModelsConfig) -> None:
        self.baskets, self.config = baskets, config
        self._knn: Neighbours | None = None
        self.ease_warnings: list[str] = []  # the memory budget's cap, when it set one

    def save_knn(self, folder: Path) -> None:
        if self._knn is None:
            self._knn = knn_table(self.baskets, self.config)
        self._knn.save(folder)

    def save_ease(self, folder: Path) -> int:
        ease = ease_neighbours(self.baskets, lam=self.config.ease_lambda,
                               top_k=self.config.top_k, max_items=self.config.ease_max_items,
                               memory_mb=self.config.ease_memory_mb)
        self.ease_warnings = ease.warnings
        Neighbours(ids=ease.ids, scores=ease.scores,
                   support=cooccurrence_at(self.baskets, ease.ids)).save(folder)
        return int((ease.ids[:, 0] >= 0).sum())

    def close(self) -> None:
        del self.baskets  # the order x product matrix, freed before ALS (a later use fails)


class Factorizer(Protocol):
    """Fits ALS factors of a customers x products confidence matrix."""

    def fit(self, confidence: Confidence, config: ModelsConfig
            ) -> tuple[np.ndarray, np.ndarray]:
        """(user factors, item factors), float32, one row per customer / product code."""


class LocalALS:
    """ALS with ``implicit``, in this process."""

    def fit(self, confidence: Confidence, config: ModelsConfig
            ) -> tuple[np.ndarray, np.ndarray]:
        if not isinstance(confidence, Interactions):
            raise TypeError(f"LocalALS fits a matrix in this process, not {confidence!r}")
        als = ALS(factors=config.als_factors, regularization=config.als_regularization,
                  alpha=config.als_alpha, iterations=config.als_iterations, seed=config.seed)
        als.fit(confidence.matrix, show_progress=bars_enabled())
        assert als.user_factors is not None and als.item_factors is not None
        return als.user_factors, als.item_factors


def save_view_models(sessions: sp.csr_matrix, config: ModelsConfig, out: Path) -> None:
    """The also-viewed table and the sessions themselves (for V-SKNN) of a session x
    product matrix."""
    knn_table(sessions, config).save(layout.ALSO_VIEWED.at(out))
    save_npz(layout.SESSIONS.at(out), indptr=sessions.indptr, indices=sessions.indices,
             shape=np.asarray(sessions.shape, dtype=np.int64))
    item_ptr, item_sessions = sessions_by_item(sessions.indptr, sessions.indices,
                                               sessions.shape[1])
    save_npz(layout.SESSIONS_BY_ITEM.at(out), indptr=item_ptr, indices=item_sessions)


def run_models_job(orders: pd.DataFrame | None, events: pd.DataFrame | None, items: Vocabulary,
                   config: ModelsConfig, weights: InteractionWeights, out: Path,
                   catalog: pd.DataFrame | None = None,
                   co_purchase: CoPurchaseTables | None = None,
                   factorizer: Factorizer | None = None,
                   repurchase: Callable[[], pd.DataFrame] | None = None,
                   confidence: Callable[[], Confidence] | None = None,
                   purchases: Callable[[Vocabulary], PurchaseHistory] | None = None,
                   known_customers: bool | None = None,
                   sessions: Callable[[], sp.csr_matrix | None] | None = None,
                   bought_instead: Callable[[], tuple[np.ndarray, np.ndarray, np.ndarray]]
                   | None = None) -> dict[str, Any]:
    """Train every model over the artifact's product vocabulary ``items`` and write them
    (``catalog``: its ``durable`` column, where given, says which products last;
    ``co_purchase``, ``factorizer``, ``repurchase``, ``confidence``, ``purchases``: where the
    co-purchase tables, the ALS factors, the repurchase cycles, ALS's customer x product
    confidence matrix and the purchase history (given the customer vocabulary) come from,
    default this process from ``orders``; ``known_customers``: whether an order line names a
    customer, default from ``orders``; ``sessions``, ``bought_instead``: where the view
    sessions and viewed-then-bought's pair counts come from, default this process from
    ``events``). ``orders`` may be None when all of these are given, ``events`` when the last
    two are: the Spark engine reads the lines there."""
    metrics: dict[str, Any] = {}
    with timed_step(log, "models: view sessions and also-viewed"):
        views = sessions() if sessions is not None else view_sessions(events, items, weights)
        if views is not None:
            save_view_models(views, config, out)
            metrics["also_viewed_source"] = "view sessions"
            metrics["view_sessions"] = int(views.shape[0])
    with timed_step(log, "models: viewed-then-bought"):
        counts = bought_instead() if bought_instead is not None else viewed_bought_counts(
            events, items)
        instead = top_bought_instead(counts, items, config.top_k,
                                     catalog_categories(catalog, items))
    save_parquet(instead, layout.VIEWED_BOUGHT.at(out))
    metrics["viewed_bought_pairs"] = len(instead)
    tables = co_purchase or LocalCoPurchase(order_item_matrix(_lines(orders), items=items).matrix,
                                            config)
    if config.bought_together == "ease":
        with timed_step(log, "models: bought-together (EASE)"):
            metrics["ease_products"] = tables.save_ease(layout.BOUGHT_TOGETHER.at(out))
        if tables.ease_warnings:
            metrics["warnings"] = tables.ease_warnings
        with timed_step(log, "models: co-purchase item-kNN"):
            tables.save_knn(layout.BOUGHT_TOGETHER_KNN.at(out))
    else:
        with timed_step(log, "models: co-purchase item-kNN"):
            tables.save_knn(layout.BOUGHT_TOGETHER.at(out))
    layout.RANKING.at(out).write_text(json.dumps({
        "cart_knn_weight": config.cart_knn_weight if config.bought_together == "ease" else 0.0,
        "rule_weight": config.rule_weight,
        "also_viewed_support_weight": config.also_viewed_support_weight,
        "als_min_history": config.als_min_history,
        "also_viewed_counts": "sessions" if "also_viewed_source" in metrics else "orders"},
        indent=2))
    if "also_viewed_source" not in metrics:  # no view events: co-purchase stands in, says so
        tables.save_knn(layout.ALSO_VIEWED.at(out))
        metrics["also_viewed_source"] = "co-purchase (no view events)"
    tables.close()  # the baskets (Spark: the cached pair table) are not needed by ALS

    if known_customers is None:
        known_customers = bool("customer_id" in _lines(orders)
                               and _lines(orders)["customer_id"].notna().any())
    if known_customers:
        with timed_step(log, "models: ALS confidence matrix"):
            customers = confidence() if confidence is not None else customer_item_matrix(
                orders, events, weights=weights, items=items)
        with timed_step(log, f"models: ALS fit ({len(customers.rows):,} customers)"):
            user_factors, item_factors = (factorizer or LocalALS()).fit(customers, config)
        save_npz(layout.ALS.at(out), user_factors=user_factors, item_factors=item_factors,
                 regularization=np.float32(config.als_regularization),
                 alpha=np.float32(config.als_alpha))
        customers.rows.save(layout.CUSTOMERS.at(out))
        lines = (PurchaseLines.of(_lines(orders), customers.rows, items)
                 if purchases is None or repurchase is None else None)
        with timed_step(log, "models: purchase history"):
            if purchases is not None:
                history = purchases(customers.rows)
            else:
                assert lines is not None
                history = PurchaseHistory.of_sorted(lines)
            durable = _save_purchases(history, len(customers.rows), len(items),
                                      layout.PURCHASES.at(out), config,
                                      catalog_durable(catalog, items))
        metrics["durable_products"] = durable
        metrics["als_customers"] = len(customers.rows)
        with timed_step(log, "models: repurchase cycles"):
            if repurchase is not None:
                cycles = repurchase()
            else:
                assert lines is not None
                dated = lines.dated
                cycles = cycles_of_sorted(
                    lines.customer[dated], lines.product[dated], lines.day[dated], items.ids,
                    min_intervals=config.repurchase_min_intervals,
                    min_repeat_share=config.repurchase_min_share)
    else:
        metrics["als_customers"] = 0
        log.warning("orders have no customer_id: personalised lists fall back to best sellers")
        cycles = pd.DataFrame(columns=CYCLE_COLUMNS)
    save_parquet(cycles, layout.REPURCHASE.at(out))
    metrics["repurchase_products"] = len(cycles)
    metrics["products"] = len(items)
    return metrics


def _lines(orders: pd.DataFrame | None) -> pd.DataFrame:
    """The order lines, for the parts made in this process."""
    if orders is None:
        raise TypeError("run_models_job: without the order lines, give co_purchase, "
                        "known_customers, confidence, purchases and repurchase")
    return orders


def catalog_categories(catalog: pd.DataFrame | None, items: Vocabulary) -> np.ndarray | None:
    """Per product code a category number (-1: none or not listed); None without a
    ``category`` column."""
    if catalog is None or "category" not in catalog:
        return None
    codes = items.lookup(catalog["product_id"].astype(str), on_unknown="mask")
    number = pd.factorize(catalog["category"].astype("string"), use_na_sentinel=True)[0]
    out = np.full(len(items), -1, dtype=np.int64)
    keep = codes >= 0
    out[codes[keep]] = number[keep]
    return out


def catalog_durable(catalog: pd.DataFrame | None, items: Vocabulary) -> np.ndarray:
    """Per product code: 1 durable, 0 not, -1 unknown (no ``durable`` column, an empty
    cell, or a product the catalog does not list)."""
    known = np.full(len(items), -1, dtype=np.int8)
    if catalog is None or "durable" not in catalog:
        return known
    given = catalog[catalog["durable"].notna()]
    codes = items.lookup(given["product_id"], on_unknown="mask")
    keep = codes >= 0
    known[codes[keep]] = given["durable"].to_numpy(dtype=bool)[keep]
    return known


def durable_products(buyers: np.ndarray, repeaters: np.ndarray, known: np.ndarray,
                     config: ModelsConfig) -> np.ndarray:
    """Per product: the catalog's flag where ``known`` (1 / 0) gives one; else, when
    ``durable_min_buyers`` > 0, at least that many buyers and fewer than
    ``durable_max_repeat_share`` of them bought it in two or more orders (``repeaters``)."""
    inferred = (config.durable_min_buyers > 0) & (buyers >= config.durable_min_buyers) & (
        repeaters < config.durable_max_repeat_share * buyers)
    return np.where(known >= 0, known == 1, inferred)


def _save_purchases(history: PurchaseHistory, n_customers: int, n_items: int, path: Path,
                    config: ModelsConfig, known_durable: np.ndarray) -> int:
    """customer x product CSR of purchases (``last_day``: days since epoch + 1 of the last
    purchase, ``orders``: how many orders held it) and ``durable`` per product (see
    ``durable_products``). Returns the number of durable products."""
    pair_rows, pair_cols, n_orders = history.customer, history.product, history.orders
    shape = (n_customers, n_items)
    day_matrix = sp.csr_matrix((history.last_day, (pair_rows, pair_cols)), shape=shape)
    count_matrix = sp.csr_matrix((n_orders, (pair_rows, pair_cols)), shape=shape)
    buyers = np.bincount(pair_cols, minlength=n_items)
    repeaters = np.bincount(pair_cols, weights=n_orders >= 2, minlength=n_items)
    durable = durable_products(buyers, repeaters, known_durable, config)
    save_npz(path, indptr=day_matrix.indptr, indices=day_matrix.indices,
             last_day=day_matrix.data, orders=count_matrix.data.astype(np.int32),
             durable=durable, shape=np.array(shape))
    return int(durable.sum())
