"""Storefront events (views, carts, purchases, impressions, clicks)."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, HTTPException, Request, Response

from recsys.serving.schemas import INVALID, EventAccepted, EventIn
from recsys.serving.state import State
from recsys.serving.store import DATABASE_DOWN

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["events"], responses=INVALID)


@router.post("/events", status_code=201, response_model=EventAccepted, responses={
    **INVALID, 202: {"model": EventAccepted, "description": "buffered: the database is down"},
    503: {"description": "the database is down and the event buffer is full (Retry-After)"}})
def post_event(request: Request, response: Response, state: State,
               event: EventIn) -> EventAccepted:
    """Store a storefront event (impressions and clicks carry the response's request_id)."""
    if event.event_type != "impression" and event.product_id is None:
        raise HTTPException(status_code=422, detail="product_id is required for "
                                                    f"{event.event_type} events")
    if event.session_id is None and event.customer_id is None:
        raise HTTPException(status_code=422, detail="an event needs a session_id or a "
                                                    "customer_id")
    row = {"received_at": datetime.now(UTC), **event.model_dump()}
    if state.store.database_ok:  # else not even tried: the periodic check brings it back
        try:
            event_id = state.store.add_event(row)
            return EventAccepted(id=event_id, request_id=request.state.request_id)
        except DATABASE_DOWN:
            state.store.database_ok = False
    state.spool.append(row)  # kept on disk, written when the database is back; SpoolFull: 503
    response.status_code = 202
    return EventAccepted(id=None, request_id=request.state.request_id, buffered=True)
