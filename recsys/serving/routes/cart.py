"""A cart's add-ons."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from recsys.serving import service
from recsys.serving.keys import CallerDep
from recsys.serving.params import CART, ListQuery
from recsys.serving.routes.answer import list_response
from recsys.serving.schemas import INVALID, LIST_RESPONSES, STOREFRONT, CartRequest
from recsys.serving.state import Index, State

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["recommendations"], responses={**INVALID, **STOREFRONT})


@router.post("/cart/add-ons", responses=LIST_RESPONSES, response_class=Response)
async def cart_addons(request: Request, state: State, index: Index,
                      query: Annotated[ListQuery, Depends(CART.read)],
                      cart: CartRequest, caller: CallerDep) -> Response:
    """Add-ons for a whole cart: neighbour scores summed over every cart item, plus every
    rule whose antecedent the cart holds; cart items and their substitutes are left out."""
    caller.need_storefront()
    products = [line.product_id for line in cart.items]
    live = await service.live_recent(state, cart.session_id, query.history)
    return list_response(request, index, service.cart_list(
        state, index, products, cart.customer_id, cart.session_id, query, live))
