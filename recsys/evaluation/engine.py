"""The engine under evaluation, under the ranker contract (``recsys.models.ranker``): an
artifact built from a stage's training frames only, loaded as the server loads it, and one of
its served lists called once per query as the API calls it (``Options(k, in_stock_only=False)``,
no merchandiser decisions). One ranker per served list: ``EngineCarts`` (``cart_addons``),
``EngineAlsoViewed`` (``also_viewed``), ``EngineForCustomers`` (``for_customer``).

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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.artifacts import ArtifactStore
from recsys.config import Config
from recsys.matrices import item_vocabulary, session_item_matrix
from recsys.models.ranker import Ranker
from recsys.pipeline import JOBS, JobContext
from recsys.progress import progress_bar
from recsys.serving.finish import Result
from recsys.serving.index import ServingIndex, load_index
from recsys.serving.recommend import Decisions, Options, also_viewed, cart_addons, for_customer
from recsys.vocab import Vocabulary

__all__ = ["EngineBuilder", "TrainingFrames", "EngineRanker", "EngineCarts", "EngineAlsoViewed",
           "EngineForCustomers", "build_index", "to_codes"]

log = logging.getLogger(__name__)

_EMPTY_ORDERS = {"order_id": "string", "product_id": "string", "customer_id": "string",
                 "ordered_at": "datetime64[us]", "quantity": "float64", "unit_price": "float64"}


def _empty_orders() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in _EMPTY_ORDERS.items()})


@dataclass(frozen=True)
class TrainingFrames:
    """What an engine artifact is built from; ``key`` names it in the builder's cache, so
    equal keys must mean equal frames (e.g. ``before <cutoff>``)."""

    key: str
    orders: pd.DataFrame | None
    events: pd.DataFrame | None
    catalog: pd.DataFrame | None


class EngineBuilder:
    """Builds (once per training set, by key) and loads engine artifacts under ``workdir``."""

    def __init__(self, config: Config | None, workdir: Path, *, show_progress: bool = True) -> None:
        self.config = config or Config()
        self.workdir = Path(workdir)
        self.show_progress = show_progress
        self._built: dict[str, tuple[Path, ServingIndex]] = {}
        self.seconds: dict[str, float] = {}

    def artifact(self, training: TrainingFrames) -> tuple[Path, ServingIndex]:
        """The artifact store trained on exactly these frames and its loaded current version
        (built on the first call for ``training.key``)."""
        key = training.key
        if key not in self._built:
            start = time.perf_counter()
            root = self.workdir / f"engine-{len(self._built)}"
            index = build_index(training.orders, training.events, training.catalog,
                                self.config, root)
            self._built[key] = root, index
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


# -- the served lists as rankers -------------------------------------------------------------

_WORKER: dict[str, Any] = {}


def _call(case: Any) -> list[str]:
    index, ranker, options = _WORKER["index"], _WORKER["ranker"], _WORKER["options"]
    result = ranker.served(index, case, options, Decisions())
    return [item["product_id"] for item in result.items]


def _serve(index: ServingIndex, ranker: EngineRanker, cases: Sequence[Any],
           options: Options) -> list[list[str]]:
    """One served call per case (a request each), in ``ranker.n_jobs`` forked processes if > 1."""
    _WORKER.update(index=index, ranker=ranker, options=options)
    desc, n_jobs, show = ranker.progress, ranker.n_jobs, ranker.show_progress
    try:
        if n_jobs > 1 and len(cases) > 200 and "fork" in multiprocessing.get_all_start_methods():
            with multiprocessing.get_context("fork").Pool(n_jobs) as pool:
                results = pool.imap(_call, cases, chunksize=64)
                return list(progress_bar(results, desc=desc, unit="case", total=len(cases),
                                         enabled=show))
        return [_call(case) for case in progress_bar(cases, desc=desc, unit="case",
                                                      enabled=show)]
    finally:
        _WORKER.clear()


class EngineRanker(Ranker):
    """The served engine as a ranker; a subclass per served list says how a query row becomes
    a request (``requests``) and which function answers it (``served``).

    - ``fit(matrix)``: builds the artifact of ``training`` with the pipeline's jobs (once per
      ``training.key``: the builder keeps it) and loads it as the server does. ``matrix`` is
      the stage's training matrix, derived from the same frames; its columns are ``items``.
    - ``recommend(queries, k)``: one served call per query row, ``Options(k,
      in_stock_only=False)`` with ``exclude`` as the request's ``exclude`` ids, no decisions,
      in ``n_jobs`` forked processes. Ids are codes of ``items``: ``-2`` = a product the
      artifact knows and ``items`` lacks (a miss, not a gap), ``-1`` = an empty slot; scores
      are ``k - position`` (the served order: tiers, pins and best-seller fills make the
      served scores incomparable). ``filter_query`` must be what the list does itself.
    - ``score``: none (NotImplementedError): a served list is not the top of one score per item.
    - ``save(path)``: ``.npz`` of where the artifact is (store folder, version) and ``items``,
      not the artifact itself; ``Ranker.load(path)`` loads that version again while its
      folder exists (``run_evaluation`` builds it in a temporary folder). A loaded ranker
      recommends; it cannot be fitted again (no builder, no frames).
    """

    name = "engine"
    served_name: ClassVar[str] = ""  # the function of recsys.serving.recommend called
    about: ClassVar[str] = ""  # what that list ranks by (``describe``)
    progress: ClassVar[str] = "engine"
    leaves_query_out: ClassVar[bool] = True  # the list never holds the query's own items

    def __init__(self, builder: EngineBuilder | None = None,
                 training: TrainingFrames | None = None, items: Vocabulary | None = None, *,
                 n_jobs: int = 1, show_progress: bool = False) -> None:
        self.builder, self.training = builder, training
        self.items = items if items is not None else Vocabulary([])
        self.n_jobs, self.show_progress = n_jobs, show_progress
        self.index: ServingIndex | None = None
        self.store: Path | None = None

    @staticmethod
    def served(index: ServingIndex, request: Any, options: Options,
               decisions: Decisions) -> Result:
        """The served list for one request."""
        raise NotImplementedError

    def requests(self, queries: sp.csr_matrix) -> list[Any]:
        """One request per query row (what the API would be sent)."""
        raise NotImplementedError

    def describe(self) -> str:
        return f"{self.served_name} ({self.about})"

    def clone(self) -> EngineRanker:
        """Unfitted, with the same builder, frames and columns (a refit reuses the artifact)."""
        out = type(self).__new__(type(self))
        out.__dict__.update(self.__dict__, index=None, store=None)
        return out

    def fit(self, matrix: sp.csr_matrix) -> EngineRanker:
        if self.builder is None or self.training is None:
            raise ValueError(f"{type(self).__name__} has no builder or training frames to fit "
                             "with (a loaded engine ranker is fitted already)")
        if matrix.shape[1] != len(self.items):
            raise ValueError(f"the training matrix has {matrix.shape[1]} item columns; the "
                             f"engine's items have {len(self.items)}")
        self.store, self.index = self.builder.artifact(self.training)
        self.n_items = len(self.items)
        return self

    def score(self, queries: sp.csr_matrix) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} has no per-item scores: the served "
                                  f"{self.served_name} list is finished by tiers, pins and "
                                  "best-seller fills; use recommend")

    def recommend(self, queries: sp.csr_matrix, k: int, *, filter_query: bool = True,
                  exclude: np.ndarray | None = None,
                  batch_size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The served lists (class docstring); ``batch_size`` is unused: a request is a query."""
        if self.index is None:
            raise ValueError(f"{type(self).__name__}: fit or load it before recommend")
        queries = sp.csr_matrix(queries)
        if queries.shape[1] != self.n_items:
            raise ValueError(f"queries have {queries.shape[1]} item columns; the ranker was "
                             f"fitted on {self.n_items}")
        if filter_query != self.leaves_query_out:
            does = "never lists" if self.leaves_query_out else "may list"
            raise ValueError(f"the served {self.served_name} list {does} the query's own "
                             f"items; filter_query={filter_query} cannot be honoured")
        banned = () if exclude is None else self.items.ids[np.asarray(exclude, dtype=np.int64)]
        options = Options(k=k, in_stock_only=False, exclude=frozenset(banned))
        lists = _serve(self.index, self, self.requests(queries), options)
        ids = to_codes(lists, self.items, k)
        position = np.arange(k, 0, -1, dtype=np.float32)
        return ids, np.where(ids != -1, position, np.float32(-np.inf)).astype(np.float32)

    def _state(self) -> dict[str, np.ndarray]:
        if self.index is None or self.store is None:
            raise ValueError(f"{type(self).__name__}: nothing to save before fit")
        return {"store": np.array(str(self.store)), "version": np.array(self.index.version),
                "items": np.asarray(self.items.ids, dtype=np.str_)}

    def _restore(self, state: dict[str, np.ndarray]) -> None:
        self.store = Path(str(state["store"]))
        self.index = load_index(self.store, str(state["version"]))
        self.items = Vocabulary(state["items"].tolist())


def _ids_of_rows(queries: sp.csr_matrix, items: Vocabulary) -> list[list[str]]:
    """Each query row's product ids (in the row's stored order)."""
    ids = items.ids[queries.indices]
    return [part.tolist() for part in np.split(ids, queries.indptr[1:-1])]


class EngineCarts(EngineRanker):
    """``cart_addons`` for each cart (a query row: the cart's products)."""

    served_name, progress = "cart_addons", "engine carts"
    about = "EASE + item-kNN + rules, summed over the cart"

    @staticmethod
    def served(index: ServingIndex, request: Any, options: Options,
               decisions: Decisions) -> Result:
        return cart_addons(index, request, options, decisions)

    def requests(self, queries: sp.csr_matrix) -> list[Any]:
        return list(_ids_of_rows(queries, self.items))


class EngineAlsoViewed(EngineRanker):
    """``also_viewed`` for each viewed product (a query row holds exactly one)."""

    served_name, progress = "also_viewed", "engine also-viewed"
    about = "view-session neighbours re-ranked by co-views"

    @staticmethod
    def served(index: ServingIndex, request: Any, options: Options,
               decisions: Decisions) -> Result:
        return also_viewed(index, request, options, decisions)

    def requests(self, queries: sp.csr_matrix) -> list[Any]:
        sizes = np.diff(queries.indptr)
        if (sizes != 1).any():
            row = int(np.flatnonzero(sizes != 1)[0])
            raise ValueError(f"an also-viewed query is one viewed product; row {row} holds "
                             f"{int(sizes[row])}")
        return list(self.items.ids[queries.indices].tolist())


class EngineForCustomers(EngineRanker):
    """``for_customer`` for each customer, no extra history: the artifact holds their
    purchases (built from the same frames as the query rows, their histories). The API asks
    by customer id, so query row i is ``customers[i]``'s history; ``save`` keeps them."""

    served_name, progress = "for_customer", "engine customers"
    about = "own repeat purchases, then ALS"
    leaves_query_out = False  # people buy again

    def __init__(self, builder: EngineBuilder | None = None,
                 training: TrainingFrames | None = None, items: Vocabulary | None = None, *,
                 customers: Sequence[str] = (), n_jobs: int = 1,
                 show_progress: bool = False) -> None:
        super().__init__(builder, training, items, n_jobs=n_jobs, show_progress=show_progress)
        self.customers = [str(c) for c in customers]

    @staticmethod
    def served(index: ServingIndex, request: Any, options: Options,
               decisions: Decisions) -> Result:
        return for_customer(index, request, [], options, decisions)

    def requests(self, queries: sp.csr_matrix) -> list[Any]:
        if queries.shape[0] != len(self.customers):
            raise ValueError(f"{queries.shape[0]} query rows, but the ranker knows whose "
                             f"history {len(self.customers)} rows are (its customers)")
        return list(self.customers)

    def _state(self) -> dict[str, np.ndarray]:
        return {**super()._state(), "customers": np.asarray(self.customers, dtype=np.str_)}

    def _restore(self, state: dict[str, np.ndarray]) -> None:
        super()._restore(state)
        self.customers = state["customers"].tolist()

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
