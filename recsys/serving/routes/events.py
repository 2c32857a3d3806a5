"""Storefront events (views, carts, purchases, impressions, clicks): the storefront key, a
rate limit per client, plausibility checks, and idempotency keys (``event_id`` in the body or
an ``Idempotency-Key`` header: a retried beacon is stored once)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Request, Response

from recsys.serving.event_guard import check_plausible
from recsys.serving.keys import CallerDep
from recsys.serving.params import ID_PATTERN
from recsys.serving.schemas import INVALID, STOREFRONT, EventAccepted, EventIn
from recsys.serving.state import State
from recsys.serving.store import DATABASE_DOWN

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["events"], responses=INVALID)
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", min_length=1,
                                              max_length=128, pattern=ID_PATTERN)]


@router.post("/events", status_code=201, response_model=EventAccepted, responses={
    **INVALID, **STOREFRONT, 429: {"description": "too many events from this client; "
                                                  "Retry-After says when to send again"},
    202: {"model": EventAccepted, "description": "buffered: the database is down"},
    503: {"description": "the database is down and the event buffer is full (Retry-After)"}})
def post_event(request: Request, response: Response, state: State, event: EventIn,
               caller: CallerDep, idempotency_key: IdempotencyKey = None) -> EventAccepted:
    """Store a storefront event (impressions and clicks carry the response's request_id).
    A retried event (same ``event_id`` or ``Idempotency-Key``) answers the first one's id;
    while the database is down the event is buffered on disk (202)."""
    caller.need_storefront()
    if event.event_type != "impression" and event.product_id is None:
        raise HTTPException(status_code=422, detail="product_id is required for "
                                                    f"{event.event_type} events")
    if event.session_id is None and event.customer_id is None:
        raise HTTPException(status_code=422, detail="an event needs a session_id or a "
                                                    "customer_id")
    if event.event_id and idempotency_key and event.event_id != idempotency_key:
        raise HTTPException(status_code=422, detail="event_id and the Idempotency-Key header "
                                                    "differ; send one of them")
    data = event.model_dump(exclude={"event_id"})
    check_plausible(data, state.settings)
    wait_s = state.event_limit.wait_s(request.client.host if request.client else "?")
    if wait_s:
        raise HTTPException(status_code=429, headers={"Retry-After": str(wait_s)},
                            detail=f"more than {state.settings.events_per_minute} events a "
                                   "minute from this client; try again later")
    state.live.record(event.event_type, event.product_id, event.session_id, event.customer_id,
                      event.event_id or idempotency_key)
    row = {"received_at": datetime.now(UTC), **data,
           "event_key": event.event_id or idempotency_key}
    if state.store.database_ok:  # else not even tried: the periodic check brings it back
        try:
            event_id = state.store.add_event(row)
            return EventAccepted(id=event_id, request_id=request.state.request_id)
        except DATABASE_DOWN:
            state.store.database_ok = False
    state.spool.append(row)  # kept on disk, written when the database is back; SpoolFull: 503
    response.status_code = 202
    return EventAccepted(id=None, request_id=request.state.request_id, buffered=True)
