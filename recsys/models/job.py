"""The training job: also-viewed and bought-together neighbour tables, ALS factors for
personalised lists, each customer's purchase history and the repurchase cycles.

Writes into the artifact: ``also_viewed/`` (item-kNN over view sessions), ``bought_together/``
(EASE over orders, or item-kNN) and ``bought_together_knn/`` (co-purchase item-kNN, blended
into EASE's scores at request time): top-K neighbours of every product with scores and
co-occurrence support, as memory-mappable ``.npy`` files; ``ranking.json`` (the blend weights
the API applies); ``als.npz`` (user and item factors), ``customers.parquet`` (the customer
vocabulary), ``purchases.npz`` (customer x product CSR of purchases: last day and number of
orders; which products are durable) and ``repurchase.parquet``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.artifacts import save_npz, save_parquet
from recsys.matrices import (
    InteractionWeights,
    customer_item_matrix,
    order_item_matrix,
    session_item_matrix,
)
from recsys.models.ease import ease_neighbours
from recsys.models.implicit_adapter import ALS, ItemKNN
from recsys.models.neighbours import Neighbours, cooccurrence_at, top_k_neighbours
from recsys.models.settings import ModelsConfig
from recsys.progress import progress_enabled
from recsys.repurchase import repurchase_cycles
from recsys.vocab import Vocabulary

__all__ = ["ModelsConfig", "run_models_job"]

log = logging.getLogger(__name__)


def _neighbours(rows_items: sp.csr_matrix, config: ModelsConfig) -> Neighbours:
    knn = ItemKNN(config.similarity, k=config.knn_k).fit(rows_items,
                                                          show_progress=progress_enabled())
    assert knn.similarity is not None
    ids, scores = top_k_neighbours(knn.similarity, config.top_k)
    return Neighbours(ids=ids, scores=scores, support=cooccurrence_at(rows_items, ids))


def run_models_job(orders: pd.DataFrame, events: pd.DataFrame | None, items: Vocabulary,
                   config: ModelsConfig, weights: InteractionWeights, out: Path,
                   catalog: pd.DataFrame | None = None) -> dict[str, Any]:
    """Train every model over the artifact's product vocabulary ``items`` and write them
    (``catalog``: its ``durable`` column, where given, says which products last)."""
    metrics: dict[str, Any] = {}
    baskets = order_item_matrix(orders, items=items).matrix
    views = None if events is None else events[events["event_type"] == "view"]
    if views is not None and len(views):
        sessions = session_item_matrix(views, weights=weights, items=items).matrix
        _neighbours(sessions, config).save(out / "also_viewed")
        metrics["also_viewed_source"] = "view sessions"
        metrics["view_sessions"] = int(sessions.shape[0])
    co_purchase = _neighbours(baskets, config)
    if config.bought_together == "ease":
        ids, scores = ease_neighbours(baskets, lam=config.ease_lambda, top_k=config.top_k,
                                      max_items=config.ease_max_items)
        Neighbours(ids=ids, scores=scores, support=cooccurrence_at(baskets, ids)).save(
            out / "bought_together")
        co_purchase.save(out / "bought_together_knn")
        metrics["ease_products"] = int((ids[:, 0] >= 0).sum())
    else:
        co_purchase.save(out / "bought_together")
    (out / "ranking.json").write_text(json.dumps({
        "cart_knn_weight": config.cart_knn_weight if config.bought_together == "ease" else 0.0,
        "rule_weight": config.rule_weight,
        "also_viewed_support_weight": config.also_viewed_support_weight,
        "als_min_history": config.als_min_history}, indent=2))
    if "also_viewed_source" not in metrics:  # no view events: co-purchase stands in, says so
        co_purchase.save(out / "also_viewed")
        metrics["also_viewed_source"] = "co-purchase (no view events)"

    if "customer_id" in orders and orders["customer_id"].notna().any():
        customers = customer_item_matrix(orders, events, weights=weights, items=items)
        als = ALS(factors=config.als_factors, regularization=config.als_regularization,
                  alpha=config.als_alpha, iterations=config.als_iterations, seed=config.seed)
        als.fit(customers.matrix, show_progress=progress_enabled())
        assert als.user_factors is not None and als.item_factors is not None
        save_npz(out / "als.npz", user_factors=als.user_factors, item_factors=als.item_factors,
                 regularization=np.float32(config.als_regularization),
                 alpha=np.float32(config.als_alpha))
        customers.rows.save(out / "customers.parquet")
        durable = _save_purchases(orders, customers.rows, items, out / "purchases.npz", config,
                                  catalog_durable(catalog, items))
        metrics["durable_products"] = durable
        metrics["als_customers"] = len(customers.rows)
    else:
        metrics["als_customers"] = 0
        log.warning("orders have no customer_id: personalised lists fall back to best sellers")
    cycles = repurchase_cycles(orders, min_intervals=config.repurchase_min_intervals,
                               min_repeat_share=config.repurchase_min_share)
    save_parquet(cycles, out / "repurchase.parquet")
    metrics["repurchase_products"] = len(cycles)
    metrics["products"] = len(items)
    return metrics


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


def _save_purchases(orders: pd.DataFrame, customers: Vocabulary, items: Vocabulary,
                    path: Path, config: ModelsConfig, known_durable: np.ndarray) -> int:
    """customer x product CSR of purchases (``last_day``: days since epoch + 1 of the last
    purchase, ``orders``: how many orders held it) and ``durable`` per product (see
    ``durable_products``). Returns the number of durable products."""
    known = orders[orders["customer_id"].notna()]
    rows = customers.lookup(known["customer_id"], on_unknown="mask")
    cols = items.lookup(known["product_id"], on_unknown="mask")
    if "ordered_at" in known and known["ordered_at"].notna().any():
        day = (known["ordered_at"].to_numpy("datetime64[D]").astype(np.int64) + 1)
    else:
        day = np.ones(len(known), dtype=np.int64)  # 1 = bought, date unknown
    order_codes = pd.factorize(known["order_id"])[0]
    keep = (rows >= 0) & (cols >= 0)
    rows, cols, day, order_codes = rows[keep], cols[keep], day[keep], order_codes[keep]
    # the last line of each (customer, product) wins; orders are counted once each
    order = np.lexsort((day, order_codes, cols, rows))
    rows, cols, day, order_codes = rows[order], cols[order], day[order], order_codes[order]
    new_pair = np.r_[True, (rows[1:] != rows[:-1]) | (cols[1:] != cols[:-1])]
    new_order = new_pair | np.r_[True, order_codes[1:] != order_codes[:-1]]
    pair_id = np.cumsum(new_pair) - 1
    n_orders = np.bincount(pair_id, weights=new_order).astype(np.int32)
    last_day = np.zeros(len(n_orders), dtype=np.int64)
    np.maximum.at(last_day, pair_id, day)
    pair_rows, pair_cols = rows[new_pair], cols[new_pair]
    shape = (len(customers), len(items))
    day_matrix = sp.csr_matrix((last_day, (pair_rows, pair_cols)), shape=shape)
    count_matrix = sp.csr_matrix((n_orders, (pair_rows, pair_cols)), shape=shape)
    buyers = np.bincount(pair_cols, minlength=len(items))
    repeaters = np.bincount(pair_cols, weights=n_orders >= 2, minlength=len(items))
    durable = durable_products(buyers, repeaters, known_durable, config)
    save_npz(path, indptr=day_matrix.indptr, indices=day_matrix.indices,
             last_day=day_matrix.data, orders=count_matrix.data.astype(np.int32),
             durable=durable, shape=np.array(shape))
    return int(durable.sum())
