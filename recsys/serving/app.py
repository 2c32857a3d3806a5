"""The FastAPI application: built by ``create_app(settings)``, index loaded in ``lifespan``."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from recsys.config import ServingSettings
from recsys.errors import RecsysError
from recsys.serving.index import ServingIndex, load_index

__all__ = ["create_app"]

log = logging.getLogger("recsys.serving")


class ServingState:
    """The index being served, or why there is none."""

    def __init__(self, settings: ServingSettings) -> None:
        self.settings = settings
        self.index: ServingIndex | None = None
        self.error: str | None = None

    def load(self) -> None:
        try:
            self.index = load_index(self.settings.artifacts)
            self.error = None
            log.info("serving artifact version %s", self.index.version)
        except RecsysError as exc:
            self.error = str(exc)
            log.error("no artifact loaded: %s", exc)


def get_state(request: Request) -> ServingState:
    state: ServingState = request.app.state.serving
    return state


State = Annotated[ServingState, Depends(get_state)]


class NotReady(Exception):
    """Raised by routes that need an index when none is loaded (answered with 503)."""


def get_index(state: State) -> ServingIndex:
    if state.index is None:
        raise NotReady(state.error or "no artifact loaded")
    return state.index


Index = Annotated[ServingIndex, Depends(get_index)]


class Reason(BaseModel):
    source: str = Field(description="what produced the item: popular, rule, als, ...")
    evidence: dict[str, Any] = Field(default_factory=dict)


class Item(BaseModel):
    product_id: str
    score: float
    name: str | None = None
    price: float | None = None
    category: str | None = None
    reason: Reason


class ItemList(BaseModel):
    items: list[Item]
    model_version: str
    request_id: str
    fallback: str | None = Field(None, description="which fallback produced the list, if any")


def _request_id(request: Request) -> str:
    rid: str = request.state.request_id
    return rid


ops = APIRouter(tags=["operations"])
popular = APIRouter(prefix="/v1", tags=["popular"])


@ops.get("/healthz")
def healthz() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@ops.get("/readyz", responses={503: {"description": "no artifact loaded"}})
def readyz(state: State) -> JSONResponse:
    """Readiness: an artifact version is loaded; its version and age."""
    if state.index is None:
        return JSONResponse({"status": "not_ready", "reason": state.error}, status_code=503)
    idx = state.index
    return JSONResponse({"status": "ready", "version": idx.version,
                         "age_seconds": round(idx.age_seconds(), 1),
                         "loaded_at": idx.loaded_at.isoformat(), "error": state.error})


@popular.get("/version")
def version(index: Index) -> dict[str, Any]:
    """The artifact version being served and how it was built."""
    m = index.manifest
    return {"model_version": m.version, "created_at": m.created_at, "git_commit": m.git_commit,
            "config_hash": m.config_hash, "metrics": m.metrics}


@popular.get("/popular", response_model=ItemList)
def popular_items(
    request: Request,
    index: Index,
    k: Annotated[int, Query(ge=1, le=100, description="how many items")] = 10,
    category: Annotated[str | None, Query(max_length=256, description="category path")] = None,
    in_stock_only: bool = True,
) -> ItemList:
    """Best sellers, globally or in a category (any level of its path)."""
    fallback = None
    scope = category
    if category and category not in index.popular:
        fallback, scope = "global_best_sellers", None
    ranked = index.best_sellers(scope, k, in_stock_only=in_stock_only)
    items = [Item(**index.describe(pid), score=float(count),
                  reason=Reason(source="popular", evidence={"orders": count,
                                                            "scope": scope or "global"}))
             for pid, count in ranked]
    return ItemList(items=items, model_version=index.version, request_id=_request_id(request),
                    fallback=fallback)


def create_app(settings: ServingSettings) -> FastAPI:
    """Build the API for ``settings``; the artifact is loaded when the app starts."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.serving.load()
        yield

    app = FastAPI(title="recsys", version="0.1.0", lifespan=lifespan,
                  description="Cross-sell and recommendation API for online shops.")
    app.state.serving = ServingState(settings)

    @app.middleware("http")
    async def request_ids(request: Request, call_next: Any) -> Any:
        request.state.request_id = request.headers.get("x-request-id", "")[:64] or uuid.uuid4().hex
        response = await call_next(request)
        response.headers["X-Request-ID"] = request.state.request_id
        return response

    @app.exception_handler(NotReady)
    async def not_ready(request: Request, exc: NotReady) -> JSONResponse:
        return JSONResponse({"detail": f"no artifact loaded: {exc}"}, status_code=503)

    @app.get("/", include_in_schema=False)
    def root() -> dict[str, Any]:
        return {"service": "recsys", "docs": "/docs", "health": "/healthz", "ready": "/readyz",
                "version": "/v1/version", "popular": "/v1/popular?k=5"}

    app.include_router(ops)
    app.include_router(popular)
    return app


def app_from_env() -> FastAPI:
    """The app for ``uvicorn --factory``: settings from RECSYS_SERVING_* variables."""
    return create_app(ServingSettings())
