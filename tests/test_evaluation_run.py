"""`run_evaluation` end to end on a small ingested demo shop: the outputs' shape, the engine
beside the baselines, and tasks the data cannot support skipped with the reason."""

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
from recsys.ingest import ingest
from recsys.mapping import SourceMapping
from recsys.models.rankers import solve_users


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
