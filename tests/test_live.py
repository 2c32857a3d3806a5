"""Live session state: events change the next list at once, shared through the real Redis by
two app instances (as by two workers), with TTL expiry and Redis failing mid-run; the
in-process store; session-aware lists (``session_id`` / ``history``); recently viewed and
trending."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from fastapi.testclient import TestClient

from recsys.app import create_app
from recsys.config import ServingSettings
from recsys.serving import livelists
from recsys.serving.live import MemoryLive
from recsys.serving.livelists import rising


def settings(artifacts: Path, tmp: Path, **values: Any) -> ServingSettings:
    return ServingSettings(artifacts=str(artifacts), database_url=f"sqlite:///{tmp / 'ev.db'}",
                           reload_interval_s=0, decisions_refresh_s=0, **values)


def view(client: TestClient, product: str, session: str | None = None,
         customer: str | None = None, kind: str = "view") -> None:
    body = {"event_type": kind, "product_id": product, "session_id": session,
            "customer_id": customer}
    response = client.post("/v1/events", json={k: v for k, v in body.items() if v})
    assert response.status_code == 201, response.text


def ids(body: dict[str, Any]) -> list[str]:
    return [item["product_id"] for item in body["items"]]


def get(client: TestClient, path: str, **params: Any) -> dict[str, Any]:
    response = client.get(path, params=params or None)  # {} would drop the path's query
    assert response.status_code == 200, response.text
    return response.json()


def seeds(client: TestClient) -> tuple[str, list[str]]:
    """A product with also-viewed neighbours, and three other products with neighbours that
    are not its own."""
    index = client.app.state.serving.index  # type: ignore[attr-defined]
    table = index.also_viewed
    rows = [c for c in range(len(index.ids)) if (table.ids[c] >= 0).sum() >= 5]
    product = rows[0]
    own = set(table.ids[product].tolist())
    others = [c for c in rows[1:] if c not in own][:3]
    return index.ids[product], [index.ids[c] for c in others]


@pytest.fixture
def memory_client(demo_artifact: Path, tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(settings(demo_artifact, tmp_path))) as client:
        yield client


class Proxy:
    """A TCP relay to Redis that can be cut, as Redis going down mid-run looks to a worker."""

    def __init__(self, url: str) -> None:
        parsed = urlparse(url)
        self.target = (parsed.hostname or "127.0.0.1", parsed.port or 6379)
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(0.05)
        self.port = self.server.getsockname()[1]
        self.conns: list[socket.socket] = []
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stopped:
            try:
                client, _ = self.server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass

    def cut(self) -> None:
        self.stopped = True
        self.server.close()
        for conn in self.conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()


# -- session-aware lists (in-process store) --------------------------------------------------


def test_without_a_session_lists_are_unchanged(memory_client: TestClient) -> None:
    product, _ = seeds(memory_client)
    plain = get(memory_client, f"/v1/items/{product}/also-viewed", k=10)
    unknown = get(memory_client, f"/v1/items/{product}/also-viewed", k=10, session_id="new-s")
    assert plain["items"] == unknown["items"]
    assert all("session" not in i["reason"]["evidence"] for i in plain["items"])


@pytest.mark.parametrize("kind", ["also-viewed", "bought-together"])
def test_history_shapes_item_lists_and_is_named(memory_client: TestClient, kind: str) -> None:
    product, others = seeds(memory_client)
    plain = get(memory_client, f"/v1/items/{product}/{kind}", k=10)
    shaped = get(memory_client, f"/v1/items/{product}/{kind}?k=10&history={others[0]}"
                                f"&history={others[1]}")
    assert ids(shaped) != ids(plain)
    named = [i["reason"]["evidence"]["session"] for i in shaped["items"]
             if "session" in i["reason"]["evidence"]]
    assert named and all(set(n) <= set(others[:2]) for n in named)
    assert product not in ids(shaped)


def test_route_and_fast_path_agree_on_history(demo_artifact: Path, tmp_path: Path) -> None:
    answers = []
    for fast in (True, False):
        with TestClient(create_app(settings(demo_artifact, tmp_path), fast_path=fast)) as c:
            product, others = seeds(c)
            query = f"k=8&history={others[0]}&history={others[2]}"
            item = get(c, f"/v1/items/{product}/also-viewed?{query}")
            cart = c.post(f"/v1/cart/add-ons?{query}", json={"items": [{"product_id": product}]})
            assert cart.status_code == 200
            answers.append((item["items"], cart.json()["items"]))
    assert answers[0] == answers[1]


def test_recent_views_weigh_more(memory_client: TestClient) -> None:
    product, others = seeds(memory_client)

    def first_named(history: list[str]) -> str:
        query = "&".join(f"history={h}" for h in history)
        body = get(memory_client, f"/v1/items/{product}/also-viewed?k=20&{query}")
        return next(i["reason"]["evidence"]["session"][0] for i in body["items"]
                    if i["reason"]["source"] == "session")

    assert first_named([others[0], others[1]]) == others[1]  # most recent last
    assert first_named([others[1], others[0]]) == others[0]


def test_a_placement_weighs_the_session_its_own_way(demo_artifact: Path, tmp_path: Path) -> None:
    """``[serving.placements.bought_together] session_weight`` scales what the session's
    products add to that list alone (V-SKNN's votes off: they do not depend on it);
    also-viewed keeps ``[serving]``'s weight."""
    heavy = {"bought_together": {"session_weight": 1.2, "session_decay": 1.0}}
    answers = []
    for values in ({}, {"placements": heavy}):
        with TestClient(create_app(settings(demo_artifact, tmp_path, session_knn_weight=0.0,
                                            **values))) as client:
            product, others = seeds(client)
            answers.append({kind: get(client, f"/v1/items/{product}/{kind}?k=20"
                                              f"&history={others[0]}")["items"]
                            for kind in ("also-viewed", "bought-together")})
    served, weighed = answers
    assert served["also-viewed"] == weighed["also-viewed"]

    def added(items: list[dict[str, Any]]) -> dict[str, float]:
        return {i["product_id"]: i["reason"]["evidence"]["weight"] for i in items
                if i["reason"]["source"] == "session"}

    before, after = added(served["bought-together"]), added(weighed["bought-together"])
    both = before.keys() & after.keys()
    assert both  # one session product: each added weight is 4x (1.2 against 0.3)
    assert all(after[p] == pytest.approx(4 * before[p], rel=1e-4) for p in both)


def test_events_update_the_session_at_once(memory_client: TestClient) -> None:
    product, others = seeds(memory_client)
    session = f"s-{uuid.uuid4().hex}"
    before = get(memory_client, f"/v1/items/{product}/also-viewed", k=10, session_id=session)
    view(memory_client, others[0], session)
    view(memory_client, others[1], session, kind="add_to_cart")
    after = get(memory_client, f"/v1/items/{product}/also-viewed", k=10, session_id=session)
    assert ids(after) != ids(before)
    recent = get(memory_client, f"/v1/sessions/{session}/recently-viewed", in_stock_only=False)
    assert ids(recent) == [others[1], others[0]]
    assert get(memory_client, "/readyz")["redis"] == "off"


def first_bought_together(client: TestClient) -> tuple[str, str]:
    """A product and the first item of its bought-together list."""
    index = client.app.state.serving.index  # type: ignore[attr-defined]
    for product in index.ids:
        items = ids(get(client, f"/v1/items/{product}/bought-together", in_stock_only=False))
        if len(items) >= 5:
            return product, items[0]
    raise AssertionError("no product with a bought-together list")


def test_the_session_cart_is_not_offered_back(memory_client: TestClient) -> None:
    """A product the session put in the cart (or bought) leaves bought-together and the cart
    add-ons; a product it only viewed stays, and also-viewed may show either."""
    product, top = first_bought_together(memory_client)
    path = f"/v1/items/{product}/bought-together"
    for kind, offered in (("view", True), ("add_to_cart", False), ("purchase", False)):
        session = f"s-{uuid.uuid4().hex}"
        view(memory_client, top, session, kind=kind)
        assert (top in ids(get(memory_client, path, in_stock_only=False,
                               session_id=session))) is offered, kind
        cart = memory_client.post("/v1/cart/add-ons?in_stock_only=false", json={
            "items": [{"product_id": product}], "session_id": session})
        assert (top in ids(cart.json())) is offered, kind
        recent = get(memory_client, f"/v1/sessions/{session}/recently-viewed",
                     in_stock_only=False)["items"]
        assert recent[0]["reason"]["evidence"] == {"position": 1, "event": kind}
    assert top in ids(get(memory_client, path, in_stock_only=False,
                          history=top))  # history= has no event types: nothing left out


def test_cart_add_ons_weigh_the_latest_cart_add_most(demo_artifact: Path,
                                                     tmp_path: Path) -> None:
    """The session's events order the cart (a request's line order does not): with a steep
    ``line_decay`` the add-ons are the latest line's; without a session every line counts."""
    steep = {"cart": {"line_decay": 0.01}}
    with TestClient(create_app(settings(demo_artifact, tmp_path, placements=steep))) as client:
        a, _ = first_bought_together(client)
        b = next(p for p in client.app.state.serving.index.ids  # type: ignore[attr-defined]
                 if p != a and len(ids(get(client, f"/v1/items/{p}/bought-together"))) >= 5)
        session = f"s-{uuid.uuid4().hex}"

        def add_ons(lines: list[str], session_id: str | None = None) -> list[str]:
            """The engine's add-ons (a short list's best-seller fill takes the category of
            the cart's first line on a tie)."""
            body = {"items": [{"product_id": p} for p in lines], "session_id": session_id}
            return [i["product_id"] for i in client.post("/v1/cart/add-ons?k=10", json=body)
                    .json()["items"] if i["reason"]["source"] != "popular"]

        assert add_ons([a, b]) == add_ons([b, a])  # no order known: every line alike
        view(client, a, session, kind="add_to_cart")
        view(client, b, session, kind="add_to_cart")
        latest_b = add_ons([a, b], session)
        assert latest_b == add_ons([b, a], session) != add_ons([a, b])
        view(client, a, session)  # looked at again: now the latest
        assert add_ons([a, b], session) != latest_b


def test_memory_store_keeps_each_event(tmp_path: Path) -> None:
    live = MemoryLive(ServingSettings())
    for kind, pid in (("view", "a"), ("add_to_cart", "b"), ("purchase", "c"), ("view", "b")):
        live.record(kind, pid, "s", "c1")
    recent = live.recent(session_id="s")
    assert recent == live.recent(customer_id="c1")
    assert recent.products == ["b", "c", "b", "a"]
    assert recent.events == ["view", "purchase", "add_to_cart", "view"]
    assert recent.carted == {"b", "c"}
    assert live.hourly(1)[0] == {"a": 1, "b": 2, "c": 1}  # trending counts products


def test_customer_recently_viewed_and_bad_ids(memory_client: TestClient) -> None:
    _, others = seeds(memory_client)
    customer = f"c-{uuid.uuid4().hex}"
    for pid in (others[0], others[1], others[0]):
        view(memory_client, pid, customer=customer)
    path = f"/v1/customers/{customer}/recently-viewed?in_stock_only=false&k=5"
    assert memory_client.get(path).status_code == 401  # a customer's history: not public
    key = memory_client.app.state.serving.settings.api_key  # type: ignore[attr-defined]
    response = memory_client.get(path, headers={"X-API-Key": key})
    assert response.status_code == 200, response.text
    assert ids(response.json()) == [others[0], others[1]]  # each once, most recent first
    assert memory_client.get("/v1/sessions/a%01b/recently-viewed").status_code == 422
    assert memory_client.get("/v1/sessions/s/recently-viewed?k=0").status_code == 422
    assert memory_client.get("/v1/items/x/also-viewed?history=a%01").status_code == 422


def test_memory_store_expires_and_trims(tmp_path: Path) -> None:
    live = MemoryLive(ServingSettings(session_length=3, session_ttl_s=0.2))
    for pid in "abcd":
        live.record("view", pid, "s", None)
    live.record("impression", "z", "s", None)  # not a product interaction
    assert live.recent(session_id="s").products == ["d", "c", "b"]
    time.sleep(0.25)
    assert live.recent(session_id="s").products == []
    live.record("view", "x", "t", None)  # a write drops the expired lists
    assert list(live.sessions.lists) == ["t"]


def test_memory_store_counts_an_event_id_once(tmp_path: Path) -> None:
    live = MemoryLive(ServingSettings(session_ttl_s=0.2))
    for pid, key in (("a", "e-1"), ("a", "e-1"), ("b", None), ("b", None), ("c", "e-2")):
        live.record("view", pid, "s", "c1", key)
    assert live.recent(session_id="s") == live.recent(customer_id="c1")
    assert live.recent(session_id="s").products == ["c", "b", "b", "a"]
    assert live.hourly(1)[0] == {"a": 1, "b": 2, "c": 1}
    time.sleep(0.25)  # the id is forgotten with the session
    live.record("view", "a", "s", None, "e-1")
    assert live.recent(session_id="s").products == ["a"]


def test_rising_ranks_by_rise_with_a_minimum() -> None:
    hourly = [{"a": 4, "b": 9, "c": 2}, {"a": 2}] + [{"b": 3, "c": 1}] * 4
    rows = rising(hourly, 2, 4, 5)
    assert [r[0] for r in rows] == ["a", "b"]  # c has too few recent events
    pid, n, per_hour, rise = rows[0]
    assert (n, per_hour, rise) == (6, 0.0, 12.0)  # 6 in 2 hours vs (0 + 1) in 4 hours
    assert rows[1][1:3] == (9, 3.0)


def test_trending_rises_and_falls_back(memory_client: TestClient,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(livelists, "CACHE_S", 0.0)
    body = get(memory_client, "/v1/trending", k=5)
    assert body["fallback"] == "global_best_sellers" and len(body["items"]) == 5
    index = memory_client.app.state.serving.index  # type: ignore[attr-defined]
    hot = sorted(index.available)[-1]
    for i in range(5):
        view(memory_client, hot, f"s-{i}")
    body = get(memory_client, "/v1/trending", k=5)
    assert body["items"][0]["product_id"] == hot
    assert body["items"][0]["reason"]["evidence"]["recent_events"] == 5
    category = index.categories[hot]
    scoped = get(memory_client, "/v1/trending", k=3, category=category)
    assert scoped["items"][0]["product_id"] == hot
    assert all(i["category"].startswith(category) for i in scoped["items"])


# -- the real Redis ---------------------------------------------------------------------------


@pytest.fixture
def redis_settings(demo_artifact: Path, tmp_path: Path, redis_url: str) -> dict[str, Any]:
    return {"artifacts": demo_artifact, "tmp": tmp_path, "redis_url": redis_url,
            "redis_prefix": f"recsys-test-{uuid.uuid4().hex}"}


def app_with(values: dict[str, Any], **extra: Any) -> TestClient:
    values = {**values, **extra}
    return TestClient(create_app(settings(values.pop("artifacts"), values.pop("tmp"), **values)))


def test_two_apps_share_the_session_through_redis(redis_settings: dict[str, Any]) -> None:
    with app_with(redis_settings) as one, app_with(redis_settings) as two:
        product, others = seeds(one)
        session = f"s-{uuid.uuid4().hex}"
        before = get(two, f"/v1/items/{product}/also-viewed", k=10, session_id=session)
        view(one, others[0], session)
        view(one, others[1], session)
        after = get(two, f"/v1/items/{product}/also-viewed", k=10, session_id=session)
        assert ids(after) != ids(before)
        assert any(i["reason"]["evidence"].get("session") for i in after["items"])
        assert ids(get(two, f"/v1/sessions/{session}/recently-viewed",
                       in_stock_only=False)) == [others[1], others[0]]
        cart = two.post("/v1/cart/add-ons", json={"items": [{"product_id": product}],
                                                   "session_id": session})
        assert any(i["reason"]["evidence"].get("session") for i in cart.json()["items"])
        assert get(two, "/readyz")["redis"] == "ok"
        seed, top = first_bought_together(one)
        view(one, top, session, kind="add_to_cart")
        assert top not in ids(get(two, f"/v1/items/{seed}/bought-together",
                                  in_stock_only=False, session_id=session))
        assert get(two, f"/v1/sessions/{session}/recently-viewed", in_stock_only=False)[
            "items"][0]["reason"]["evidence"] == {"position": 1, "event": "add_to_cart"}
        assert top in two.app.state.serving.live.hourly(1)[0]  # type: ignore[attr-defined]


def test_redis_counts_a_retried_event_once(redis_settings: dict[str, Any]) -> None:
    """A retried beacon (same event_id or Idempotency-Key) changes neither the session's
    recent products nor the trending counts a second time, seen from another worker."""
    with app_with(redis_settings) as one, app_with(redis_settings) as two:
        _, others = seeds(one)
        session = f"s-{uuid.uuid4().hex}"
        beacons = [({"event_id": "b-1"}, {}), ({"event_id": "b-1"}, {}),
                   ({}, {"Idempotency-Key": "b-2"}), ({"event_id": "b-2"}, {}), ({}, {}),
                   ({}, {})]
        for (extra, headers), pid in zip(beacons, [others[0]] * 2 + [others[1]] * 4,
                                         strict=True):
            client = one if len(extra) else two
            answer = client.post("/v1/events", headers=headers, json={
                "event_type": "view", "product_id": pid, "session_id": session, **extra})
            assert answer.status_code == 201, answer.text
        assert ids(get(two, f"/v1/sessions/{session}/recently-viewed", in_stock_only=False,
                       k=10)) == [others[1], others[0]]  # each product once in the list
        state = one.app.state.serving  # type: ignore[attr-defined]
        assert state.live.recent(session_id=session).products == [others[1]] * 3 + [others[0]]
        assert state.live.hourly(1)[0] == {others[0]: 1, others[1]: 3}


def test_redis_session_expires(redis_settings: dict[str, Any]) -> None:
    with app_with(redis_settings, session_ttl_s=1) as client:
        _, others = seeds(client)
        view(client, others[0], "s-ttl")
        assert ids(get(client, "/v1/sessions/s-ttl/recently-viewed", in_stock_only=False))
        time.sleep(2.1)
        assert get(client, "/v1/sessions/s-ttl/recently-viewed")["items"] == []


def test_redis_down_mid_run(redis_settings: dict[str, Any]) -> None:
    proxy = Proxy(redis_settings["redis_url"])
    with app_with(redis_settings, redis_url=f"redis://127.0.0.1:{proxy.port}/0") as client:
        product, others = seeds(client)
        plain = get(client, f"/v1/items/{product}/also-viewed", k=10)
        view(client, others[0], "s-down")
        shaped = get(client, f"/v1/items/{product}/also-viewed", k=10, session_id="s-down")
        assert ids(shaped) != ids(plain)
        proxy.cut()
        started = time.perf_counter()
        ignored = get(client, f"/v1/items/{product}/also-viewed", k=10, session_id="s-down")
        assert ignored["items"] == plain["items"]  # served from the artifact alone
        assert time.perf_counter() - started < 1.0
        ready = client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["redis"] == "degraded"
        view(client, others[1], "s-down")  # still accepted (stored in the database)
        assert get(client, "/v1/sessions/s-down/recently-viewed")["items"] == []
        assert get(client, "/v1/trending", k=3)["fallback"] == "global_best_sellers"
