"""The serving part of an app: its state and metrics, the middleware (fast path, CORS,
observation), the error answers and the routers. ``recsys.app`` composes it with the console
and the storefront; nothing here knows about them."""

from __future__ import annotations

import math

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry

from recsys.config import ServingSettings
from recsys.serving.fastpath import FastPath
from recsys.serving.limits import BodyLimit
from recsys.serving.observe import Observe, log_key, new_metrics
from recsys.serving.routes import ROUTERS
from recsys.serving.service import UnknownCategory
from recsys.serving.spool import SpoolFull
from recsys.serving.state import NotReady, ServingState
from recsys.serving.store import DATABASE_DOWN

__all__ = ["install", "include_routes"]


async def _not_ready(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": f"no artifact loaded: {exc}"}, status_code=503)


async def _invalid(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = [{"where": ".".join(str(p) for p in err.get("loc", ())),
                 "problem": err.get("msg", "")} for err in exc.errors()]
    return JSONResponse({"detail": problems}, status_code=422)


async def _unknown_category(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": [{"where": "query.category", "problem": str(exc)}]},
                        status_code=422)


async def _database_down(request: Request, exc: Exception) -> JSONResponse:
    """503 with Retry-After while the database is down (recommendations keep serving)."""
    state: ServingState = request.app.state.serving
    state.store.database_ok = False
    detail = (str(exc) if isinstance(exc, SpoolFull)
              else f"the database is unavailable ({type(exc).__name__}); try again later")
    retry = str(max(1, math.ceil(state.settings.database_retry_s)))
    return JSONResponse({"detail": detail}, status_code=503, headers={"Retry-After": retry})


def install(app: FastAPI, settings: ServingSettings, *, fast_path: bool = True) -> None:
    """Give ``app`` the serving state, middleware and error answers (``app.state.serving``
    is loaded by ``state.lifespan``). ``fast_path=False`` leaves every request to the
    FastAPI routes (tests compare the two)."""
    app.state.registry = CollectorRegistry()
    app.state.metrics = new_metrics(app.state.registry)
    app.state.log_key = log_key(settings.api_key)
    app.state.serving = ServingState(settings, app.state.metrics["version"])
    if fast_path:  # innermost, so CORS applies to its answers too
        app.add_middleware(FastPath)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins,
                           allow_methods=["GET", "POST"], allow_headers=["*"],
                           expose_headers=["X-Request-ID"])
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)  # before any parsing
    app.add_middleware(Observe)  # outermost: it also times and counts the fast path
    app.add_exception_handler(NotReady, _not_ready)
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(UnknownCategory, _unknown_category)
    for down in (*DATABASE_DOWN, SpoolFull):
        app.add_exception_handler(down, _database_down)


def include_routes(app: FastAPI) -> None:
    """The API's routers, in the OpenAPI document's order."""
    for router in ROUTERS:
        app.include_router(router)
