"""A customer's personalised list."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from recsys.serving import service
from recsys.serving.keys import CallerDep, without_purchase_details
from recsys.serving.params import CUSTOMER_LIST, ListQuery
from recsys.serving.routes.answer import list_response
from recsys.serving.schemas import INVALID, LIST_RESPONSES
from recsys.serving.state import Index, State

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
