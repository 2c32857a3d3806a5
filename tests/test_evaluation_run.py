"""`run_evaluation` end to end on a small ingested demo shop: the outputs' shape, the engine
beside the baselines, and tasks the data cannot support skipped with the reason; the engine's
rankers answer what the served functions answer, under the ranker contract."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recsys.config import Config
from recsys.demo import DemoSpec, generate_demo
from recsys.errors import ConfigError
from recsys.evaluation import EvaluationResult, run_evaluation
from recsys.evaluation.engine import (
    EngineAlsoViewed,
    EngineBuilder,
    EngineCarts,
    EngineForCustomers,
    EngineRanker,
    TrainingFrames,
)
from recsys.ingest import ingest, load_table
from recsys.mapping import SourceMapping
from recsys.models.ranker import load_ranker
from recsys.models.rankers import solve_users
from recsys.serving.recommend import Decisions, Options, also_viewed, cart_addons, for_customer
from recsys.vocab import Vocabulary


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("evaluation_shop")
    generate_demo(tmp / "raw", DemoSpec(orders=3_000, products=100, seed=11), progress=False)
    ingest({t: str(tmp / "raw" / f"{t}.csv") for t in ("orders", "events", "catalog")},
           SourceMapping(), tmp / "data", show_progress=False)
    return tmp / "data"


@pytest.fixture(scope="module")
def evaluated(data_dir: Path, tmp_path_factory: pytest.TempPathFactory
              ) -> tuple[EvaluationResult, Path]:
    out = tmp_path_factory.mktemp("evaluation_out")
    config = Config.model_validate({"popularity": {"window_days": 0}})
    return run_evaluation(data_dir, out, config=config, show_progress=False), out


def test_metrics_json_is_task_model_metric(evaluated: tuple[EvaluationResult, Path]) -> None:
    result, out = evaluated
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == {"basket_completion", "also_viewed", "next_basket"}
    for task, models in metrics.items():
        assert {"popularity", "cooccurrence", "bm25_itemknn", "als", "engine",
                "engine_candidate"} <= set(models), task
        for values in models.values():
            assert all(v is None or 0.0 <= v <= 1.0 for v in values.values())
    assert "own_most_bought" in metrics["next_basket"]
    assert {"hr@10", "mrr@10", "ndcg@10", "revenue_hr@10", "coverage@10"} <= set(
        metrics["basket_completion"]["engine"])
    assert {"recall@10", "ndcg@10"} <= set(metrics["next_basket"]["own_most_bought"])
    assert metrics == json.loads(json.dumps(result.metrics()))


def test_models_beat_chance_on_the_planted_shop(evaluated: tuple[EvaluationResult, Path]) -> None:
    result, _ = evaluated
    basket = result.tasks["basket_completion"].metrics  # 100 products: best sellers are strong
    assert basket["engine"]["mrr@10"] > basket["popularity"]["mrr@10"]
    viewed = result.tasks["also_viewed"].metrics
    assert viewed["engine"]["hr@10"] > 1.5 * viewed["popularity"]["hr@10"]
    nxt = result.tasks["next_basket"].metrics
    assert nxt["own_most_bought"]["recall@10"] > nxt["popularity"]["recall@10"]


def test_report_and_details(evaluated: tuple[EvaluationResult, Path]) -> None:
    result, out = evaluated
    page = (out / "report.html").read_text()
    assert page.count("<svg") == 3 and "engine_candidate" in page
    assert "http" not in page.split("<svg")[0]  # self-contained: nothing fetched
    details = json.loads((out / "evaluation.json").read_text())
    split = details["tasks"]["basket_completion"]["split"]
    assert split["windows"]["valid_start"] < split["windows"]["test_start"]
    assert details["tasks"]["basket_completion"]["validation"]["bm25_itemknn"]
    table = result.table()
    assert "basket_completion" in table and "engine" in table


def test_absent_data_is_skipped_with_a_reason(data_dir: Path, tmp_path: Path) -> None:
    orders = pd.read_parquet(data_dir / "orders.parquet").drop(columns=["customer_id"])
    (tmp_path / "data").mkdir()
    orders.to_parquet(tmp_path / "data" / "orders.parquet", index=False)
    result = run_evaluation(tmp_path / "data", tmp_path / "out", engine=False,
                            tasks=["also_viewed", "next_basket"], show_progress=False)
    assert result.tasks == {}
    assert "no events" in result.skipped["also_viewed"]
    assert "customer_id" in result.skipped["next_basket"]
    assert json.loads((tmp_path / "out" / "metrics.json").read_text()) == {}
    details = json.loads((tmp_path / "out" / "evaluation.json").read_text())
    assert set(details["skipped"]) == {"also_viewed", "next_basket"}
    assert "skipped" in (tmp_path / "out" / "report.html").read_text()
    assert "customer_id" in result.table()


def test_unknown_task_is_refused(data_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown evaluation task"):
        run_evaluation(data_dir, tmp_path, tasks=["churn"])


def test_als_user_solve_matches_the_closed_form() -> None:
    rng = np.random.default_rng(0)
    y = rng.normal(size=(40, 5)).astype(np.float32)
    queries = sp.random(12, 40, density=0.15, random_state=1, format="csr", dtype=np.float32)
    queries.data[:] = rng.integers(1, 4, queries.nnz)
    users = solve_users(y, queries, 0.1, 10.0, max_floats=60)  # tiny batches
    yd = y.astype(np.float64)
    for u in range(12):  # brute force, one user at a time
        idx, conf = queries[u].indices, queries[u].data * 10.0
        a = yd.T @ yd + 0.1 * np.eye(5) + (yd[idx].T * (conf - 1)) @ yd[idx]
        np.testing.assert_allclose(users[u], np.linalg.solve(a, conf @ yd[idx]), rtol=1e-8)


# -- the engine under the ranker contract -----------------------------------------------------


@pytest.fixture(scope="module")
def engine_setup(data_dir: Path, tmp_path_factory: pytest.TempPathFactory
                 ) -> tuple[EngineBuilder, TrainingFrames, Vocabulary, pd.DataFrame]:
    tables = {t: load_table(data_dir, t) for t in ("orders", "events", "catalog")}
    orders = tables["orders"]
    assert orders is not None
    builder = EngineBuilder(None, tmp_path_factory.mktemp("engine"), show_progress=False)
    training = TrainingFrames("all", orders, tables["events"], tables["catalog"])
    ordered = sorted(set(orders["product_id"].astype(str)))
    items = Vocabulary([p for i, p in enumerate(ordered) if i % 5])  # some products unknown
    return builder, training, items, orders


def _expected(lists: list[list[str]], items: Vocabulary, k: int) -> list[list[int]]:
    code_of = {pid: code for code, pid in enumerate(items.ids.tolist())}
    return [[code_of.get(pid, -2) for pid in lst[:k]] + [-1] * (k - len(lst[:k]))
            for lst in lists]


def _one_hot_rows(rows: list[list[str]], items: Vocabulary) -> sp.csr_matrix:
    codes = [items.lookup(pd.Series(row, dtype="string")) for row in rows]
    return sp.csr_matrix((np.ones(sum(map(len, codes)), dtype=np.float32),
                          (np.repeat(np.arange(len(rows)), [len(c) for c in codes]),
                           np.concatenate(codes))), shape=(len(rows), len(items)))


def test_engine_carts_answer_what_cart_addons_serves(
        engine_setup: tuple[EngineBuilder, TrainingFrames, Vocabulary, pd.DataFrame],
        tmp_path: Path) -> None:
    builder, training, items, orders = engine_setup
    known = orders[orders["product_id"].astype(str).isin(set(items.ids.tolist()))]
    carts = [sorted(set(g.astype(str))) for _, g in known.groupby("order_id")["product_id"]][:40]
    queries = _one_hot_rows(carts, items)
    model = EngineCarts(builder, training, items).fit(sp.csr_matrix((3, len(items))))
    ids, scores = model.recommend(queries, 10)
    _, index = builder.artifact(training)
    options = Options(k=10, in_stock_only=False)
    served = [[i["product_id"] for i in cart_addons(index, c, options, Decisions()).items]
              for c in carts]
    assert ids.tolist() == _expected(served, items, 10)
    assert (ids == -2).any()  # the artifact lists products the evaluation columns lack
    assert (np.diff(np.where(ids == -1, -np.inf, scores), axis=1) < 0)[ids[:, 1:] != -1].all()
    loaded = load_ranker(_saved(model, tmp_path))  # where the artifact is, and the columns
    assert isinstance(loaded, EngineCarts) and loaded.recommend(queries, 10)[0].tolist() == (
        ids.tolist())
    banned = np.unique(ids[ids >= 0])[:5]
    kept, _ = model.recommend(queries, 10, exclude=banned)
    exclude = Options(k=10, in_stock_only=False, exclude=frozenset(items.ids[banned].tolist()))
    assert kept.tolist() == _expected([[i["product_id"] for i in cart_addons(
        index, c, exclude, Decisions()).items] for c in carts], items, 10)
    assert not np.isin(kept, banned).any()
    assert len(builder.seconds) == 1  # a refit (clone) reuses the artifact of the same key
    assert model.clone().fit(sp.csr_matrix((1, len(items)))).index is model.index


def _saved(model: EngineRanker, folder: Path) -> Path:
    model.save(folder / "engine.npz")
    return folder / "engine.npz"


def test_engine_also_viewed_and_for_customer_answer_what_is_served(
        engine_setup: tuple[EngineBuilder, TrainingFrames, Vocabulary, pd.DataFrame],
        tmp_path: Path) -> None:
    builder, training, items, orders = engine_setup
    _, index = builder.artifact(training)
    options = Options(k=5, in_stock_only=False)
    viewed = items.ids[:30].tolist()
    model = EngineAlsoViewed(builder, training, items).fit(sp.csr_matrix((1, len(items))))
    ids, _ = model.recommend(_one_hot_rows([[p] for p in viewed], items), 5)
    assert ids.tolist() == _expected([[i["product_id"] for i in also_viewed(
        index, p, options, Decisions()).items] for p in viewed], items, 5)
    with pytest.raises(ValueError, match="one viewed product; row 0 holds 2"):
        model.recommend(_one_hot_rows([viewed[:2]], items), 5)
    customers = sorted(set(orders["customer_id"].dropna().astype(str)))[:25]
    history = sp.csr_matrix((len(customers), len(items)), dtype=np.float32)  # not read
    buyer = EngineForCustomers(builder, training, items, customers=customers).fit(history)
    ids, _ = buyer.recommend(history, 5, filter_query=False)
    assert ids.tolist() == _expected([[i["product_id"] for i in for_customer(
        index, c, [], options, Decisions()).items] for c in customers], items, 5)
    loaded = load_ranker(_saved(buyer, tmp_path))
    assert loaded.recommend(history, 5, filter_query=False)[0].tolist() == ids.tolist()
    with pytest.raises(ValueError, match="25 rows"):
        buyer.recommend(history[:3], 5, filter_query=False)


def test_engine_refuses_what_a_served_list_cannot_do(
        engine_setup: tuple[EngineBuilder, TrainingFrames, Vocabulary, pd.DataFrame]) -> None:
    builder, training, items, _ = engine_setup
    model = EngineCarts(builder, training, items)
    queries = sp.csr_matrix((2, len(items)), dtype=np.float32)
    with pytest.raises(ValueError, match="fit or load"):
        model.recommend(queries, 5)
    with pytest.raises(ValueError, match="item columns"):
        model.fit(sp.csr_matrix((1, len(items) + 1)))
    model.fit(queries)
    with pytest.raises(ValueError, match="never lists the query's own items"):
        model.recommend(queries, 5, filter_query=False)
    with pytest.raises(NotImplementedError, match="no per-item scores"):
        model.score(queries)
    with pytest.raises(ValueError, match="no builder or training frames"):
        EngineCarts().fit(queries)
