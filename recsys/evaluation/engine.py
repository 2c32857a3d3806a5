"""The engine under evaluation: an artifact built from a stage's training rows only, loaded as
the server loads it, and its served rankers called once per case as the API calls them
(``Options(k, in_stock_only=False)``, no merchandiser decisions).

The artifact is built by the pipeline's own jobs (``recsys.pipeline.JOBS``) over in-memory
training frames, so whatever the nightly run computes is what gets measured; only ingest is
skipped (the frames come from an ingested data directory or a benchmark loader). Data with
events but no orders gets the also-viewed table alone, built by the models job's own function
(the models job needs orders).
"""

from __future__ import annotations

import logging
import multiprocessing
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recsys.artifacts import ArtifactStore
from recsys.config import Config
from recsys.matrices import item_vocabulary, session_item_matrix
from recsys.pipeline import JOBS, JobContext
from recsys.progress import progress_bar
from recsys.serving.index import ServingIndex, load_index
from recsys.serving.recommend import Decisions, Options, also_viewed, cart_addons, for_customer
from recsys.vocab import Vocabulary

__all__ = ["EngineBuilder", "rank_carts", "rank_also_viewed", "rank_for_customers", "to_codes"]

log = logging.getLogger(__name__)

_EMPTY_ORDERS = {"order_id": "string", "product_id": "string", "customer_id": "string",
                 "ordered_at": "datetime64[us]", "quantity": "float64", "unit_price": "float64"}


def _empty_orders() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in _EMPTY_ORDERS.items()})


class EngineBuilder:
    """Builds (once per training set, by key) and loads engine artifacts under ``workdir``."""

    def __init__(self, config: Config | None, workdir: Path, *, show_progress: bool = True) -> None:
        self.config = config or Config()
        self.workdir = Path(workdir)
        self.show_progress = show_progress
        self._built: dict[str, ServingIndex] = {}
        self.seconds: dict[str, float] = {}

    def index(self, key: str, orders: pd.DataFrame | None, events: pd.DataFrame | None,
              catalog: pd.DataFrame | None) -> ServingIndex:
        """The served index trained on exactly these frames (cached under ``key``)."""
        if key not in self._built:
            start = time.perf_counter()
            root = self.workdir / f"engine-{len(self._built)}"
            self._built[key] = build_index(orders, events, catalog, self.config, root)
            self.seconds[key] = time.perf_counter() - start
            log.info("engine artifact for %s built and loaded in %.1f s", key, self.seconds[key])
        return self._built[key]


def build_index(orders: pd.DataFrame | None, events: pd.DataFrame | None,
                catalog: pd.DataFrame | None, config: Config, root: Path) -> ServingIndex:
    """Run the pipeline's jobs on the frames, publish into ``root`` and load the index."""
    store = ArtifactStore(root, keep_last=1)
    has_orders = orders is not None and len(orders) > 0
    frame = orders if orders is not None and has_orders else _empty_orders()
    items = item_vocabulary(catalog, frame, events)
    metrics: dict[str, Any] = {}
    with store.staging() as staging:
        ctx = JobContext(config=config, orders=frame, events=events, catalog=catalog, items=items,
                         out=staging)
        jobs = JOBS if has_orders else {n: JOBS[n] for n in ("catalog", "popularity")}
        for name, job in jobs.items():
            metrics[name] = job(ctx)
        if not has_orders and events is not None:
            from recsys.models.job import save_view_models  # the models job's own writer

            views = events[events["event_type"] == "view"]
            sessions = session_item_matrix(views, weights=config.interactions, items=items)
            save_view_models(sessions.matrix, config.models, staging)
            metrics["models"] = {"also_viewed_source": "view sessions (events only)"}
        store.publish(staging, config=config.to_json_dict(), config_hash=config.hash(),
                      inputs={"source": "offline evaluation: training window only"},
                      metrics=metrics)
    return load_index(root)


# -- calling the served rankers, case by case ------------------------------------------------

_WORKER: dict[str, Any] = {}


def _call(case: Any) -> list[str]:
    index, fn, k = _WORKER["index"], _WORKER["fn"], _WORKER["k"]
    result = fn(index, case, Options(k=k, in_stock_only=False), Decisions())
    return [item["product_id"] for item in result.items]


def _serve(index: ServingIndex, fn: Callable[..., Any], cases: Sequence[Any], k: int, *,
           desc: str, n_jobs: int, show_progress: bool) -> list[list[str]]:
    """One served call per case (a request each), in ``n_jobs`` forked processes if > 1."""
    _WORKER.update(index=index, fn=fn, k=k)
    try:
        if n_jobs > 1 and len(cases) > 200 and "fork" in multiprocessing.get_all_start_methods():
            with multiprocessing.get_context("fork").Pool(n_jobs) as pool:
                results = pool.imap(_call, cases, chunksize=64)
                return list(progress_bar(results, desc=desc, unit="case", total=len(cases),
                                         enabled=show_progress))
        return [_call(case) for case in progress_bar(cases, desc=desc, unit="case",
                                                      enabled=show_progress)]
    finally:
        _WORKER.clear()


def _cart(index: ServingIndex, cart: list[str], options: Options, decisions: Decisions) -> Any:
    return cart_addons(index, cart, options, decisions)


def _viewed(index: ServingIndex, product: str, options: Options, decisions: Decisions) -> Any:
    return also_viewed(index, product, options, decisions)


def _customer(index: ServingIndex, customer: str, options: Options, decisions: Decisions) -> Any:
    return for_customer(index, customer, [], options, decisions)


def rank_carts(index: ServingIndex, carts: Sequence[list[str]], k: int, *, n_jobs: int = 1,
               show_progress: bool = True) -> list[list[str]]:
    """``cart_addons`` for each cart."""
    return _serve(index, _cart, carts, k, desc="engine carts", n_jobs=n_jobs,
                  show_progress=show_progress)


def rank_also_viewed(index: ServingIndex, products: Sequence[str], k: int, *, n_jobs: int = 1,
                     show_progress: bool = True) -> list[list[str]]:
    """``also_viewed`` for each viewed product."""
    return _serve(index, _viewed, products, k, desc="engine also-viewed", n_jobs=n_jobs,
                  show_progress=show_progress)


def rank_for_customers(index: ServingIndex, customers: Sequence[str], k: int, *, n_jobs: int = 1,
                       show_progress: bool = True) -> list[list[str]]:
    """``for_customer`` (no extra history: the artifact holds their purchases)."""
    return _serve(index, _customer, customers, k, desc="engine customers", n_jobs=n_jobs,
                  show_progress=show_progress)


def to_codes(lists: Sequence[list[str]], items: Vocabulary, k: int) -> np.ndarray:
    """(n, k) item codes of ranked id lists: -1 = empty slot, -2 = an id unknown to ``items``."""
    out = np.full((len(lists), k), -1, dtype=np.int64)
    lengths = np.array([min(len(x), k) for x in lists], dtype=np.int64)
    flat = [pid for x in lists for pid in x[:k]]
    if flat:
        codes = items.lookup(pd.Series(flat, dtype="string"), on_unknown="mask")
        rows = np.repeat(np.arange(len(lists)), lengths)
        cols = np.arange(len(flat)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        out[rows, cols] = np.where(codes >= 0, codes, -2)
    return out
