"""Observability: the Prometheus metrics of one app and the ``Observe`` middleware (request id,
counts and latency per route, the access log).

The access log never holds a customer id: the id in ``/v1/customers/{id}/...`` is replaced by
a keyed hash (HMAC-SHA256 with a key derived from the server's secret, ``app.state.log_key``),
so lines of one customer can be told apart and counted, but not read back to the id, not even
by enumerating sequential ids without the key."""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import time
import uuid
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["MULTIPROCESS", "Observe", "new_metrics", "exposition", "log_key", "logged_path"]

# Set by ``recsys serve --workers N`` before the workers start: prometheus_client then keeps
# every worker's values in files there, and /metrics adds them up.
MULTIPROCESS = "PROMETHEUS_MULTIPROC_DIR" in os.environ
access_log = logging.getLogger("recsys.access")
_CUSTOMER_IN_PATH = re.compile(r"(/customers/)([^/]+)")


def log_key(secret: str) -> bytes:
    """The access log's hashing key, derived from the server's secret."""
    return hashlib.sha256(b"recsys access log\0" + secret.encode()).digest()


def logged_path(path: str, key: bytes) -> str:
    """``path`` with any customer id replaced by ``h:`` and 16 hex digits of its keyed hash."""
    return _CUSTOMER_IN_PATH.sub(lambda m: m.group(1) + "h:" + hmac.new(
        key, m.group(2).encode(), hashlib.sha256).hexdigest()[:16], path)


def new_metrics(registry: CollectorRegistry) -> dict[str, Any]:
    """The app's metrics, registered in ``registry``."""
    return {
        "requests": Counter("recsys_requests_total", "HTTP requests",
                            ["route", "method", "status"], registry=registry),
        "latency": Histogram("recsys_request_seconds", "request latency", ["route"],
                             buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
                             registry=registry),
        "fallbacks": Counter("recsys_fallbacks_total", "lists filled by a fallback",
                             ["route", "fallback"], registry=registry),
        "version": Gauge("recsys_model_version_info", "served artifact version", ["version"],
                         registry=registry, multiprocess_mode="livemax"),
    }


def exposition(registry: CollectorRegistry) -> bytes:
    """The /metrics text: this worker's registry, or every worker's values added up."""
    if MULTIPROCESS:
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
    return generate_latest(registry)


class Observe:
    """Pure ASGI middleware: the request id (``X-Request-ID`` in and out), Prometheus counts
    and latency per route, the access log. (Starlette's BaseHTTPMiddleware costs a task and
    a stream per request.)"""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        given = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"x-request-id"),
                     "")
        request_id = given if 0 < len(given) <= 64 and given.isprintable() else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        header = (b"x-request-id", request_id.encode("latin-1"))
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - start
            route = scope.get("route")
            path = route.path if route is not None else "unmatched"
            m = scope["app"].state.metrics
            m["requests"].labels(route=path, method=scope["method"], status=str(status)).inc()
            m["latency"].labels(route=path).observe(elapsed)
            if access_log.isEnabledFor(logging.INFO):
                access_log.info("request", extra={"fields": {
                    "request_id": request_id, "method": scope["method"],
                    "path": logged_path(scope["path"], scope["app"].state.log_key),
                    "route": path, "status": status, "ms": round(elapsed * 1000, 3)}})
