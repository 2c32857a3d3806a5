"""`recsys run --engine spark` on a real standalone Spark cluster (a master and a worker on
127.0.0.1): the artifact holds what the local engine publishes, and serving it answers the
same API tests and the same lists."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from recsys import layout, pipeline
from recsys.analytics.job import OUTPUT_FILES
from recsys.app import create_app
from recsys.artifacts import ArtifactStore, load_npz
from recsys.config import load_config
from recsys.ingest import load_table
from recsys.models.neighbours import Neighbours
from recsys.pipeline import run_pipeline
from recsys.spark.pipeline import run_on_spark
from tests.conftest import write_small_config
from tests.test_api import (  # noqa: F401 - the API tests, run here on the Spark-built artifact
    test_a_short_list_is_filled_from_best_sellers,
    test_product_without_neighbours_gets_its_category_best_sellers,
)
from tests.test_spark_clv import RTOL, _assert_same_figures


@pytest.fixture(scope="module")
def built(spark_cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The small shop published twice: by the local engine and by Spark on the cluster; the
    Spark engine's driver never loads the order lines nor the events."""
    roots = {}
    loaded: list[str] = []

    def recording(data_dir: Path | str, table: str, **kwargs: Any) -> pd.DataFrame | None:
        loaded.append(table)
        return load_table(data_dir, table, **kwargs)

    for engine in ("local", "spark"):
        tmp = tmp_path_factory.mktemp(engine)
        config = load_config(write_small_config(tmp))
        if engine == "spark":
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(pipeline, "load_table", recording)
                run_on_spark(config, show_progress=False, spark=spark_cluster)
            assert loaded and not {"orders", "events"} & set(loaded), loaded
        else:
            run_pipeline(config, show_progress=False)
        roots[engine] = tmp
    return roots


@pytest.fixture(scope="module")
def small(built: dict[str, Path]) -> Iterator[TestClient]:
    """What test_api's ``small`` is, built on Spark: serves the Spark engine's artifact."""
    config = load_config(built["spark"] / "recsys.toml")
    with TestClient(create_app(config.serving_settings())) as client:
        yield client


def test_the_artifact_holds_what_the_local_engine_publishes(built: dict[str, Path]) -> None:
    local = ArtifactStore(built["local"] / "artifacts").verify()
    spark = ArtifactStore(built["spark"] / "artifacts").verify()
    assert set(spark.files) == set(local.files)
    assert spark.inputs["rows"] == local.inputs["rows"]
    for job in ("basket_stats", "rules", "catalog", "models", "cold_start"):
        assert spark.metrics[job] == local.metrics[job], job
    paths = {e: ArtifactStore(built[e] / "artifacts").path() for e in built}
    for name in ("popular.parquet", "items.parquet", "catalog.parquet", "bundles.parquet",
                 "substitutes.parquet", layout.REPURCHASE.path, layout.CUSTOMERS.path,
                 layout.VIEWED_BOUGHT.path, "rules.parquet", "category_rules.parquet",
                 "itemsets.parquet"):  # row for row
        pd.testing.assert_frame_equal(pd.read_parquet(paths["spark"] / name),
                                      pd.read_parquet(paths["local"] / name), obj=name)
    # made on Spark: the purchase history, the view sessions in the local row order
    for file in (layout.PURCHASES, layout.SESSIONS, layout.SESSIONS_BY_ITEM):
        arrays = {e: load_npz(file.at(paths[e])) for e in paths}
        assert set(arrays["spark"]) == set(arrays["local"])
        for key in arrays["local"]:
            np.testing.assert_array_equal(arrays["spark"][key], arrays["local"][key],
                                          err_msg=f"{file.path} {key}")
    assert spark.metrics["models"]["view_sessions"] > 1  # so that their order is checked
    assert (json.loads(layout.COLD_START.at(paths["spark"]).read_text())
            == json.loads(layout.COLD_START.at(paths["local"]).read_text()))
    for table in layout.NEIGHBOUR_TABLES:  # item-kNN and EASE made on Spark; the rest local
        if (paths["local"] / table.folder).exists():
            got, expected = (Neighbours.load(paths[e] / table.folder) for e in ("spark", "local"))
            np.testing.assert_array_equal(got.ids, expected.ids, err_msg=table.folder)
            np.testing.assert_array_equal(got.support, expected.support, err_msg=table.folder)
            np.testing.assert_allclose(got.scores, expected.scores, rtol=1e-5, err_msg=table.folder)
    # customer value: the lines aggregated on Spark, the fits on the driver (test_spark_clv)
    _assert_same_figures(spark.metrics["customer_value"], local.metrics["customer_value"],
                         "customer_value")
    clv = {e: layout.CLV_REPORT.at(paths[e]).parent for e in paths}
    # recommendations and win-back offers rank by the models job's ALS factors, which MLlib
    # and implicit make differently: everything else must agree
    for name in set(OUTPUT_FILES) - {layout.CUSTOMER_RECOMMENDATIONS.name}:
        if name.endswith(".parquet"):
            got, expected = (pd.read_parquet(clv[e] / name) for e in ("spark", "local"))
            if name == layout.WINBACK.name:
                got, expected = (t.loc[:, ~t.columns.str.startswith("offer_")]
                                 for t in (got, expected))
            pd.testing.assert_frame_equal(got, expected, check_exact=False, rtol=RTOL,
                                          atol=1e-12, obj=name)
    report = {e: json.loads((paths[e] / "ingest_report.json").read_text()) for e in paths}
    for engine, body in report.items():
        body.pop("created_at")
        for table in body["tables"].values():  # each engine read its own copy of the shop
            table["source"] = table["source"].replace(str(built[engine]), "TMP")
    assert report["spark"] == report["local"]


@pytest.mark.parametrize("path", [
    "/v1/items/mug/bought-together?k=5", "/v1/items/tea/also-viewed?k=5",
    "/v1/popular?k=5", "/v1/popular?k=5&category=Home", "/v1/items/mug/bundles?k=5",
    "/v1/customers/c1/recommendations?k=5",
])
def test_served_lists_equal_the_local_engines(built: dict[str, Path], small: TestClient,
                                              path: str) -> None:
    config = load_config(built["local"] / "recsys.toml")
    key = {"X-API-Key": config.serving_settings().api_key}  # the shop's backend: every list
    with TestClient(create_app(config.serving_settings())) as local:
        expected = local.get(path, headers=key)
    assert isinstance(small.app, FastAPI)
    got = small.get(path, headers={"X-API-Key": small.app.state.serving.settings.api_key})
    assert got.status_code == expected.status_code == 200, got.text
    ignore = {"request_id", "model_version"}
    assert ({k: v for k, v in got.json().items() if k not in ignore}
            == {k: v for k, v in expected.json().items() if k not in ignore})
