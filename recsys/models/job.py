"""The training job: also-viewed and bought-together neighbour tables, ALS factors for
personalised lists, each customer's purchase history and the repurchase cycles.

Writes into the artifact: ``also_viewed/`` and ``bought_together/`` (top-K neighbours of
every product with scores and co-occurrence support, as memory-mappable ``.npy`` files), ``als.npz`` (user and item factors),
``customers.parquet`` (the customer vocabulary), ``purchases.npz`` (customer x product CSR of
purchases with the last purchase day) and ``repurchase.parquet``.
"""

from __future__ import annotations

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
                   config: ModelsConfig, weights: InteractionWeights, out: Path) -> dict[str, Any]:
    """Train every model over the artifact's product vocabulary ``items`` and write them."""
    metrics: dict[str, Any] = {}
    baskets = order_item_matrix(orders, items=items).matrix
    views = None if events is None else events[events["event_type"] == "view"]
    if views is not None and len(views):
        sessions = session_item_matrix(views, weights=weights, items=items).matrix
        _neighbours(sessions, config).save(out / "also_viewed")
        metrics["also_viewed_source"] = "view sessions"
        metrics["view_sessions"] = int(sessions.shape[0])
    co_purchase = _neighbours(baskets, config)
    co_purchase.save(out / "bought_together")
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
        _save_purchases(orders, customers.rows, items, out / "purchases.npz")
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


def _save_purchases(orders: pd.DataFrame, customers: Vocabulary, items: Vocabulary,
                    path: Path) -> None:
    """customer x product CSR of purchases; data = last purchase day (days since epoch)."""
    known = orders[orders["customer_id"].notna()]
    rows = customers.lookup(known["customer_id"], on_unknown="mask")
    cols = items.lookup(known["product_id"], on_unknown="mask")
    if "ordered_at" in known and known["ordered_at"].notna().any():
        day = (known["ordered_at"].to_numpy("datetime64[D]").astype(np.int64) + 1)
    else:
        day = np.ones(len(known), dtype=np.int64)  # 1 = bought, date unknown
    keep = (rows >= 0) & (cols >= 0)
    rows, cols, day = rows[keep], cols[keep], day[keep]
    order = np.lexsort((day, cols, rows))  # the last line of each (customer, product) wins
    rows, cols, day = rows[order], cols[order], day[order]
    last = np.r_[(rows[1:] != rows[:-1]) | (cols[1:] != cols[:-1]), True]
    matrix = sp.csr_matrix((day[last], (rows[last], cols[last])),
                           shape=(len(customers), len(items)))
    save_npz(path, indptr=matrix.indptr, indices=matrix.indices, last_day=matrix.data,
             shape=np.array(matrix.shape))
