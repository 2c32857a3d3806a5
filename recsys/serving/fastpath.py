"""The fast path: the storefront's hottest requests answered without FastAPI's per-parameter
machinery, which costs more than the lookup itself.

``FastPath`` is pure ASGI middleware in front of the routes. It answers a request only when
it is certain the route would accept it: ``GET /v1/items/{id}/also-viewed`` and
``/bought-together``, and ``POST /v1/cart/add-ons`` with a JSON body, with every parameter
well formed. Anything else (a missing index, an unusual or invalid parameter, a repeated
one, another content type) goes on to the FastAPI route, which answers it, 422s included.
The answer is the route's own: the same ``recommend`` call, arm and body
(``recsys.serving.answers``); tests compare the two on valid and invalid requests.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, NamedTuple

import orjson
from pydantic import ValidationError
from starlette.datastructures import QueryParams
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from recsys.serving import recommend
from recsys.serving.answers import arm_of, list_body, ranked

if TYPE_CHECKING:
    from recsys.serving.app import ServingState

__all__ = ["FastPath"]

ITEM_PATH = re.compile(r"/v1/items/([^/]+)/(also-viewed|bought-together)")
CART_PATH = "/v1/cart/add-ons"
ID = re.compile(r"[^\x00-\x1f\x7f]{1,128}")  # the routes' ids: 1..128 printable characters
K = re.compile(r"[0-9]{1,3}")
BOOLEAN = {"true": True, "1": True, "false": False, "0": False}


class _Route(NamedTuple):
    path: str


ROUTES = {"also-viewed": _Route("/v1/items/{product_id}/also-viewed"),
          "bought-together": _Route("/v1/items/{product_id}/bought-together"),
          "cart": _Route("/v1/cart/add-ons")}
MAX_BODY = 64 * 1024  # larger carts are the route's business (it caps a cart at 100 lines)


class _NotMine(Exception):
    """The request is left to the FastAPI route."""


def _params(scope: Scope, allowed: frozenset[str]) -> dict[str, Any]:
    """The query parameters as the route would take them, or _NotMine."""
    out: dict[str, Any] = {}
    exclude: list[str] = []
    for key, value in QueryParams(scope["query_string"]).multi_items():
        if key == "exclude":
            if not ID.fullmatch(value) or len(exclude) == 100:
                raise _NotMine
            exclude.append(value)
        elif key in allowed:
            if key in out:
                raise _NotMine  # repeated: the route's rule for it decides
            out[key] = value
    k = out.get("k", "10")
    if not K.fullmatch(k) or not 1 <= int(k) <= 100:
        raise _NotMine
    stock = BOOLEAN.get(out.get("in_stock_only", "true"))
    category = out.get("category")
    if stock is None or (category is not None and not 1 <= len(category) <= 256):
        raise _NotMine
    for key in ("customer_id", "session_id"):
        if key in out and not ID.fullmatch(out[key]):
            raise _NotMine
    rank_by = out.get("rank_by", "score")
    if rank_by not in ("score", "value"):
        raise _NotMine
    return {"options": recommend.Options(k=int(k), category=category,
                                         exclude=frozenset(exclude), in_stock_only=stock,
                                         rank_by=rank_by),
            "customer_id": out.get("customer_id"), "session_id": out.get("session_id")}


ITEM_PARAMS = frozenset({"k", "category", "in_stock_only", "customer_id", "session_id"})
CART_PARAMS = frozenset({"k", "category", "in_stock_only", "rank_by"})


class FastPath:
    """Answers well-formed list requests directly; passes every other request on."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path, method = scope["path"], scope["method"]
        if method == "GET" and path.startswith("/v1/items/"):
            match = ITEM_PATH.fullmatch(path)
            if match and await self._item(scope, send, match[1], match[2]):
                return
        elif method == "POST" and path == CART_PATH and _is_json(scope):
            body, complete = await _read_body(receive)
            if complete and await self._cart(scope, send, body):
                return
            receive = _replay(body, complete, receive)
        await self.app(scope, receive, send)

    async def _item(self, scope: Scope, send: Send, product_id: str, kind: str) -> bool:
        state: ServingState = scope["app"].state.serving
        index = state.index
        if index is None or not ID.fullmatch(product_id):
            return False
        try:
            params = _params(scope, ITEM_PARAMS)
        except _NotMine:
            return False
        options = params["options"]
        compute = recommend.also_viewed if kind == "also-viewed" else recommend.bought_together
        arm = arm_of(state.settings, params["customer_id"], params["session_id"])
        result = ranked(state.store, state.settings, index, arm, options,
                        lambda d: compute(index, product_id, options, d))
        await self._send(scope, send, kind, index, result, arm)
        return True

    async def _cart(self, scope: Scope, send: Send, body: bytes) -> bool:
        from recsys.serving.app import CartRequest

        state: ServingState = scope["app"].state.serving
        index = state.index
        if index is None:
            return False
        try:
            params = _params(scope, CART_PARAMS)
            cart = CartRequest.model_validate(orjson.loads(body))
        except (_NotMine, orjson.JSONDecodeError, ValidationError):
            return False
        options = params["options"]
        products = [line.product_id for line in cart.items]
        arm = arm_of(state.settings, cart.customer_id, cart.session_id)
        result = ranked(state.store, state.settings, index, arm, options,
                        lambda d: recommend.cart_addons(index, products, options, d))
        await self._send(scope, send, "cart", index, result, arm)
        return True

    async def _send(self, scope: Scope, send: Send, kind: str, index: Any,
                    result: recommend.Result, arm: str | None) -> None:
        route = ROUTES[kind]
        scope["route"] = route  # the metrics label it by its path, as for a routed request
        if result.fallback:
            scope["app"].state.metrics["fallbacks"].labels(
                route=route.path, fallback=result.fallback).inc()
        body = list_body(index, result, scope["state"]["request_id"], arm)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


def _is_json(scope: Scope) -> bool:
    for key, value in scope["headers"]:
        if key == b"content-type":
            return value.split(b";")[0].strip().lower() == b"application/json"
    return False


async def _read_body(receive: Receive) -> tuple[bytes, bool]:
    """The request body read so far, and whether that is all of it (it stops past MAX_BODY
    or at a disconnect)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), False
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), True
        if size > MAX_BODY:
            return b"".join(chunks), False


def _replay(body: bytes, complete: bool, receive: Receive) -> Receive:
    """A receive that hands the route the body already read, then the rest."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": not complete}
        return await receive()

    return replay
