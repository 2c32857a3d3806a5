"""Upsell (issue 15 item 1): the "viewed A, bought B instead" counts of the models job and
``GET /v1/items/{id}/upsell`` over the demo artifact."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from recsys import layout
from recsys.app import create_app
from recsys.artifacts import ArtifactStore, load_parquet
from recsys.config import ServingSettings
from recsys.models.upsell import viewed_then_bought
from recsys.serving.index import load_index
from recsys.vocab import Vocabulary

KEY = {"X-API-Key": "test-admin-key-0123"}


def test_viewed_then_bought_counts_sessions_exactly() -> None:
    items = Vocabulary(["A", "B", "C", "D"])
    rows = [("s1", "A", "view"), ("s1", "B", "view"), ("s1", "B", "purchase"),
            ("s2", "A", "view"), ("s2", "A", "view"), ("s2", "B", "purchase"),
            ("s2", "C", "purchase"), ("s3", "A", "view"), ("s3", "C", "view"),  # no purchase
            ("s4", "A", "view"), ("s4", "A", "purchase"), ("s4", "D", "purchase"),  # bought A
            ("s5", "C", "view"), ("s5", "X", "purchase")]  # X: not in the vocabulary
    events = pd.DataFrame(rows, columns=["session_id", "product_id", "event_type"]).assign(
        occurred_at=pd.Timestamp("2024-01-01"))
    got = viewed_then_bought(events, items, top_k=5)
    assert got.values.tolist() == [["A", "B", 2], ["A", "C", 1]]
    assert viewed_then_bought(events, items, top_k=1).values.tolist() == [["A", "B", 2]]
    # A's own category first: C (kitchen, 1 session) is kept before B (2 sessions) at top_k 1
    kitchen = viewed_then_bought(events, items, top_k=1, categories=np.array([0, 1, 0, -1]))
    assert kitchen.values.tolist() == [["A", "C", 1]]
    both = viewed_then_bought(events, items, top_k=5, categories=np.array([0, 1, 0, -1]))
    assert both.values.tolist() == [["A", "B", 2], ["A", "C", 1]]  # rows by sessions
    empty = viewed_then_bought(None, items, top_k=5)
    assert empty.empty and list(empty.dtypes.astype(str)) == ["string", "string", "int64"]


@pytest.fixture(scope="module")
def client(demo_artifact: Path, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[TestClient]:
    db = tmp_path_factory.mktemp("upsell") / "recsys.db"
    settings = ServingSettings(artifacts=str(demo_artifact), api_key=KEY["X-API-Key"],
                               database_url=f"sqlite:///{db}", decisions_refresh_s=0,
                               reload_interval_s=0)
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def index(demo_artifact: Path) -> Any:
    return load_index(demo_artifact)


@pytest.fixture(scope="module")
def seed(index: Any) -> str:
    """A product with at least three priced alternatives shoppers bought instead."""
    for code, (ids, _counts) in index.bought_instead.items():
        pid = index.ids[code]
        price = index.prices.get(pid)
        cat = index.categories.get(pid)
        if price is None or cat is None:
            continue
        fits = [c for c in ids.tolist() if index.categories.get(index.ids[c]) == cat and
                1.1 * price <= index.prices.get(index.ids[c], 0) <= 2 * price and
                index.ids[c] in index.available]
        if len(fits) >= 3:
            return pid
    raise AssertionError("the demo shop has no product with three upsell alternatives")


def upsell(client: TestClient, product_id: str, **params: Any) -> dict[str, Any]:
    response = client.get(f"/v1/items/{product_id}/upsell", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_the_job_writes_a_declared_table(demo_artifact: Path) -> None:
    folder = ArtifactStore(demo_artifact).path(ArtifactStore(demo_artifact).current_version())
    table = load_parquet(layout.VIEWED_BOUGHT.at(folder))
    assert len(table) and (table["sessions"] > 0).all()
    assert (table["product_a"] != table["product_b"]).all()
    assert layout.check_file(folder, layout.VIEWED_BOUGHT) == []


def test_upsell_is_pricier_in_band_in_stock_and_ranked_by_bought_instead(
        client: TestClient, index: Any, seed: str) -> None:
    body = upsell(client, seed, k=10)
    price, category = index.prices[seed], index.categories[seed]
    substitutes = {index.ids[c] for c in index.substitutes.get(index.code_of[seed], ())}
    assert body["items"] and body["fallback"] is None
    assert index.upsell_prior.products > 0  # the job fitted the prior on the demo's evidence
    scores = []
    for item in body["items"]:
        pid = item["product_id"]
        assert 1.1 * price <= item["price"] <= 2 * price
        assert item["category"] == category or pid in substitutes
        assert pid in index.available and pid != seed
        evidence = item["reason"]["evidence"]
        assert item["reason"]["source"] == "upsell"
        assert evidence["price_difference"] == round(item["price"] - price, 2)
        score = evidence.get("viewed_then_bought", 0) + (
            index.upsell_prior.prior_sessions * evidence["prior"])
        assert item["score"] == pytest.approx(score, abs=1e-3)  # the prior is rounded
        scores.append(item["score"])
    assert scores == sorted(scores, reverse=True)
    ids, n = index.bought_instead[index.code_of[seed]]
    listed = {x["product_id"]: x["reason"]["evidence"].get("viewed_then_bought", 0)
              for x in body["items"]}
    assert all(listed[index.ids[i]] == c for i, c in zip(ids.tolist(), n.tolist(), strict=True)
               if index.ids[i] in listed)


def test_merchandiser_decisions_apply(client: TestClient, seed: str) -> None:
    first = upsell(client, seed)["items"]
    top, other = first[0]["product_id"], first[-1]["product_id"]
    made = []
    for body in ({"kind": "block_product", "product_id": top},
                 {"kind": "pin", "seed_id": seed, "product_id": other, "position": 1}):
        response = client.post("/admin/decisions", json=body, headers=KEY)
        assert response.status_code == 201, response.text
        made.append(response.json()["id"])
    try:
        after = upsell(client, seed)
        listed = [item["product_id"] for item in after["items"]]
        assert top not in listed and listed[0] == other
        assert "blocked_product:1" in after["applied"] and f"pinned:{other}@1" in after["applied"]
    finally:
        for decision in made:
            client.delete(f"/admin/decisions/{decision}", headers=KEY)


def test_no_filler_and_clear_fallbacks(client: TestClient, index: Any) -> None:
    dearest = max(index.prices, key=lambda p: index.prices[p])
    body = upsell(client, dearest)
    assert all(item["price"] >= 1.1 * index.prices[dearest] for item in body["items"])
    if not body["items"]:
        assert body["fallback"] == "no_upsell"
    unknown = upsell(client, "NO-SUCH-PRODUCT")
    assert unknown["items"] == [] and unknown["fallback"] == "no_price"
    assert client.get("/v1/items/P1/upsell", params={"k": 0}).status_code == 422


def test_the_band_is_configurable_and_checked() -> None:
    assert ServingSettings().upsell_band == (1.1, 2.0)
    assert ServingSettings(upsell_band=(1.0, 1.5)).upsell_band == (1.0, 1.5)
    with pytest.raises(ValidationError, match="upsell_band"):
        ServingSettings(upsell_band=(2.0, 1.5))
