"""The FastAPI application: built by ``create_app(settings)``, index loaded in ``lifespan``.

Routes only look things up (``recommend``) and serialise with orjson. The artifact is hot
reloaded when the CURRENT pointer moves (or on ``POST /admin/reload``): the new version is
verified and loaded beside the old one and swapped in one assignment, so requests in flight
finish on the version they started with; a failed load keeps the old version serving.
"""

from __future__ import annotations

import asyncio
import gc
import hmac
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from pydantic import BaseModel, ConfigDict, Field
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from recsys.artifacts import ArtifactStore
from recsys.config import ServingSettings
from recsys.console import create_console
from recsys.errors import RecsysError
from recsys.serving import recommend
from recsys.serving.answers import arm_of, list_body, ranked
from recsys.serving.fastpath import FastPath
from recsys.serving.index import ServingIndex, load_index
from recsys.serving.store import DECISION_KINDS, ServingStore
from recsys.storefront.pages import mount_storefront

__all__ = ["create_app", "app_from_env"]

log = logging.getLogger("recsys.serving")
# Set by ``recsys serve --workers N`` before the workers start: prometheus_client then keeps
# every worker's values in files there, and /metrics adds them up.
MULTIPROCESS = "PROMETHEUS_MULTIPROC_DIR" in os.environ
access_log = logging.getLogger("recsys.access")

ID_PATTERN = r"^[^\x00-\x1f\x7f]+$"  # printable: no control characters
ProductId = Annotated[str, Path(min_length=1, max_length=128, pattern=ID_PATTERN,
                                description="product id", examples=["P00180"])]
CustomerId = Annotated[str, Path(min_length=1, max_length=128, pattern=ID_PATTERN,
                                 description="customer id", examples=["C000001"])]
IdString = Annotated[str, Field(min_length=1, max_length=128, pattern=ID_PATTERN)]


# -- state ---------------------------------------------------------------------------------


class ServingState:
    """The index being served, why a newer one is not, and the store."""

    def __init__(self, settings: ServingSettings, version_gauge: Gauge | None = None) -> None:
        self.settings = settings
        self.version_gauge = version_gauge  # 1 for the version this worker serves
        self.index: ServingIndex | None = None
        self.error: str | None = None
        self.failed_version: str | None = None
        self.store = ServingStore(settings.database_url,
                                  refresh_seconds=settings.decisions_refresh_s,
                                  category_cap=settings.category_cap,
                                  best_sellers_first=frozenset(
                                      settings.best_sellers_first_segments))
        self._reload_lock = asyncio.Lock()

    def load(self, version: str | None = None) -> bool:
        """Load (and verify) a version; on failure keep serving the current one."""
        try:
            index = load_index(self.settings.artifacts, version)
            recommend.warm_up(index)
        except RecsysError as exc:
            self.error = f"{exc}"
            self.failed_version = version or self.pointer()
            log.error("artifact load failed, still serving %s: %s",
                      self.index.version if self.index else "nothing", exc)
            return False
        previous, self.index = self.index, index  # one assignment: requests hold the index
        self.error, self.failed_version = None, None  # they started with
        if self.version_gauge is not None:
            if previous is not None and previous.version != index.version:
                self.version_gauge.labels(version=previous.version).set(0)
            self.version_gauge.labels(version=index.version).set(1)
        # The index's Python objects live as long as it does: keep them out of the garbage
        # collector's full passes (which would otherwise walk them during requests).
        gc.unfreeze()
        gc.collect()
        gc.freeze()
        log.info("serving artifact version %s", index.version)
        return True

    def pointer(self) -> str | None:
        try:
            return ArtifactStore(self.settings.artifacts).current_version()
        except RecsysError as exc:
            self.error = str(exc)
            return None

    async def reload_if_moved(self, *, force: bool = False) -> bool:
        async with self._reload_lock:
            target = self.pointer()
            if target is None:
                return False
            current = self.index.version if self.index else None
            if not force and (target == current or target == self.failed_version):
                return False
            return await asyncio.to_thread(self.load, target)


async def get_state(request: Request) -> ServingState:
    state: ServingState = request.app.state.serving
    return state


State = Annotated[ServingState, Depends(get_state)]


class NotReady(Exception):
    """Raised by routes that need an index when none is loaded (answered with 503)."""


async def get_index(state: State) -> ServingIndex:
    if state.index is None:
        raise NotReady(state.error or "no artifact loaded")
    return state.index


Index = Annotated[ServingIndex, Depends(get_index)]


def require_admin(state: State,
                  x_api_key: Annotated[str | None, Header(max_length=256)] = None) -> None:
    """Admin endpoints need the API key (constant-time comparison)."""
    expected = state.settings.api_key.encode()
    if x_api_key is None or not hmac.compare_digest(x_api_key.encode(), expected):
        raise HTTPException(status_code=401, detail="missing or wrong X-API-Key")


Admin = Annotated[None, Depends(require_admin)]


# -- schemas (for validation and the OpenAPI document) --------------------------------------


class Reason(BaseModel):
    source: str = Field(description="rule, also_viewed, bought_together, als, popular, "
                                    "pinned, replenishment, bundle")
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
    fallback: str | None = Field(None, description="which fallback filled the list, if any")
    applied: list[str] = Field(default_factory=list,
                               description="business rules that changed the list")
    arm: str | None = Field(None, description="A/B test arm (null outside the experiment)")


class BundleOut(BaseModel):
    products: list[dict[str, Any]]
    expected_gain: float
    co_purchases: int
    anchor: str
    anchor_confidence: float
    reason: Reason


class BundleList(BaseModel):
    bundles: list[BundleOut]
    model_version: str
    request_id: str
    fallback: str | None = None
    arm: str | None = None


class CartLine(BaseModel):
    model_config = ConfigDict(extra="forbid")
    product_id: IdString
    quantity: int = Field(1, ge=1, le=10_000)


class CartRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"items": [{"product_id": "P00180", "quantity": 1}], "customer_id": "C000001"}]})
    items: list[CartLine] = Field(min_length=1, max_length=100)
    customer_id: IdString | None = None
    session_id: IdString | None = None


class EventIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"event_type": "click", "product_id": "P00180", "session_id": "s-1",
         "request_id": "0f3c...", "placement": "product_page", "position": 1}]})
    event_type: Literal["view", "add_to_cart", "purchase", "impression", "click"]
    product_id: IdString | None = None
    session_id: IdString | None = None
    customer_id: IdString | None = None
    request_id: Annotated[str, Field(min_length=1, max_length=64, pattern=ID_PATTERN)] | None = None
    placement: Annotated[str, Field(min_length=1, max_length=64, pattern=ID_PATTERN)] | None = None
    position: int | None = Field(None, ge=1, le=1000)
    quantity: float | None = Field(None, gt=0, le=1_000_000)
    price: float | None = Field(None, ge=0, le=1e9)
    order_id: IdString | None = None
    occurred_at: datetime | None = None


class Problem(BaseModel):
    where: str = Field(description="the bad input, e.g. query.k or body.items.0.quantity")
    problem: str


class Problems(BaseModel):
    """The body of every 422 answer (see the RequestValidationError handler)."""

    detail: list[Problem] | str


class EventAccepted(BaseModel):
    id: int
    request_id: str


class DecisionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["block_product", "block_rule", "pin", "boost"]
    product_id: IdString | None = None
    seed_id: IdString | None = None
    rule_key: Annotated[str, Field(min_length=4, max_length=1024,
                                   pattern=ID_PATTERN)] | None = None
    position: int | None = Field(None, ge=1, le=100)
    factor: float | None = Field(None, gt=0, le=100)
    # free text, but no NUL: PostgreSQL cannot store it in a text column
    reason: Annotated[str, Field(max_length=1024, pattern=r"^[^\x00]*$")] | None = None
    created_by: IdString | None = None


# -- helpers -------------------------------------------------------------------------------


def _json(payload: dict[str, Any], status: int = 200) -> Response:
    return Response(orjson.dumps(payload), status_code=status, media_type="application/json")


def _options(k: int, category: str | None, exclude: list[str] | None, in_stock_only: bool,
             rank_by: Literal["score", "value"] = "score") -> recommend.Options:
    return recommend.Options(k=k, category=category, exclude=frozenset(exclude or ()),
                             in_stock_only=in_stock_only, rank_by=rank_by)


def _arm(state: ServingState, customer_id: str | None, session_id: str | None) -> str | None:
    return arm_of(state.settings, customer_id, session_id)


def _ranked(state: ServingState, index: ServingIndex, arm: str | None,
            options: recommend.Options,
            compute: Callable[[recommend.Decisions], recommend.Result]) -> recommend.Result:
    return ranked(state.store, state.settings, index, arm, options, compute)


def _list_response(request: Request, index: ServingIndex, result: recommend.Result,
                   arm: str | None = None) -> Response:
    if result.fallback:
        route = request.scope.get("route")
        request.app.state.metrics["fallbacks"].labels(
            route=getattr(route, "path", "?"), fallback=result.fallback).inc()
    return Response(list_body(index, result, request.state.request_id, arm),
                    media_type="application/json")


K = Annotated[int, Query(ge=1, le=100, description="how many items (1..100)")]
CategoryQ = Annotated[str | None, Query(min_length=1, max_length=256,
                                        description="only products in this category path")]
ExcludeQ = Annotated[list[Annotated[str, Field(min_length=1, max_length=128,
                                               pattern=ID_PATTERN)]] | None,
                     Query(max_length=100, description="product ids to leave out")]
InStock = Annotated[bool, Query(description="leave out out-of-stock and inactive products")]
UnitQ = Annotated[str | None, Query(min_length=1, max_length=128, pattern=ID_PATTERN,
                                    description="the shopper (for the A/B test arm)")]
INVALID: dict[int | str, dict[str, Any]] = {
    422: {"model": Problems, "description": "invalid input: where, and what is wrong"}}
LIST_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": ItemList}, **INVALID, 503: {"description": "no artifact loaded"}}


# -- routers -------------------------------------------------------------------------------

ops = APIRouter(tags=["operations"])
items_router = APIRouter(prefix="/v1", tags=["recommendations"], responses=INVALID)
events_router = APIRouter(prefix="/v1", tags=["events"], responses=INVALID)
admin = APIRouter(prefix="/admin", tags=["admin"], responses={
    **INVALID, 401: {"description": "missing or wrong X-API-Key"}})


@ops.get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@ops.get("/readyz", responses={503: {"description": "no artifact loaded"}})
async def readyz(state: State) -> JSONResponse:
    """Readiness: an artifact version is loaded; its version, age, and any failed reload."""
    if state.index is None:
        return JSONResponse({"status": "not_ready", "reason": state.error}, status_code=503)
    idx = state.index
    return JSONResponse({"status": "ready", "version": idx.version,
                         "age_seconds": round(idx.age_seconds(), 1),
                         "loaded_at": idx.loaded_at.isoformat(), "error": state.error,
                         "failed_version": state.failed_version})


@ops.get("/metrics", response_class=Response)
def metrics(request: Request) -> Response:
    """Prometheus metrics: requests, latency, fallbacks, served version. With several
    workers (``PROMETHEUS_MULTIPROC_DIR`` set, as ``recsys serve --workers N`` does) the
    figures of all workers, added up; the version is 1 while any live worker serves it."""
    registry: CollectorRegistry = request.app.state.registry
    if MULTIPROCESS:
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


@items_router.get("/version")
async def version(index: Index) -> dict[str, Any]:
    """The artifact version being served and how it was built."""
    m = index.manifest
    return {"model_version": m.version, "created_at": m.created_at, "git_commit": m.git_commit,
            "config_hash": m.config_hash, "metrics": m.metrics}


@items_router.get("/items/{product_id}/also-viewed", responses=LIST_RESPONSES,
                  response_class=Response)
async def also_viewed(request: Request, state: State, index: Index, product_id: ProductId,
                      k: K = 10, category: CategoryQ = None, exclude: ExcludeQ = None,
                      in_stock_only: InStock = True, customer_id: UnitQ = None,
                      session_id: UnitQ = None) -> Response:
    """Customers who viewed this product also viewed (item-kNN over view sessions, re-ranked
    by co-view support)."""
    options = _options(k, category, exclude, in_stock_only)
    arm = _arm(state, customer_id, session_id)
    result = _ranked(state, index, arm, options,
                     lambda d: recommend.also_viewed(index, product_id, options, d))
    return _list_response(request, index, result, arm)


@items_router.get("/items/{product_id}/bought-together", responses=LIST_RESPONSES,
                  response_class=Response)
async def bought_together(request: Request, state: State, index: Index, product_id: ProductId,
                          k: K = 10, category: CategoryQ = None, exclude: ExcludeQ = None,
                          in_stock_only: InStock = True, customer_id: UnitQ = None,
                          session_id: UnitQ = None) -> Response:
    """Frequently bought together: EASE and co-purchase neighbours blended with the mined
    rules (the cart scorer on a one-product cart); substitutes are left out."""
    options = _options(k, category, exclude, in_stock_only)
    arm = _arm(state, customer_id, session_id)
    result = _ranked(state, index, arm, options,
                     lambda d: recommend.bought_together(index, product_id, options, d))
    return _list_response(request, index, result, arm)


@items_router.get("/items/{product_id}/bundles",
                  responses={200: {"model": BundleList}, **INVALID,
                             503: {"description": "no artifact loaded"}},
                  response_class=Response)
async def bundles(request: Request, state: State, index: Index, product_id: ProductId, k: K = 5,
                  in_stock_only: InStock = True, customer_id: UnitQ = None,
                  session_id: UnitQ = None) -> Response:
    """Bundles holding this product, best expected order-value gain first."""
    found = recommend.bundles_for(index, product_id, k, in_stock_only=in_stock_only,
                                  blocked=state.store.decisions().blocked_products)
    return _json({"bundles": found, "model_version": index.version,
                  "request_id": request.state.request_id,
                  "fallback": None if found else "no_bundles",
                  "arm": _arm(state, customer_id, session_id)})


@items_router.post("/cart/add-ons", responses=LIST_RESPONSES, response_class=Response)
async def cart_addons(request: Request, state: State, index: Index, cart: CartRequest, k: K = 10,
                      category: CategoryQ = None, exclude: ExcludeQ = None,
                      in_stock_only: InStock = True,
                      rank_by: Annotated[Literal["score", "value"], Query(
                          description="score, or expected order-value gain (score x price x "
                                "margin)")] = "score") -> Response:
    """Add-ons for a whole cart: neighbour scores summed over every cart item, plus every
    rule whose antecedent the cart holds; cart items and their substitutes are left out."""
    products = [line.product_id for line in cart.items]
    options = _options(k, category, exclude, in_stock_only, rank_by)
    arm = _arm(state, cart.customer_id, cart.session_id)
    result = _ranked(state, index, arm, options,
                     lambda d: recommend.cart_addons(index, products, options, d))
    return _list_response(request, index, result, arm)


@items_router.get("/customers/{customer_id}/recommendations", responses=LIST_RESPONSES,
                  response_class=Response)
async def customer_recommendations(
        request: Request, state: State, index: Index, customer_id: CustomerId, k: K = 10,
        category: CategoryQ = None, exclude: ExcludeQ = None, in_stock_only: InStock = True,
        history: Annotated[list[Annotated[str, Field(min_length=1, max_length=128,
                                                     pattern=ID_PATTERN)]] | None,
                           Query(max_length=100, description="products the shopper has "
                                 "interacted with (anonymous or new customers)")] = None,
        session_id: UnitQ = None,
) -> Response:
    """Personalised list: the customer's repeat purchases (durables bought once left out,
    consumables marked due or not), then ALS; best sellers first with little history."""
    options = _options(k, category, exclude, in_stock_only)
    arm = _arm(state, customer_id, session_id)
    result = _ranked(state, index, arm, options, lambda d: recommend.for_customer(
        index, customer_id, list(history or ()), options, d))
    return _list_response(request, index, result, arm)


@items_router.get("/popular", responses=LIST_RESPONSES, response_class=Response)
async def popular(request: Request, state: State, index: Index, k: K = 10,
                  category: CategoryQ = None, exclude: ExcludeQ = None,
                  in_stock_only: InStock = True, customer_id: UnitQ = None,
                  session_id: UnitQ = None) -> Response:
    """Best sellers, globally or in a category (any level of its path)."""
    result = recommend.popular(index, _options(k, category, exclude, in_stock_only),
                               state.store.decisions())
    return _list_response(request, index, result, _arm(state, customer_id, session_id))


@events_router.post("/events", status_code=201, response_model=EventAccepted,
                    responses=INVALID)
def post_event(request: Request, state: State, event: EventIn) -> EventAccepted:
    """Store a storefront event (impressions and clicks carry the response's request_id)."""
    if event.event_type != "impression" and event.product_id is None:
        raise HTTPException(status_code=422, detail="product_id is required for "
                                                    f"{event.event_type} events")
    if event.session_id is None and event.customer_id is None:
        raise HTTPException(status_code=422, detail="an event needs a session_id or a "
                                                    "customer_id")
    event_id = state.store.add_event(event.model_dump())
    return EventAccepted(id=event_id, request_id=request.state.request_id)


@admin.post("/reload", responses={409: {"description": "the new version was refused; "
                                                    "the old one keeps serving"}})
async def reload(state: State, _: Admin) -> JSONResponse:
    """Load the version CURRENT points at now (verified); the old one keeps serving on error."""
    await state.reload_if_moved(force=True)
    body = {"version": state.index.version if state.index else None, "error": state.error}
    return JSONResponse(body, status_code=200 if state.error is None else 409)


@admin.get("/decisions")
def list_decisions(state: State, _: Admin) -> list[dict[str, Any]]:
    """Active merchandiser decisions."""
    return [{k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in row.items()}
            for row in state.store.list_decisions()]


@admin.post("/decisions", status_code=201)
def add_decision(state: State, _: Admin, decision: DecisionIn) -> dict[str, Any]:
    """Block a product or a rule, pin a product at a position for a seed, boost or bury."""
    need = {"block_product": ("product_id",), "block_rule": ("rule_key",),
            "pin": ("product_id", "seed_id", "position"), "boost": ("product_id", "factor")}
    missing = [f for f in need[decision.kind] if getattr(decision, f) is None]
    if missing:
        raise HTTPException(status_code=422, detail=f"{decision.kind} needs {missing}")
    assert decision.kind in DECISION_KINDS
    decision_id = state.store.add_decision(**decision.model_dump())
    return {"id": decision_id}


@admin.delete("/decisions/{decision_id}",
              responses={404: {"description": "no active decision with this id"}})
def remove_decision(state: State, _: Admin,
                    decision_id: Annotated[int, Path(ge=1, le=2**31 - 1)]) -> dict[str, Any]:
    """Undo a decision (kept, marked inactive, for the audit trail)."""
    if not state.store.deactivate_decision(decision_id):
        raise HTTPException(status_code=404, detail=f"no active decision {decision_id}")
    return {"id": decision_id, "active": False}


# -- the app -------------------------------------------------------------------------------


def _metrics(registry: CollectorRegistry) -> dict[str, Any]:
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
                    "request_id": request_id, "method": scope["method"], "path": scope["path"],
                    "route": path, "status": status, "ms": round(elapsed * 1000, 3)}})


def create_app(settings: ServingSettings, *, fast_path: bool = True) -> FastAPI:
    """Build the API for ``settings``; the artifact is loaded when the app starts.
    ``fast_path=False`` leaves every request to the FastAPI routes (tests compare the two)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state: ServingState = app.state.serving
        await asyncio.to_thread(state.load)
        task = None
        if settings.reload_interval_s > 0:
            task = asyncio.create_task(_watch(state, settings.reload_interval_s))
        yield
        if task:
            task.cancel()
        state.store.dispose()
        if MULTIPROCESS:  # this worker's live gauges leave the sums
            mark_process_dead(os.getpid())

    app = FastAPI(title="recsys", version="0.1.0", lifespan=lifespan,
                  description="Cross-sell and recommendation API for online shops. Every list "
                              "item says why it is there (reason); every response carries the "
                              "model_version and a request_id.")
    app.state.registry = CollectorRegistry()
    app.state.metrics = _metrics(app.state.registry)
    app.state.serving = ServingState(settings, app.state.metrics["version"])
    if fast_path:  # innermost, so CORS applies to its answers too
        app.add_middleware(FastPath)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins,
                           allow_methods=["GET", "POST"], allow_headers=["*"],
                           expose_headers=["X-Request-ID"])

    app.add_middleware(Observe)  # outermost: it also times and counts the fast path

    @app.exception_handler(NotReady)
    async def not_ready(request: Request, exc: NotReady) -> JSONResponse:
        return JSONResponse({"detail": f"no artifact loaded: {exc}"}, status_code=503)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [{"where": ".".join(str(p) for p in err.get("loc", ())),
                     "problem": err.get("msg", "")} for err in exc.errors()]
        return JSONResponse({"detail": problems}, status_code=422)

    @app.get("/", include_in_schema=False)
    def root() -> dict[str, Any]:
        return {"service": "recsys", "docs": "/docs", "health": "/healthz", "ready": "/readyz",
                "version": "/v1/version", "popular": "/v1/popular?k=5"}

    for router in (ops, items_router, events_router, admin):
        app.include_router(router)
    mount_storefront(app, demo_pages=settings.storefront)
    app.include_router(create_console(app.state.serving))
    return app


async def _watch(state: ServingState, interval: float) -> None:
    """Poll the CURRENT pointer; load a new version when it moves."""
    while True:
        await asyncio.sleep(interval)
        try:
            await state.reload_if_moved()
        except Exception:  # noqa: BLE001 - the watcher must outlive any one failure
            log.exception("reload check failed")


def app_from_env() -> FastAPI:
    """The app for ``uvicorn --factory``: settings from RECSYS_SERVING_* variables."""
    return create_app(ServingSettings())
