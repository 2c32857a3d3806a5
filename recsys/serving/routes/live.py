"""Lists from live events: recently viewed (per session, per customer) and trending."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from recsys.serving import livelists
from recsys.serving.keys import CallerDep
from recsys.serving.params import RECENT_CUSTOMER, RECENT_SESSION, TRENDING, ListQuery
from recsys.serving.routes.answer import list_response
from recsys.serving.schemas import INVALID, LIST_RESPONSES, STOREFRONT
from recsys.serving.service import arm_of
from recsys.serving.state import Index, State

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["live"], responses={**INVALID, **STOREFRONT})


@router.get("/sessions/{session_id}/recently-viewed", responses=LIST_RESPONSES,
            response_class=Response)
async def session_recent(request: Request, state: State, index: Index,
                         query: Annotated[ListQuery, Depends(RECENT_SESSION.read)],
                         caller: CallerDep) -> Response:
    """The products this session viewed, carted or bought (events posted to /v1/events),
    most recent first; empty when it has none (or its TTL passed). Storefront key."""
    caller.need_storefront()
    return list_response(request, index, (livelists.recently_viewed(state, index, query), None))


@router.get("/customers/{customer_id}/recently-viewed", responses=LIST_RESPONSES,
            response_class=Response)
async def customer_recent(request: Request, state: State, index: Index,
                          query: Annotated[ListQuery, Depends(RECENT_CUSTOMER.read)],
                          caller: CallerDep) -> Response:
    """The products this customer viewed, carted or bought lately, most recent first. A
    customer's history: the server key, or a customer token for this customer."""
    caller.need_customer(query.customer_id or "")
    return list_response(request, index, (livelists.recently_viewed(state, index, query), None))


@router.get("/trending", responses=LIST_RESPONSES, response_class=Response)
async def trending(request: Request, state: State, index: Index,
                   query: Annotated[ListQuery, Depends(TRENDING.read)],
                   caller: CallerDep) -> Response:
    """Products whose views and purchases in the last hours rise most above their usual
    rate (at least a minimum count), in a category when given; filled from best sellers
    (``fallback`` says which) when too few qualify."""
    caller.need_storefront()
    arm = arm_of(state.settings, query.customer_id, query.session_id)
    return list_response(request, index, (livelists.trending(state, index, query), arm))
