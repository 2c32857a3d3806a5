"""A customer's personalised list, and their profile (server key only)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Request
from fastapi.responses import JSONResponse, Response

from recsys.serving import service
from recsys.serving.keys import CallerDep, without_purchase_details
from recsys.serving.params import CUSTOMER_LIST, ID_PATTERN, ListQuery
from recsys.serving.profiles import profile
from recsys.serving.routes.answer import list_response
from recsys.serving.schemas import INVALID, LIST_RESPONSES
from recsys.serving.state import Admin, Index, State

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["recommendations"], responses={
    **INVALID, 401: {"description": "neither the server key nor a customer token for this "
                                    "customer"}})


@router.get("/customers/{customer_id}/recommendations", responses=LIST_RESPONSES,
            response_class=Response)
async def customer_recommendations(
        request: Request, state: State, index: Index,
        query: Annotated[ListQuery, Depends(CUSTOMER_LIST.read)],
        caller: CallerDep) -> Response:
    """Personalised list: the customer's repeat purchases (durables bought once left out,
    consumables marked due or not), then ALS; best sellers first with little history.
    Needs the server key, or a customer token for this customer (then without the purchase
    details: times bought, days since, due)."""
    full = caller.need_customer(query.customer_id or "")
    result, arm = service.customer_list(state, index, query)
    return list_response(request, index,
                         (result if full else without_purchase_details(result), arm))


@router.get("/customers/{customer_id}/profile", responses={
    401: {"description": "missing or wrong X-API-Key"},
    404: {"description": "the served version does not know this customer"}})
async def customer_profile(state: State, index: Index, _: Admin,
                           customer_id: Annotated[str, Path(
                               min_length=1, max_length=128, pattern=ID_PATTERN,
                               description="customer id")]) -> JSONResponse:
    """A customer's lifecycle stage, RFM segment and value (historical and predicted CLV,
    P(alive), churn risk, discount-only) for a checkout widget. Needs the server (admin)
    key in ``X-API-Key``: never call it from a browser."""
    found = profile(state.settings.artifacts, index, customer_id)
    if found is None:
        raise HTTPException(status_code=404, detail=f"unknown customer_id {customer_id!r}")
    return JSONResponse(found)
