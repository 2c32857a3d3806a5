"""A/B test arms in the API: deterministic, balanced, the control arm gets best sellers, and
every response says its arm."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from scipy.stats import chisquare

from recsys.analytics.experiments import assign_arm
from recsys.app import create_app
from recsys.cli import main
from recsys.config import load_config
from tests.conftest import write_small_config


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    tmp = tmp_path_factory.mktemp("ab")
    config_path = write_small_config(tmp)
    with config_path.open("a") as fh:
        # no co-purchase of a 5-order shop is significant: without the test the treated arm's
        # list is the engine's own, told apart from the control arm's best sellers
        fh.write("ab_test = true\n[serving.placements.bought_together]\nmax_p_value = 1.0\n")
    assert main(["-q", "run", "--config", str(config_path)]) == 0
    settings = load_config(config_path).serving_settings()
    assert settings.ab_test and settings.experiment.salt == "recsys-ab-1"
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def _arm_of(customer: str) -> str:
    return assign_arm(f"c:{customer}", salt="recsys-ab-1",
                      split={"control": 0.5, "recommendations": 0.5})


def test_arm_is_deterministic_and_in_every_response(client: TestClient) -> None:
    for customer in ("c1", "c2", "c3", "someone"):
        first = client.get("/v1/items/mug/bought-together", params={"customer_id": customer})
        again = client.get("/v1/items/mug/bought-together", params={"customer_id": customer})
        assert first.json()["arm"] == again.json()["arm"] == _arm_of(customer)
    cart = client.post("/v1/cart/add-ons", json={"items": [{"product_id": "mug"}],
                                                 "customer_id": "c1"}).json()
    assert cart["arm"] == _arm_of("c1")
    assert client.get("/v1/items/mug/bought-together").json()["arm"] is None  # no shopper id
    assert "arm" in client.get("/v1/items/mug/bundles", params={"session_id": "s1"}).json()


def test_control_arm_gets_best_sellers(client: TestClient) -> None:
    customers = [f"u{i}" for i in range(40)]
    control = next(c for c in customers if _arm_of(c) == "control")
    treated = next(c for c in customers if _arm_of(c) == "recommendations")
    body = client.get("/v1/items/mug/bought-together", params={"customer_id": control}).json()
    assert {i["reason"]["source"] for i in body["items"]} == {"popular"}
    body = client.get("/v1/items/mug/bought-together", params={"customer_id": treated}).json()
    assert body["items"][0]["reason"]["source"] != "popular"


def test_assignment_is_balanced() -> None:
    arms = Counter(_arm_of(f"customer-{i}") for i in range(20_000))
    assert chisquare([arms["control"], arms["recommendations"]]).pvalue > 0.001


def test_ab_test_is_off_by_default(tmp_path: Path) -> None:
    assert not load_config(write_small_config(tmp_path)).serving_settings().ab_test
