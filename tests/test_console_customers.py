"""The console's customer pages (issue 15 item 6): dashboard, a customer's page and the
action lists as CSV, for signed-in viewers."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from recsys import layout
from recsys.app import create_app
from recsys.artifacts import ArtifactStore
from recsys.config import ServingSettings
from recsys.console.passwords import hash_password
from recsys.console.session import COOKIE

KEY = "test-admin-key-console-customers"
PASSWORD = "viewer-password-123"


@pytest.fixture(scope="module")
def viewer(demo_artifact: Path, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[TestClient]:
    db = tmp_path_factory.mktemp("console_customers") / "recsys.db"
    app = create_app(ServingSettings(artifacts=str(demo_artifact), api_key=KEY,
                                     database_url=f"sqlite:///{db}", reload_interval_s=0))
    with TestClient(app) as client:
        app.state.serving.store.add_user("vic", hash_password(PASSWORD), "viewer")
        client.get("/console/login")
        token = app.state.console.codec.loads(client.cookies.get(COOKIE))
        assert token is not None
        response = client.post("/console/login", follow_redirects=False, data={
            "username": "vic", "password": PASSWORD, "csrf_token": token.csrf})
        assert response.status_code == 303, response.text
        yield client


def _folder(demo_artifact: Path) -> Path:
    return ArtifactStore(demo_artifact).path()


def test_the_dashboard_shows_every_part(viewer: TestClient, demo_artifact: Path) -> None:
    response = viewer.get("/console/customers")
    assert response.status_code == 200, response.text
    text = response.text
    for part in ('id="clv"', 'id="segments"', 'id="stages"', 'id="flows"', 'id="cohorts"',
                 'id="pricing"', 'id="actions"'):
        assert part in text, part
    customers = pd.read_parquet(layout.CLV_CUSTOMERS.at(_folder(demo_artifact)))
    assert f"{len(customers):,} with orders" in text
    for segment in pd.read_parquet(layout.RFM_SEGMENTS.at(_folder(demo_artifact)))["segment"]:
        assert f"<td>{segment}</td>" in text
    assert '/console/customers/actions/winback.csv' in text


def test_a_customer_page(viewer: TestClient, demo_artifact: Path) -> None:
    stages = pd.read_parquet(layout.LIFECYCLE.at(_folder(demo_artifact)))
    customer, stage = str(stages["customer_id"][0]), str(stages["stage"][0])
    text = viewer.get("/console/customers/view", params={"id": customer}).text
    assert customer in text and f"<dd>{stage}</dd>" in text
    assert 'id="recommended"' in text and 'id="history"' in text
    assert "none known" not in text  # a customer with a lifecycle stage has purchases
    missing = viewer.get("/console/customers/view", params={"id": "NOBODY-1"})
    assert missing.status_code == 404


def test_action_lists_export_as_csv(viewer: TestClient, demo_artifact: Path) -> None:
    response = viewer.get("/console/customers/actions/high_value.csv")
    assert response.status_code == 200 and response.headers["content-type"].startswith(
        "text/csv")
    exported = pd.read_csv(io.StringIO(response.text), dtype={"customer_id": str})
    stored = pd.read_parquet(layout.HIGH_VALUE.at(_folder(demo_artifact)))
    assert exported["customer_id"].tolist() == stored["customer_id"].astype(str).tolist()
    winback = viewer.get("/console/customers/actions/winback.csv")
    assert winback.status_code == 200
    assert viewer.get("/console/customers/actions/nope.csv").status_code == 400  # the console answers bad input 400


def test_signed_out_visitors_are_sent_to_sign_in(demo_artifact: Path, tmp_path: Path) -> None:
    app = create_app(ServingSettings(artifacts=str(demo_artifact), api_key=KEY,
                                     database_url=f"sqlite:///{tmp_path / 'db.sqlite'}",
                                     reload_interval_s=0))
    with TestClient(app) as client:
        response = client.get("/console/customers", follow_redirects=False)
        assert response.status_code in (303, 401), response.status_code
        assert "customer_id" not in response.text


def test_the_cohort_heatmap_needs_no_inline_style(viewer: TestClient) -> None:
    text = viewer.get("/console/customers").text
    assert "style=" not in text and "heat-10" in text  # month 0 is 100% (the CSP: no inline)
