"""``GET /v1/customers/{id}/profile`` (issue 15 item 6): stage, segment and value, server key
only."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from recsys import layout
from recsys.app import create_app
from recsys.artifacts import ArtifactStore
from recsys.config import ServingSettings

KEY = {"X-API-Key": "test-admin-key-profile"}


@pytest.fixture(scope="module")
def client(demo_artifact: Path, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[TestClient]:
    db = tmp_path_factory.mktemp("profile") / "recsys.db"
    settings = ServingSettings(artifacts=str(demo_artifact), api_key=KEY["X-API-Key"],
                               database_url=f"sqlite:///{db}", reload_interval_s=0)
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def test_profile_gives_stage_segment_and_value(client: TestClient, demo_artifact: Path) -> None:
    folder = ArtifactStore(demo_artifact).path()
    customers = pd.read_parquet(layout.CLV_CUSTOMERS.at(folder)).set_index("customer_id")
    stages = pd.read_parquet(layout.LIFECYCLE.at(folder)).set_index("customer_id")["stage"]
    customer = str(customers.index[0])
    response = client.get(f"/v1/customers/{customer}/profile", headers=KEY)
    assert response.status_code == 200, response.text
    body = response.json()
    row = customers.loc[customer]
    assert body["customer_id"] == customer and body["stage"] == stages[customer]
    assert body["segment"] == row["segment"] and body["orders"] == row["orders"]
    assert body["historical_clv"] == pytest.approx(row["historical_clv"])
    assert body["churn_risk"] == bool(row["churn_risk"]) and body["discount_only"] is False
    assert body["last_order"] == row["last_order"].isoformat()


def test_profile_needs_the_server_key_and_a_known_customer(client: TestClient) -> None:
    assert client.get("/v1/customers/C000001/profile").status_code == 401
    assert client.get("/v1/customers/C000001/profile",
                      headers={"X-API-Key": "wrong-key-123"}).status_code == 401
    unknown = client.get("/v1/customers/NOBODY-1/profile", headers=KEY)
    assert unknown.status_code == 404 and "NOBODY-1" in unknown.text
    bad = client.get("/v1/customers/" + "x" * 129 + "/profile", headers=KEY)
    assert bad.status_code == 422
