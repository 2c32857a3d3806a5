"""The fast path answers exactly what the FastAPI routes answer: the same requests, valid and
invalid, sent to the app with and without it give the same status and body (but the
request id), with decisions, A/B arms and CORS in force."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recsys.app import create_app
from recsys.config import ServingSettings
from recsys.serving.fastpath import FastPath
from recsys.serving.params import (
    BUNDLES,
    CART,
    CUSTOMER_LIST,
    ITEM_LIST,
    POPULAR,
    UPSELL,
    Endpoint,
)
from tests.conftest import demo_settings
from tests.test_api import API_KEY

ORIGIN = "https://shop.example"


@pytest.fixture(scope="module")
def clients(demo_artifact: Path, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[tuple[TestClient, TestClient]]:
    tested = demo_settings(demo_artifact, tmp_path_factory.mktemp("fastpath"), api_key=API_KEY,
                           ab_test=True, cors_origins=[ORIGIN])
    with TestClient(create_app(tested)) as fast, \
            TestClient(create_app(tested, fast_path=False)) as routed:
        index = fast.app.state.serving.index  # type: ignore[attr-defined]
        top = [p for p, _ in index.popular["*"][:3]]
        # decisions in force for both (one database): a blocked product and rule, a pin
        for decision in ({"kind": "block_product", "product_id": top[2]},
                         {"kind": "block_rule", "rule_key": f"{top[0]}->{top[1]}"},
                         {"kind": "pin", "seed_id": top[1], "product_id": top[2],
                          "position": 2}):
            assert fast.post("/admin/decisions", json=decision,
                             headers={"X-API-Key": API_KEY}).status_code == 201
        yield fast, routed


def _same(fast: TestClient, routed: TestClient, method: str, url: str,
          **kwargs: Any) -> int:
    """Send to both; the answers must be equal but for the request id. Returns the status."""
    headers = {"Origin": ORIGIN, **kwargs.pop("headers", {})}
    a = fast.request(method, url, headers=headers, **kwargs)
    b = routed.request(method, url, headers=headers, **kwargs)
    assert a.status_code == b.status_code, (url, a.text, b.text)
    assert a.headers.get("access-control-allow-origin") == b.headers.get(
        "access-control-allow-origin")
    assert a.headers["content-type"] == b.headers["content-type"]
    body_a, body_b = a.json(), b.json()
    if isinstance(body_a, dict) and "request_id" in body_a:
        assert body_a.pop("request_id") == a.headers["x-request-id"]
        body_b.pop("request_id")
    assert body_a == body_b, url
    return a.status_code


def _products(client: TestClient) -> list[str]:
    index = client.app.state.serving.index  # type: ignore[attr-defined]
    return [p for p, _ in index.popular["*"][:12]] + ["NOT-A-PRODUCT"]


@pytest.mark.parametrize("kind", ["also-viewed", "bought-together"])
@pytest.mark.parametrize("query", [
    "", "k=5", "k=100", "k=0", "k=101", "k=abc", "k=05", "k=1&k=2", "k=", "k=1.0",
    "category=Home", "category=Nope", "category=", "category=" + "x" * 257, "in_stock_only=false",
    "in_stock_only=0", "in_stock_only=yes", "in_stock_only=maybe", "exclude=P00001&exclude=P00002",
    "exclude=", "exclude=%01", "customer_id=C000001", "customer_id=%7F", "session_id=s-1",
    "customer_id=C000001&customer_id=C000002", "unknown=1", "rank_by=value"])
def test_item_lists_are_the_routes_answers(clients: tuple[TestClient, TestClient], kind: str,
                                           query: str) -> None:
    fast, routed = clients
    for product in _products(fast)[:4] + ["NOT-A-PRODUCT"]:
        _same(fast, routed, "GET", f"/v1/items/{product}/{kind}?{query}")


def test_odd_product_ids_go_to_the_route(clients: tuple[TestClient, TestClient]) -> None:
    fast, routed = clients
    for product in ["%01", "x" * 128, "x" * 129, "%C3%A9t%C3%A9", "a%20b", "%7F"]:
        _same(fast, routed, "GET", f"/v1/items/{product}/bought-together")


@pytest.mark.parametrize("query", ["", "k=3", "k=0", "rank_by=value", "rank_by=best",
                                   "in_stock_only=false", "exclude=P00001", "category=Home",
                                   "category=Nope"])
def test_cart_add_ons_are_the_routes_answers(clients: tuple[TestClient, TestClient],
                                             query: str) -> None:
    fast, routed = clients
    products = _products(fast)
    bodies: list[Any] = [
        {"items": [{"product_id": p, "quantity": 1} for p in products[:3]]},
        {"items": [{"product_id": products[0]}], "customer_id": "C000001"},
        {"items": [{"product_id": p} for p in products[:12]], "session_id": "s-9"},
        {"items": []}, {"items": [{"product_id": products[0], "quantity": 0}]},
        {"items": [{"product_id": products[0]}], "extra": 1}, {"items": "x"}, [], None,
        {"items": [{"product_id": "NOT-A-PRODUCT"}]},
    ]
    for body in bodies:
        _same(fast, routed, "POST", f"/v1/cart/add-ons?{query}", json=body)
    for raw, content_type in ((b"{not json", "application/json"), (b"", "application/json"),
                              (b'{"items": [{"product_id": "a"}]}', "text/plain"),
                              (b'{"items": [{"product_id": "a"}]}',
                               "application/json; charset=utf-8")):
        _same(fast, routed, "POST", f"/v1/cart/add-ons?{query}", content=raw,
              headers={"Content-Type": content_type})


@settings(max_examples=150, deadline=None, suppress_health_check=[
    HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from(["k", "category", "exclude", "in_stock_only",
                                           "customer_id", "session_id", "rank_by", "x"]),
                          st.text(max_size=6)), max_size=5))
def test_any_query_gets_the_routes_answer(clients: tuple[TestClient, TestClient],
                                          params: list[tuple[str, str]]) -> None:
    fast, routed = clients
    product = _products(fast)[0]
    _same(fast, routed, "GET", f"/v1/items/{product}/bought-together", params=params)


def test_well_formed_requests_take_the_fast_path(clients: tuple[TestClient, TestClient],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    fast, _ = clients
    answered: list[str] = []
    original = FastPath._send

    async def counting(self: FastPath, scope: Any, *args: Any) -> None:
        answered.append(scope["path"])
        await original(self, scope, *args)

    monkeypatch.setattr(FastPath, "_send", counting)
    product = _products(fast)[0]
    assert fast.get(f"/v1/items/{product}/also-viewed?k=3&exclude=a&exclude=b").status_code == 200
    assert fast.post("/v1/cart/add-ons", json={"items": [{"product_id": product}]}).is_success
    assert fast.get(f"/v1/items/{product}/also-viewed?k=0").status_code == 422  # the route's
    assert answered == [f"/v1/items/{product}/also-viewed", "/v1/cart/add-ons"]
    metrics = fast.get("/metrics").text
    assert 'route="/v1/items/{product_id}/also-viewed",status="200"' in metrics


@pytest.mark.parametrize(("method", "path", "endpoint"), [
    ("get", "/v1/items/{product_id}/also-viewed", ITEM_LIST),
    ("get", "/v1/items/{product_id}/bought-together", ITEM_LIST),
    ("get", "/v1/items/{product_id}/bundles", BUNDLES),
    ("get", "/v1/items/{product_id}/upsell", UPSELL),
    ("post", "/v1/cart/add-ons", CART),
    ("get", "/v1/customers/{customer_id}/recommendations", CUSTOMER_LIST),
    ("get", "/v1/popular", POPULAR)])
def test_list_routes_take_exactly_their_declared_parameters(method: str, path: str,
                                                            endpoint: Endpoint) -> None:
    """The route's parameters are its declaration in ``params`` (the fast path's too)."""
    document = create_app(ServingSettings.model_construct(database_url="sqlite://")).openapi()
    documented = [(p["name"], p["in"], p["schema"].get("default"))
                  for p in document["paths"][path][method]["parameters"]]
    assert documented == [(p.name, p.where, p.default) for p in endpoint.params]


def test_the_fast_paths_check_leaves_doubtful_values_to_the_route() -> None:
    parse = ITEM_LIST.parse
    parsed = parse(b"k=7&exclude=a&exclude=b", product_id="P1")
    assert parsed is not None
    assert parsed.options.exclude == {"a", "b"}
    for query in (b"customer_id=C1%0A", b"k=0010", b"k=%EF%BC%91", b"in_stock_only=yes",
                  b"exclude=" + b"&exclude=".join(b"p%d" % i for i in range(101))):
        assert parse(query, product_id="P1") is None, query
    assert parse(b"", product_id="P1\n") is None
