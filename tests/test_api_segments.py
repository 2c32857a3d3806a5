"""Customer segments in business rules: at-risk customers get due replenishment, then best
sellers, then their ALS list; other segments their ALS list."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from recsys.app import create_app
from recsys.config import DEFAULT_API_KEY
from tests.conftest import demo_settings

SERVER = {"X-API-Key": DEFAULT_API_KEY}  # customer lists need the server key


@pytest.fixture(scope="module")
def client(demo_artifact: Path, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[TestClient]:
    settings = demo_settings(demo_artifact, tmp_path_factory.mktemp("segments"),
                             best_sellers_first_segments=["at_risk"])
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def _segments(client: TestClient) -> dict[str, str]:
    state = client.app.state.serving  # type: ignore[attr-defined]
    return state.index.segments


def test_at_risk_customers_get_best_sellers_before_als(client: TestClient) -> None:
    segments = _segments(client)
    at_risk = [c for c, s in segments.items() if s == "at_risk"][:5]
    assert at_risk
    for customer in at_risk:
        body = client.get(f"/v1/customers/{customer}/recommendations", params={"k": 8},
                          headers=SERVER).json()
        assert "segment:at_risk" in body["applied"]
        sources = [item["reason"]["source"] for item in body["items"]]
        assert "popular" in sources
        # due consumables, best sellers, their other repeat purchases, then ALS
        tiers = [{"replenishment": 0 if item["reason"]["evidence"].get("due") else 2,
                  "popular": 1, "als": 3}[item["reason"]["source"]] for item in body["items"]]
        assert tiers == sorted(tiers)


def test_other_segments_get_their_personal_list(client: TestClient) -> None:
    champions = [c for c, s in _segments(client).items() if s == "champions"][:3]
    assert champions
    for customer in champions:
        body = client.get(f"/v1/customers/{customer}/recommendations", headers=SERVER).json()
        assert not any(a.startswith("segment:") for a in body["applied"])
        for item in body["items"]:
            assert item["reason"]["source"] in {"replenishment", "als", "popular"}
            if item["reason"]["source"] == "popular":  # too little history for ALS alone
                assert item["reason"]["evidence"]["history_items"] < 10
