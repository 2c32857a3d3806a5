"""The three offline tasks, each run the same way for every model:

1. validation stage (fit before ``valid_start``, score the validation window): every
   hyperparameter setting of a model's grid is scored and the best by the task's selection
   metric (first listed wins ties; the first setting is the library default / reference);
2. test stage (fit before ``test_start``, score the test window): the chosen setting is
   refitted and scored once.

The engine is one more model (``evaluation.engine``), with a grid of one: fitting it builds
an artifact from the test stage's training frames with its own config, and its served lists
are called as the API calls them; it is never tuned here.

Tasks: ``basket_completion`` (one held-out item per test order, the rest is the cart),
``also_viewed`` (next different product viewed in a session), ``next_basket`` (a returning
customer's next order from their history). See ``split`` for the cases and ``metrics`` for
the formulas.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.evaluation.baselines import (
    ALSRanker,
    Cooccurrence,
    CosineItemKNN,
    ItemKNNRanker,
    OwnMostBought,
    Popularity,
)
from recsys.evaluation.candidate import CartCandidate, HistoryCandidate, ViewCandidate
from recsys.evaluation.engine import (
    EngineAlsoViewed,
    EngineBuilder,
    EngineCarts,
    EngineForCustomers,
    TrainingFrames,
)
from recsys.evaluation.metrics import multi_target_metrics, single_target_metrics
from recsys.evaluation.split import (
    Holdout,
    Stage,
    Windows,
    basket_cases,
    next_basket_cases,
    next_basket_split,
    session_pairs,
    split_events,
    split_orders,
)
from recsys.matrices import order_item_matrix, session_item_matrix
from recsys.models.ranker import Ranker
from recsys.progress import progress_bar
from recsys.vocab import Vocabulary

__all__ = [
    "TaskResult",
    "ModelSpec",
    "DEFAULT_KS",
    "basket_models",
    "view_models",
    "next_basket_models",
    "evaluate_basket_completion",
    "evaluate_also_viewed",
    "evaluate_next_basket",
]

DEFAULT_KS: tuple[int, ...] = (5, 10, 20)
STAGES: tuple[Stage, ...] = ("validation", "test")
Metrics = dict[str, float]
Evaluate = Callable[[np.ndarray], tuple[Metrics, list[float]]]


@dataclass
class TaskResult:
    """One task's figures: ``metrics[model][metric]``, HR@1..max(ks) curves, and how."""

    task: str
    cases: int
    metrics: dict[str, Metrics] = field(default_factory=dict)
    curves: dict[str, list[float]] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)  # model -> chosen hyperparameters
    validation: dict[str, list[tuple[str, float]]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    split: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    select_metric: str = ""


@dataclass(frozen=True)
class ModelSpec:
    """A model's hyperparameter grid (first = default) and the training matrix it fits on."""

    name: str
    grid: tuple[Ranker, ...]
    matrix: str = "rows"


@dataclass(frozen=True)
class _Stage:
    """A stage's training matrices, queries and scorer."""

    matrices: dict[str, sp.csr_matrix]
    queries: sp.csr_matrix
    filter_query: bool
    evaluate: Evaluate
    cases: int


def _als_grid() -> tuple[Ranker, ...]:
    return (ALSRanker(64, 0.01, 1.0), ALSRanker(64, 0.05, 10.0), ALSRanker(128, 0.05, 10.0),
            ALSRanker(128, 0.5, 10.0))


def _rules_grid(min_counts: tuple[int, ...]) -> tuple[Ranker, ...]:
    """Rule confidences summed over the query (the reference setting first) or the best one."""
    return (*(Cooccurrence(m, "sum") for m in min_counts),
            *(Cooccurrence(m, "max") for m in min_counts))


def _knn_grid(cls: type[ItemKNNRanker]) -> tuple[Ranker, ...]:
    return tuple(cls(k=k) for k in (100, 50, 200, 400))


def basket_models() -> list[ModelSpec]:
    """Basket completion: every model fits the order x item matrix."""
    return [
        ModelSpec("popularity", (Popularity(),)),
        ModelSpec("cooccurrence", _rules_grid((1, 2, 5, 10))),
        ModelSpec("bm25_itemknn", _knn_grid(ItemKNNRanker)),
        ModelSpec("cosine_itemknn", _knn_grid(CosineItemKNN)),
        ModelSpec("als", _als_grid()),
        ModelSpec("engine_candidate", tuple(
            CartCandidate(lam=lam, bm25_weight=w) for lam in (3.0, 1.0, 10.0, 30.0)
            for w in (0.2, 0.0, 0.5))),
    ]


def view_models() -> list[ModelSpec]:
    """Also viewed: every model fits the session x item matrix."""
    return [
        ModelSpec("popularity", (Popularity(),)),
        ModelSpec("cooccurrence", tuple(Cooccurrence(m) for m in (1, 2, 5))),
        ModelSpec("bm25_itemknn", _knn_grid(ItemKNNRanker)),
        ModelSpec("cosine_itemknn", _knn_grid(CosineItemKNN)),
        ModelSpec("als", _als_grid()),
        ModelSpec("engine_candidate", tuple(ViewCandidate(cooc_weight=w)
                                            for w in (1.0, 0.0, 0.3, 3.0))),
    ]


def next_basket_models() -> list[ModelSpec]:
    """Next basket: best sellers and rules from orders, the rest from customer histories."""
    return [
        ModelSpec("popularity", (Popularity(),), "orders"),
        ModelSpec("cooccurrence", _rules_grid((1, 2, 5)), "orders"),
        ModelSpec("bm25_itemknn", _knn_grid(ItemKNNRanker), "customers"),
        ModelSpec("als", _als_grid(), "customers"),
        ModelSpec("own_most_bought", (OwnMostBought(),), "customers"),
        ModelSpec("engine_candidate", tuple(HistoryCandidate(knn_weight=w)
                                            for w in (0.3, 0.0, 0.1, 1.0)), "customers"),
    ]


def _select_k(ks: Sequence[int]) -> int:
    """The cutoff hyperparameters are chosen at: 10 when listed, else the largest."""
    return 10 if 10 in ks else max(ks)


def _binary_rows(matrix: sp.csr_matrix) -> sp.csr_matrix:
    out = sp.csr_matrix(matrix, dtype=np.float32, copy=True)
    out.data[:] = 1.0
    return out


def _run_models(specs: Sequence[ModelSpec], valid: _Stage | None, test: _Stage, result: TaskResult,
                *, max_k: int, tune: bool, show_progress: bool) -> None:
    """Choose each model's setting on ``valid`` (a grid of one, like the engine's, is not
    tuned), refit it on the test stage's training matrix, score its ``recommend`` lists."""
    for spec in progress_bar(list(specs), desc=f"{result.task} models", unit="model",
                             enabled=show_progress):
        start = time.perf_counter()
        grid = spec.grid if tune and valid is not None else spec.grid[:1]
        best = grid[0]
        if len(grid) > 1 and valid is not None:
            fitted: dict[str, Ranker] = {}
            scores: list[tuple[str, float]] = []
            for cand in grid:  # a handful of settings per model
                key = cand.fit_key()
                if key in fitted:
                    cand.take_fit(fitted[key])
                else:
                    fitted[key] = cand.fit(valid.matrices[spec.matrix])
                ranked, _ = cand.recommend(valid.queries, max_k, filter_query=valid.filter_query)
                scores.append((cand.describe(), valid.evaluate(ranked)[0][result.select_metric]))
            best = grid[int(np.argmax([s for _, s in scores]))]
            result.validation[spec.name] = scores
            del fitted
        model = best.clone().fit(test.matrices[spec.matrix])
        ranked, _ = model.recommend(test.queries, max_k, filter_query=test.filter_query)
        result.metrics[spec.name], result.curves[spec.name] = test.evaluate(ranked)
        result.params[spec.name] = model.describe()
        result.seconds[spec.name] = round(time.perf_counter() - start, 2)


def _engine(ranker: Ranker | None, matrix: str = "rows") -> list[ModelSpec]:
    """The engine's spec (none when the task runs without an engine builder)."""
    return [] if ranker is None else [ModelSpec("engine", (ranker,), matrix)]


def _before(events: pd.DataFrame | None, cutoff: pd.Timestamp) -> pd.DataFrame | None:
    return None if events is None else events[events["occurred_at"] < cutoff]


def _valid_stage(stages: dict[str, _Stage], result: TaskResult) -> _Stage | None:
    if stages["validation"].cases:
        return stages["validation"]
    result.notes.append("the validation window has no cases: every model runs with its "
                        "default setting")
    return None


def _keep(specs: list[ModelSpec], models: Sequence[str] | None) -> list[ModelSpec]:
    return [s for s in specs if models is None or s.name in models]


# -- 1. basket completion --------------------------------------------------------------------


def evaluate_basket_completion(
        orders: pd.DataFrame, windows: Windows, *, ks: Sequence[int] = DEFAULT_KS, seed: int = 0,
        tune: bool = True, engine: EngineBuilder | None = None, events: pd.DataFrame | None = None,
        catalog: pd.DataFrame | None = None, models: Sequence[str] | None = None,
        n_jobs: int = 1, show_progress: bool = True,
        extra: Sequence[ModelSpec] = ()) -> TaskResult:
    """Hold one known item out of each order of the window (>= 2 known items); rank the rest.

    ``orders``: canonical order lines with ``ordered_at`` (and ``quantity`` x ``unit_price``
    for the revenue-weighted hit rate). ``models``: a subset of names (``engine`` included);
    ``extra``: more models (ablations), tuned and scored the same way.
    """
    max_k = max(ks)
    result = TaskResult(task="basket_completion", cases=0,
                        select_metric=f"hr@{_select_k(ks)}")
    stages: dict[str, _Stage] = {}
    test_items = Vocabulary([])
    test_train = orders.iloc[:0]
    for stage in STAGES:
        train, window = split_orders(orders, windows, stage)
        items = Vocabulary.from_ids(train["product_id"], sort=True)
        matrix = _binary_rows(order_item_matrix(train, items=items).matrix)
        cases = basket_cases(window, items, seed=seed)
        revenue = cases.revenue if np.isfinite(cases.revenue).any() else None

        def evaluate(ranked: np.ndarray, cases: Any = cases, n: int = len(items),
                     revenue: np.ndarray | None = revenue) -> tuple[Metrics, list[float]]:
            return single_target_metrics(ranked, cases.targets, ks, n, revenue=revenue)

        stages[stage] = _Stage({"rows": matrix}, cases.queries, True, evaluate, len(cases))
        result.split[stage] = {"train_orders": int(matrix.shape[0]), "items": len(items),
                               "cases": len(cases)}
        if stage == "test":
            test_items, test_train = items, train
    result.cases = stages["test"].cases
    result.split["windows"] = windows.describe()
    if not result.cases:
        result.notes.append("no test order holds two products known before the cutoff")
        return result
    valid = _valid_stage(stages, result)
    served = None
    if engine is not None:  # frames cut only when there is an engine to build
        cutoff = windows.cutoff("test")
        served = EngineCarts(engine, TrainingFrames(f"before {cutoff}", test_train,
                                                    _before(events, cutoff), catalog),
                             test_items, n_jobs=n_jobs, show_progress=show_progress)
    _run_models([*_keep(basket_models(), models), *extra, *_keep(_engine(served), models)],
                valid, stages["test"], result, max_k=max_k, tune=tune,
                show_progress=show_progress)
    return result


# -- 2. also viewed --------------------------------------------------------------------------


def evaluate_also_viewed(
        events: pd.DataFrame, windows: Windows, *, ks: Sequence[int] = DEFAULT_KS,
        tune: bool = True, engine: EngineBuilder | None = None,
        orders: pd.DataFrame | None = None, catalog: pd.DataFrame | None = None,
        models: Sequence[str] | None = None, n_jobs: int = 1,
        show_progress: bool = True,
        extra: Sequence[ModelSpec] = ()) -> TaskResult:
    """Predict the next different product viewed in sessions that start inside the window."""
    max_k = max(ks)
    result = TaskResult(task="also_viewed", cases=0,
                        select_metric=f"hr@{_select_k(ks)}")
    views = events[events["event_type"] == "view"]
    stages: dict[str, _Stage] = {}
    test_items = Vocabulary([])
    for stage in STAGES:
        train, window = split_events(views, windows, stage)
        items = Vocabulary.from_ids(train["product_id"], sort=True)
        matrix = _binary_rows(session_item_matrix(train, items=items).matrix)
        pairs = session_pairs(window, items)

        def evaluate(ranked: np.ndarray, pairs: Any = pairs,
                     n: int = len(items)) -> tuple[Metrics, list[float]]:
            return single_target_metrics(ranked, pairs.targets, ks, n)

        stages[stage] = _Stage({"rows": matrix}, pairs.query_matrix(len(items)), True, evaluate,
                               len(pairs))
        result.split[stage] = {"train_sessions": int(matrix.shape[0]), "items": len(items),
                               "cases": len(pairs)}
        if stage == "test":
            test_items = items
    result.cases = stages["test"].cases
    result.split["windows"] = windows.describe()
    if not result.cases:
        result.notes.append("no test session views two different products known before the "
                            "cutoff one after the other")
        return result
    valid = _valid_stage(stages, result)
    served = None
    if engine is not None:
        cutoff = windows.cutoff("test")
        train_orders = None if orders is None else orders[orders["ordered_at"] < cutoff]
        served = EngineAlsoViewed(engine, TrainingFrames(f"before {cutoff}", train_orders,
                                                         _before(events, cutoff), catalog),
                                  test_items, n_jobs=n_jobs, show_progress=show_progress)
    _run_models([*_keep(view_models(), models), *extra, *_keep(_engine(served), models)],
                valid, stages["test"], result, max_k=max_k, tune=tune,
                show_progress=show_progress)
    return result


# -- 3. next basket --------------------------------------------------------------------------


def _customer_matrix(train: pd.DataFrame, items: Vocabulary) -> sp.csr_matrix:
    """customer x item: how many of the customer's orders held the item (float32)."""
    known = train[train["customer_id"].notna()]
    pairs = known[["customer_id", "order_id", "product_id"]].drop_duplicates()
    rows, _ = pd.factorize(pairs["customer_id"].astype(str), sort=True)
    cols = items.lookup(pairs["product_id"], on_unknown="mask")
    ok = cols >= 0
    out = sp.csr_matrix((np.ones(int(ok.sum()), dtype=np.float32), (rows[ok], cols[ok])),
                        shape=(int(rows.max(initial=-1)) + 1, len(items)))
    out.sum_duplicates()
    return out


def evaluate_next_basket(
        orders: pd.DataFrame, windows: Windows | None = None, *, holdout: Holdout = "time",
        ks: Sequence[int] = DEFAULT_KS, tune: bool = True, engine: EngineBuilder | None = None,
        events: pd.DataFrame | None = None, catalog: pd.DataFrame | None = None,
        models: Sequence[str] | None = None, n_jobs: int = 1,
        show_progress: bool = True,
        extra: Sequence[ModelSpec] = ()) -> TaskResult:
    """Rank each returning customer's next basket from their purchase history.

    ``holdout="time"``: the first order inside the window after a history before the cutoff;
    ``"last_order"``: each customer's last order (data with relative dates only).
    """
    max_k = max(ks)
    result = TaskResult(task="next_basket", cases=0,
                        select_metric=f"recall@{_select_k(ks)}")
    stages: dict[str, _Stage] = {}
    test_items = Vocabulary([])
    test_train = orders.iloc[:0]
    test_customers = np.zeros(0, dtype=object)
    for stage in STAGES:
        train, later = next_basket_split(orders, stage, holdout=holdout, windows=windows)
        items = Vocabulary.from_ids(train["product_id"], sort=True)
        cases = next_basket_cases(train, later, items)
        matrices = {"orders": _binary_rows(order_item_matrix(train, items=items).matrix),
                    "customers": _customer_matrix(train, items)}

        def evaluate(ranked: np.ndarray, cases: Any = cases,
                     n: int = len(items)) -> tuple[Metrics, list[float]]:
            return multi_target_metrics(ranked, cases.targets, ks, n,
                                        n_relevant=cases.basket_sizes)

        stages[stage] = _Stage(matrices, cases.history, False, evaluate, len(cases))
        result.split[stage] = {"train_orders": int(matrices["orders"].shape[0]),
                               "customers": int(matrices["customers"].shape[0]),
                               "items": len(items), "cases": len(cases)}
        if stage == "test":
            test_items, test_train, test_customers = items, train, cases.customers
    result.cases = stages["test"].cases
    result.split["holdout"] = holdout
    if windows is not None and holdout == "time":
        result.split["windows"] = windows.describe()
    else:
        result.notes.append("holdout: each customer's last order is the test basket and the one "
                            "before it the validation basket (the data has relative dates)")
    if not result.cases:
        result.notes.append("no customer ordered both before the cutoff and inside the test "
                            "window")
        return result
    valid = _valid_stage(stages, result)
    served = None
    if engine is not None:
        if holdout == "time" and windows is not None:
            cutoff = windows.cutoff("test")
            training = TrainingFrames(f"before {cutoff}", test_train, _before(events, cutoff),
                                      catalog)
        else:
            training = TrainingFrames("all but each customer's last order", test_train, None,
                                      catalog)
        served = EngineForCustomers(engine, training, test_items,
                                    customers=test_customers.tolist(), n_jobs=n_jobs,
                                    show_progress=show_progress)
    _run_models([*_keep(next_basket_models(), models), *extra,
                 *_keep(_engine(served, "customers"), models)],
                valid, stages["test"], result, max_k=max_k, tune=tune,
                show_progress=show_progress)
    return result
