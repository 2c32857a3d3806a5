"""Storefront events (views, carts, purchases, impressions, clicks)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request

from recsys.serving.schemas import INVALID, EventAccepted, EventIn
from recsys.serving.state import State

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["events"], responses=INVALID)


@router.post("/events", status_code=201, response_model=EventAccepted, responses=INVALID)
def post_event(request: Request, state: State, event: EventIn) -> EventAccepted:
    """Store a storefront event (impressions and clicks carry the response's request_id)."""
    if event.event_type != "impression" and event.product_id is None:
        raise HTTPException(status_code=422, detail="product_id is required for "
                                                    f"{event.event_type} events")
    if event.session_id is None and event.customer_id is None:
        raise HTTPException(status_code=422, detail="an event needs a session_id or a "
                                                    "customer_id")
    event_id = state.store.add_event(event.model_dump())
    state.live.record(event.event_type, event.product_id, event.session_id, event.customer_id)
    return EventAccepted(id=event_id, request_id=request.state.request_id)
