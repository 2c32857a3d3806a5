"""The API's request and response bodies (pydantic): they validate what comes in and are the
OpenAPI document's schemas. The list bodies themselves are written by ``service.list_body``
with orjson; ``ItemList`` and ``BundleList`` describe them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from recsys.serving.params import ID_PATTERN

__all__ = ["Reason", "Item", "ItemList", "BundleOut", "BundleList", "CartLine", "CartRequest",
           "EventIn", "EventAccepted", "DecisionIn", "Problem", "Problems", "INVALID",
           "LIST_RESPONSES", "NOT_READY", "STOREFRONT"]

IdString = Annotated[str, Field(min_length=1, max_length=128, pattern=ID_PATTERN)]


class Reason(BaseModel):
    source: str = Field(description="rule, also_viewed, bought_together, als, popular, "
                                    "pinned, replenishment, bundle, session, recently_viewed, "
                                    "trending")
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
    items: list[CartLine] = Field(min_length=1, max_length=100,
                                  description="the cart's lines, in any order")
    customer_id: IdString | None = None
    session_id: IdString | None = Field(
        None, description="the live session: its products add their neighbours, what it "
                          "bought is left out, and the lines it touched last count most")


def _iso_text(value: object) -> object:
    """A time is an ISO 8601 string, as the schema says (not a number of seconds like 0)."""
    if not isinstance(value, str):
        raise ValueError("must be an ISO 8601 date-time string")
    return value


def _given(*fields: str) -> dict[str, Any]:
    """JSON Schema: these fields are present and not null (what a route checks itself)."""
    return {"required": list(fields), "properties": {f: {"not": {"type": "null"}}
                                                     for f in fields}}


class EventIn(BaseModel):
    # the schema says what the route checks: a product for every type but impressions, and
    # a session or a customer
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"event_type": "click", "product_id": "P00180", "session_id": "s-1",
         "request_id": "0f3c...", "placement": "product_page", "position": 1}],
        "if": {"properties": {"event_type": {"const": "impression"}}},
        "else": _given("product_id"),
        "anyOf": [_given("session_id"), _given("customer_id")]})
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
    occurred_at: Annotated[datetime, BeforeValidator(_iso_text)] | None = None
    event_id: IdString | None = Field(None, description="idempotency key: an event whose "
                                      "event_id is stored already is not stored again")


class Problem(BaseModel):
    where: str = Field(description="the bad input, e.g. query.k or body.items.0.quantity")
    problem: str


class Problems(BaseModel):
    """The body of every 422 answer (see the RequestValidationError handler)."""

    detail: list[Problem] | str


class EventAccepted(BaseModel):
    id: int | None = Field(description="null while buffered: the database is down, the event "
                                       "is stored once it is back")
    request_id: str
    buffered: bool = False


class DecisionIn(BaseModel):
    # the fields each kind needs, as the route checks them
    model_config = ConfigDict(extra="forbid", json_schema_extra={"allOf": [
        {"if": {"properties": {"kind": {"const": kind}}}, "then": _given(*fields)}
        for kind, fields in (("block_product", ("product_id",)), ("block_rule", ("rule_key",)),
                             ("pin", ("product_id", "seed_id", "position")),
                             ("boost", ("product_id", "factor")))]})
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


INVALID: dict[int | str, dict[str, Any]] = {
    400: {"description": "a body that cannot be read as JSON (e.g. not UTF-8)"},
    422: {"model": Problems, "description": "invalid input: where, and what is wrong"}}
NOT_READY: dict[int | str, dict[str, Any]] = {503: {"description": "no artifact loaded"}}
STOREFRONT: dict[int | str, dict[str, Any]] = {
    401: {"description": "a storefront key is configured and neither it nor the server key "
                         "was given"}}
LIST_RESPONSES: dict[int | str, dict[str, Any]] = {200: {"model": ItemList}, **INVALID,
                                                   **NOT_READY}
