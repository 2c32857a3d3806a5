"""A customer's personalised list."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from recsys.serving import service
from recsys.serving.params import CUSTOMER_LIST, ListQuery
from recsys.serving.routes.answer import list_response
from recsys.serving.schemas import INVALID, LIST_RESPONSES
from recsys.serving.state import Index, State

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["recommendations"], responses=INVALID)


@router.get("/customers/{customer_id}/recommendations", responses=LIST_RESPONSES,
            response_class=Response)
async def customer_recommendations(
        request: Request, state: State, index: Index,
        query: Annotated[ListQuery, Depends(CUSTOMER_LIST.read)]) -> Response:
    """Personalised list: the customer's repeat purchases (durables bought once left out,
    consumables marked due or not), then ALS; best sellers first with little history."""
    return list_response(request, index, service.customer_list(state, index, query))
