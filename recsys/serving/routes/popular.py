"""Best sellers."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from recsys.serving import service
from recsys.serving.keys import CallerDep
from recsys.serving.params import POPULAR, ListQuery
from recsys.serving.routes.answer import list_response
from recsys.serving.schemas import INVALID, LIST_RESPONSES, STOREFRONT
from recsys.serving.state import Index, State

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["recommendations"], responses={**INVALID, **STOREFRONT})


@router.get("/popular", responses=LIST_RESPONSES, response_class=Response)
async def popular(request: Request, state: State, index: Index,
                  query: Annotated[ListQuery, Depends(POPULAR.read)],
                  caller: CallerDep) -> Response:
    """Best sellers, globally or in a category (any level of its path)."""
    caller.need_storefront()
    return list_response(request, index, service.popular_list(state, index, query))
