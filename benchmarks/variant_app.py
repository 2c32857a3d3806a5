"""Diagnostic variants of the recsys API for the serving benchmark (not a way to serve).

They show what the framework plumbing of ``recsys.serving.app`` costs per request, without
touching it: the app is ``create_app(ServingSettings())`` with, per ``RECSYS_BENCH_VARIANT``
(``+``-separated):

  async-deps  ``get_state`` and ``get_index`` overridden by ``async def`` equivalents
              (``app.dependency_overrides``, as tests do): a request no longer hops to the
              thread pool for each of them (the ``def`` route itself still does);
  asgi-mw     the ``observe`` middleware (``@app.middleware("http")``, a Starlette
              ``BaseHTTPMiddleware``) replaced by a pure ASGI middleware doing the same work:
              request id, Prometheus counter and histogram, ``X-Request-ID`` header;
  gc-freeze   ``gc.freeze()`` once the lifespan has loaded the index: its objects move to
              the permanent generation, so full collections no longer walk them (an index
              loaded later by a hot reload is not frozen: a diagnostic, not a fix).

    RECSYS_BENCH_VARIANT=async-deps+asgi-mw uvicorn --app-dir benchmarks --factory \\
        variant_app:app_from_env --host 127.0.0.1 --port 8002
"""

from __future__ import annotations

import gc
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from starlette.middleware.base import BaseHTTPMiddleware

from recsys.config import ServingSettings
from recsys.serving.app import NotReady, ServingState, create_app, get_index, get_state
from recsys.serving.index import ServingIndex

__all__ = ["app_from_env", "VARIANTS"]

VARIANTS = ("async-deps", "asgi-mw", "gc-freeze")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


async def _state(request: Request) -> ServingState:
    state: ServingState = request.app.state.serving
    return state


async def _index(state: Annotated[ServingState, Depends(get_state)]) -> ServingIndex:
    if state.index is None:
        raise NotReady(state.error or "no artifact loaded")
    return state.index


class ObserveASGI:
    """What ``observe`` does (request id, metrics, response header), as plain ASGI."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]],
                 metrics: dict[str, Any]) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        given = next((v.decode("latin-1") for k, v in scope["headers"]
                      if k == b"x-request-id"), "")
        request_id = given if 0 < len(given) <= 64 and given.isprintable() else (
            uuid.uuid4().hex)
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()),
                                      (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            route = scope.get("route")
            path = route.path if route is not None else "unmatched"
            self.metrics["requests"].labels(route=path, method=scope["method"],
                                            status=str(status)).inc()
            self.metrics["latency"].labels(route=path).observe(time.perf_counter() - start)


def app_from_env() -> FastAPI:
    """The recsys app with the variants named in RECSYS_BENCH_VARIANT."""
    wanted = {v for v in os.environ.get("RECSYS_BENCH_VARIANT", "").split("+") if v}
    unknown = wanted - set(VARIANTS)
    if unknown:
        raise SystemExit(f"unknown variant(s) {sorted(unknown)}; known: {VARIANTS}")
    app = create_app(ServingSettings())
    if "async-deps" in wanted:
        app.dependency_overrides[get_state] = _state
        app.dependency_overrides[get_index] = _index
    if "gc-freeze" in wanted:
        loading = app.router.lifespan_context

        @asynccontextmanager
        async def frozen(app_: Any) -> AsyncIterator[Any]:
            async with loading(app_) as state:
                gc.collect()
                gc.freeze()
                yield state

        app.router.lifespan_context = frozen
    if "asgi-mw" in wanted:
        app.user_middleware = [m for m in app.user_middleware
                               if m.cls is not BaseHTTPMiddleware]
        app.add_middleware(ObserveASGI, metrics=app.state.metrics)
    return app
