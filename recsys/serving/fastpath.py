"""The fast path: the storefront's hottest requests answered without FastAPI's per-parameter
machinery, which costs more than the lookup itself.

``FastPath`` is pure ASGI middleware in front of the routes. It answers a request only when
it is certain the route would accept it: ``GET /v1/items/{id}/also-viewed`` and
``/bought-together``, and ``POST /v1/cart/add-ons`` with a JSON body, with every parameter
well formed. Anything else (a missing index, an unusual or invalid parameter, a repeated
one, another content type, a missing or wrong storefront key, an unknown category) goes on
to the FastAPI route, which answers it, 422s and 401s included.
The parameters are checked against the routes' own declaration (``params``), and the
answer is the route's own (``service``); tests compare the two on valid and invalid
requests.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, NamedTuple, cast

import orjson
from pydantic import ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from recsys.serving import recommend, service
from recsys.serving.keys import SERVER_HEADER, STOREFRONT_HEADER, storefront_allowed
from recsys.serving.params import CART, ITEM_LIST
from recsys.serving.schemas import CartRequest
from recsys.serving.service import ItemKind

if TYPE_CHECKING:
    from recsys.serving.state import ServingState

__all__ = ["FastPath"]

ITEM_PATH = re.compile(r"/v1/items/([^/]+)/(also-viewed|bought-together)")
CART_PATH = "/v1/cart/add-ons"


class _Route(NamedTuple):
    path: str


ROUTES = {"also-viewed": _Route("/v1/items/{product_id}/also-viewed"),
          "bought-together": _Route("/v1/items/{product_id}/bought-together"),
          "cart": _Route("/v1/cart/add-ons")}
KEY_HEADERS = (STOREFRONT_HEADER.lower().encode(), SERVER_HEADER.lower().encode())
MAX_BODY = 64 * 1024  # larger carts are the route's business (it caps a cart at 100 lines)


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
            if match and await self._item(scope, send, match[1], cast(ItemKind, match[2])):
                return
        elif method == "POST" and path == CART_PATH and _is_json(scope):
            body, complete = await _read_body(receive)
            if complete and await self._cart(scope, send, body):
                return
            receive = _replay(body, complete, receive)
        await self.app(scope, receive, send)

    async def _item(self, scope: Scope, send: Send, product_id: str, kind: ItemKind) -> bool:
        state: ServingState = scope["app"].state.serving
        index = state.index
        if index is None or not _allowed(state, scope):
            return False
        query = ITEM_LIST.parse(scope["query_string"], product_id=product_id)
        if query is None or not service.category_known(index, query):
            return False
        live = await service.live_recent(state, query.session_id, query.history)
        await self._send(scope, send, kind, index,
                         service.item_list(state, index, kind, query, live))
        return True

    async def _cart(self, scope: Scope, send: Send, body: bytes) -> bool:
        state: ServingState = scope["app"].state.serving
        index = state.index
        if index is None or not _allowed(state, scope):
            return False
        query = CART.parse(scope["query_string"])
        if query is None or not service.category_known(index, query):
            return False
        try:
            cart = CartRequest.model_validate(orjson.loads(body))
        except (orjson.JSONDecodeError, ValidationError):
            return False
        products = [line.product_id for line in cart.items]
        live = await service.live_recent(state, cart.session_id, query.history)
        await self._send(scope, send, "cart", index, service.cart_list(
            state, index, products, cart.customer_id, cart.session_id, query, live))
        return True

    async def _send(self, scope: Scope, send: Send, kind: str, index: Any,
                    answer: tuple[recommend.Result, str | None]) -> None:
        result, arm = answer
        route = ROUTES[kind]
        scope["route"] = route  # the metrics label it by its path, as for a routed request
        if result.fallback:
            scope["app"].state.metrics["fallbacks"].labels(
                route=route.path, fallback=result.fallback).inc()
        body = service.list_body(index, result, scope["state"]["request_id"], arm)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


def _allowed(state: ServingState, scope: Scope) -> bool:
    """The route's storefront-key check (a repeated key header is left to the route)."""
    if not state.settings.storefront_key:
        return True  # open (development): nothing to read
    found: dict[bytes, list[str]] = {name: [] for name in KEY_HEADERS}
    for key, value in scope["headers"]:
        if key in found:
            found[key].append(value.decode("latin-1"))
    if any(len(values) > 1 for values in found.values()):
        return False
    storefront, server = (values[0] if values else None for values in found.values())
    return storefront_allowed(state.settings, storefront, server)


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
