"""Content similarity (catalogue TF-IDF), similar items and catalogue updates without a
retrain (``POST /admin/catalog``)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from recsys.app import create_app
from recsys.config import load_config
from recsys.models.content import ContentModel, features
from recsys.pipeline import run_pipeline
from recsys.vocab import Vocabulary
from tests.conftest import write_small_config

ADMIN = {"X-API-Key": "change-me"}
CATALOG = pd.DataFrame({
    "product_id": ["a", "b", "c", "d"],
    "name": ["Red cotton shirt", "Blue cotton shirt", "Garden hose 20m", None],
    "category": ["Apparel > Shirts", "Apparel > Shirts", "Garden > Tools", "Garden"],
    "brand": ["Acme", "Acme", None, ""], "price": [20.0, 22.0, 35.0, None]})


def test_features_are_tokens_category_prefixes_brand_and_price_band() -> None:
    rows, terms = features(CATALOG)
    by_row = {r: sorted(terms[rows == r].tolist()) for r in range(4)}
    assert by_row[0] == ["b:acme", "c:apparel", "c:apparel > shirts", "p:8", "w:cotton",
                         "w:red", "w:shirt"]
    assert by_row[3] == ["c:garden"]  # no name, blank brand, no price


def test_tfidf_neighbours_have_a_known_answer() -> None:
    items = Vocabulary.from_ids(pd.Series(["a", "b", "c", "d", "e"]), sort=True)
    model = ContentModel.fit(CATALOG, items)
    vectors = model.vectors.toarray()
    assert np.allclose(np.linalg.norm(vectors[:4], axis=1), 1.0)
    assert not vectors[4].any()  # "e" has no catalogue row
    idf = dict(zip(model.terms.tolist(), model.idf.tolist(), strict=True))
    assert idf["c:garden"] == pytest.approx(np.log(5 / 3) + 1)  # 4 rows, df 2
    table = model.similar(model.vectors, 3, first_code=0)
    assert table.ids[:, 0].tolist() == [1, 0, 3, 2, -1]
    # a and b share 6 of their 7 features; each row is (idf-weighted) unit length
    a, b = vectors[0], vectors[1]
    assert table.scores[0, 0] == pytest.approx(float(a @ b), rel=1e-5)
    assert table.support[0, 0] == 6 and table.support[2, 0] == 1
    assert (table.ids[:, 1:] == -1).all()  # nothing else shares a feature
    new = model.transform(pd.DataFrame({"product_id": ["x"], "name": ["green cotton shirt"],
                                        "category": ["Apparel > Shirts"], "price": [25.0]}))
    found = model.similar(new, 3)
    assert sorted(found.ids[0, :2].tolist()) == [0, 1] and found.ids[0, 2] == -1


@pytest.fixture
def small_app(tmp_path: Path) -> Iterator[tuple[TestClient, Path]]:
    config = load_config(write_small_config(tmp_path))
    run_pipeline(config, show_progress=False)
    with TestClient(create_app(config.serving_settings())) as client:
        yield client, tmp_path


def _list(client: TestClient, product: str, kind: str, **params: Any) -> dict[str, Any]:
    response = client.get(f"/v1/items/{product}/{kind}", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def test_the_run_writes_content_neighbours_and_similar_serves_them(
        small_app: tuple[TestClient, Path]) -> None:
    client, _ = small_app
    body = _list(client, "pot", "similar", k=3)
    first = body["items"][0]
    # pot (Tea Pot, Home > Kitchen) is closest to the spoon (Tea Spoon, Home > Kitchen)
    assert first["product_id"] == "spoon" and first["reason"]["source"] == "content"
    assert first["reason"]["evidence"]["shared_features"] >= 3


def test_a_product_added_by_the_admin_call_gets_similar_and_also_viewed(
        small_app: tuple[TestClient, Path]) -> None:
    client, _ = small_app
    row = {"product_id": "cup", "name": "Ceramic Cup", "category": "Home > Kitchen > Mugs",
           "price": 9.0}
    assert client.post("/admin/catalog", json=[row]).status_code == 401
    answer = client.post("/admin/catalog", json=[row], headers=ADMIN)
    assert answer.status_code == 200, answer.text
    assert answer.json()["added"] == 1 and answer.json()["pending"] == 1
    items = _list(client, "cup", "similar", k=3)["items"]
    assert items[0]["product_id"] == "mug"
    assert items[0]["reason"]["source"] == "content"
    assert items[0]["reason"]["evidence"]["shared_features"] >= 4  # ceramic, 2 categories..
    # also viewed: what the mug's viewers also viewed (no co-view data of its own), then
    # its content neighbours
    mug_viewed = _list(client, "mug", "also-viewed", k=1)["items"][0]["product_id"]
    items = _list(client, "cup", "also-viewed", k=20)["items"]
    assert items[0]["product_id"] == mug_viewed
    assert items[0]["reason"]["source"] == "content_co_viewed"
    assert items[0]["reason"]["evidence"]["via"] == "mug"
    assert "mug" in {i["product_id"] for i in items}
    assert client.get("/v1/items/cup/similar").json()["items"][0]["name"] == "Ceramic Mug"
    # the new product is shown with its catalogue fields wherever it is listed
    client.post("/admin/catalog", json=[{"product_id": "mug", "in_stock": False}],
                headers=ADMIN)
    assert "mug" not in {i["product_id"] for i in _list(client, "cup", "similar")["items"]}


def test_an_out_of_stock_update_removes_a_product_at_once_and_survives_a_reload(
        small_app: tuple[TestClient, Path]) -> None:
    client, tmp = small_app
    assert "mug" in {i["product_id"] for i in _list(client, "tea", "also-viewed")["items"]}
    answer = client.post("/admin/catalog", headers=ADMIN, json=[
        {"product_id": "mug", "in_stock": False}, {"product_id": "tea", "price": 5.5}])
    assert answer.status_code == 200 and answer.json()["unavailable"] == 1
    for kind in ("also-viewed", "bought-together", "similar"):
        assert "mug" not in {i["product_id"] for i in _list(client, "tea", kind)["items"]}
    run_pipeline(load_config(tmp / "recsys.toml"), show_progress=False)  # a new version
    assert client.post("/admin/reload", headers=ADMIN).status_code == 200
    assert "mug" not in {i["product_id"] for i in _list(client, "tea", "also-viewed")["items"]}
    assert _list(client, "mug", "similar")["items"][0]["product_id"] != "mug"
    assert client.get("/v1/items/spoon/similar", params={"k": 5}).status_code == 200
    tea = [i for i in _list(client, "mug", "bought-together")["items"]
           if i["product_id"] == "tea"]
    assert tea and tea[0]["price"] == 5.5


@pytest.mark.parametrize("body, where", [
    ([{"product_id": "x", "price": -1}], "price"),
    ([{"product_id": "x", "margin": 2}], "margin"),
    ([{"name": "no id"}], "product_id"),
    ([{"product_id": "x", "colour": "red"}], "colour"),
    ([], "body"),
    ({"product_id": "x"}, "body"),
])
def test_bad_catalogue_rows_are_refused_with_where(small_app: tuple[TestClient, Path],
                                                   body: Any, where: str) -> None:
    client, _ = small_app
    answer = client.post("/admin/catalog", json=body, headers=ADMIN)
    assert answer.status_code == 422
    assert where in answer.text


def test_duplicate_rows_are_refused(small_app: tuple[TestClient, Path]) -> None:
    client, _ = small_app
    answer = client.post("/admin/catalog", headers=ADMIN, json=[
        {"product_id": "x", "price": 1}, {"product_id": "x", "price": 2}])
    assert answer.status_code == 422 and "duplicate_product_id" in answer.text


def test_every_worker_applies_the_watched_catalogue_file(tmp_path: Path) -> None:
    config = load_config(write_small_config(tmp_path))
    run_pipeline(config, show_progress=False)
    updates = tmp_path / "updates.csv"
    updates.write_text("product_id,name,category,price\n"
                       "cup,Ceramic Cup,Home > Kitchen > Mugs,9\n"
                       "bad,Broken,Home,-3\n")  # refused (negative_price), the rest applies
    settings = config.serving_settings().model_copy(update={"catalog_watch": str(updates)})
    with TestClient(create_app(settings)) as first, TestClient(create_app(settings)) as second:
        for client in (first, second):
            assert _list(client, "cup", "similar")["items"][0]["product_id"] == "mug"
            assert _list(client, "tea", "also-viewed")["items"][0]["product_id"] == "mug"
        updates.write_text("product_id,in_stock\nmug,false\n")
        for client in (first, second):
            for _ in range(100):  # the watcher polls every reload_interval_s (0.2 s here)
                if "mug" not in {i["product_id"] for i in _list(client, "tea",
                                                                 "also-viewed")["items"]}:
                    break
                time.sleep(0.1)
            else:
                raise AssertionError("the out-of-stock update never reached a worker")
            assert isinstance(client.app, FastAPI)
            assert "cup" in client.app.state.serving.index.names  # earlier rows stay
