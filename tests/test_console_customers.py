"""The console's customer pages (issue 15 item 6): dashboard, a customer's page and the
action lists as CSV, for signed-in viewers."""

from __future__ import annotations

import io
import re
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
from recsys.serving.service import UPSELL_SEEDS

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


def _listed(text: str, list_id: str) -> list[str]:
    """The product ids of the page's list ``list_id``, in order."""
    found = re.search(rf'<ol class="api" id="{list_id}">(.*?)</ol>', text, re.S)
    assert found is not None, list_id
    return re.findall(r'<li data-product="([^"]+)"', found.group(1))


def _api(client: TestClient, path: str, **params: object) -> list[str]:
    response = client.get(path, params=params, headers={"X-API-Key": KEY})
    assert response.status_code == 200, response.text
    return [item["product_id"] for item in response.json()["items"]]


def test_the_customer_page_shows_what_each_list_would_show(viewer: TestClient,
                                                           demo_artifact: Path) -> None:
    folder = _folder(demo_artifact)
    due = pd.read_parquet(layout.REPLENISHMENT.at(folder))
    high = pd.read_parquet(layout.HIGH_VALUE.at(folder))
    customer = str(due["customer_id"].value_counts().index[0])  # the most due products
    text = viewer.get("/console/customers/view", params={"id": customer}).text
    assert _listed(text, "recommended") == _api(
        viewer, f"/v1/customers/{customer}/recommendations", k=10)
    assert _listed(text, "replenishment") == due.loc[due["customer_id"] == customer,
                                                     "product_id"].astype(str).tolist()
    history = re.findall(r'<td><a href="[^"]*product\?id=([^"&]+)"',
                         text.split('id="history"')[1])
    seeds = re.findall(r'data-seed="([^"]+)"', text)
    assert seeds == history[:UPSELL_SEEDS] and seeds
    for seed in seeds:
        shown = re.search(rf'data-seed="{seed}">(.*?)</ol>', text, re.S)
        assert shown is not None
        assert re.findall(r'data-product="([^"]+)"', shown.group(1)) == _api(
            viewer, f"/v1/items/{seed}/upsell", k=5, customer_id=customer)
    ranked = high.set_index(high["customer_id"].astype(str))
    assert (f"rank {ranked.loc[customer, 'rank']} " in text if customer in ranked.index
            else "not in the high-value list" in text)
    assert 'id="recent"' in text and 'id="winback"' in text


def test_the_customer_page_shows_their_winback_offer(viewer: TestClient,
                                                     demo_artifact: Path) -> None:
    winback = pd.read_parquet(layout.WINBACK.at(_folder(demo_artifact)))
    assert len(winback), "the demo shop has customers to win back"
    row = winback.iloc[0]
    offers = [str(row[c]) for c in sorted((c for c in winback.columns if c.startswith("offer_")),
                                          key=lambda c: int(c[6:])) if pd.notna(row[c])]
    text = viewer.get("/console/customers/view", params={"id": str(row["customer_id"])}).text
    shown = text.split('<div id="winback">')[1].split("</div>")[0]
    assert re.findall(r'data-product="([^"]+)"', shown) == offers and offers
    assert f"predicted CLV {row['predicted_clv']:.2f}" in shown
    first_due = pd.read_parquet(layout.REPLENISHMENT.at(_folder(demo_artifact)))
    nobody = set(winback["customer_id"].astype(str)) | set(first_due["customer_id"].astype(str))
    other = next(c for c in pd.read_parquet(layout.LIFECYCLE.at(_folder(demo_artifact)))[
        "customer_id"].astype(str) if c not in nobody)
    text = viewer.get("/console/customers/view", params={"id": other}).text
    assert "not in the win-back list" in text and _listed(text, "replenishment") == []


def test_blocked_products_leave_replenishment_lists(viewer: TestClient,
                                                   demo_artifact: Path) -> None:
    """A merchandiser's block after the nightly job: the page and the CSV leave the product
    out (the job itself already left out what its catalog marked unavailable)."""
    due = pd.read_parquet(layout.REPLENISHMENT.at(_folder(demo_artifact)))
    customer = str(due["customer_id"].value_counts().index[0])
    product = str(due.loc[due["customer_id"] == customer, "product_id"].iloc[0])
    store = viewer.app.state.serving.store  # type: ignore[attr-defined]
    decision = store.add_decision("block_product", product_id=product, created_by="test")
    try:
        store.invalidate()
        text = viewer.get("/console/customers/view", params={"id": customer}).text
        assert product not in _listed(text, "replenishment")
        response = viewer.get("/console/customers/actions/replenishment.csv")
        exported = pd.read_csv(io.StringIO(response.text), dtype=str)
        assert product not in set(exported["product_id"])
        assert len(exported) == int((due["product_id"].astype(str) != product).sum())
    finally:
        store.deactivate_decision(decision, by="test")
        store.invalidate()
    exported = pd.read_csv(io.StringIO(viewer.get(
        "/console/customers/actions/replenishment.csv").text), dtype=str)
    assert len(exported) == len(due)


def test_the_job_leaves_unavailable_products_out_of_replenishment(demo_artifact: Path) -> None:
    folder = _folder(demo_artifact)
    due = pd.read_parquet(layout.REPLENISHMENT.at(folder))
    catalog = pd.read_parquet(layout.CATALOG.at(folder))
    gone = catalog.loc[~(catalog["in_stock"].astype(bool) & catalog["is_active"].astype(bool)),
                       "product_id"].astype(str)
    cycles = pd.read_parquet(layout.REPURCHASE.at(folder))
    assert set(gone) & set(cycles["product_id"].astype(str))  # consumables the job must drop
    assert len(due) and not set(due["product_id"].astype(str)) & set(gone)
