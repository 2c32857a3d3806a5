"""A product's lists: also viewed, bought together, upsell, its bundles."""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from recsys.serving import service
from recsys.serving.keys import CallerDep
from recsys.serving.params import BUNDLES, ITEM_LIST, SIMILAR, UPSELL, ListQuery
from recsys.serving.routes.answer import list_response
from recsys.serving.schemas import INVALID, LIST_RESPONSES, NOT_READY, STOREFRONT, BundleList
from recsys.serving.state import Index, State

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["recommendations"], responses={**INVALID, **STOREFRONT})
ItemQuery = Annotated[ListQuery, Depends(ITEM_LIST.read)]


@router.get("/items/{product_id}/also-viewed", responses=LIST_RESPONSES,
            response_class=Response)
async def also_viewed(request: Request, state: State, index: Index,
                      query: ItemQuery, caller: CallerDep) -> Response:
    """Customers who viewed this product also viewed (item-kNN over view sessions, re-ranked
    by co-view support)."""
    caller.need_storefront()
    live = await service.live_recent(state, query.session_id, query.history)
    return list_response(request, index,
                         service.item_list(state, index, "also-viewed", query, live))


@router.get("/items/{product_id}/bought-together", responses=LIST_RESPONSES,
            response_class=Response)
async def bought_together(request: Request, state: State, index: Index,
                          query: ItemQuery, caller: CallerDep) -> Response:
    """Frequently bought together: EASE and co-purchase neighbours blended with the mined
    rules (the cart scorer on a one-product cart); substitutes are left out."""
    caller.need_storefront()
    live = await service.live_recent(state, query.session_id, query.history)
    return list_response(request, index,
                         service.item_list(state, index, "bought-together", query, live))


@router.get("/items/{product_id}/similar", responses=LIST_RESPONSES, response_class=Response)
async def similar(request: Request, state: State, index: Index,
                  query: Annotated[ListQuery, Depends(SIMILAR.read)],
                  caller: CallerDep) -> Response:
    """Alternatives to this product (substitutes): mined substitutes, co-viewed products of
    its category that are not bought with it, and catalogue content neighbours; each with
    its reason. Works for products added since the artifact (content neighbours)."""
    caller.need_storefront()
    return list_response(request, index, service.item_list(state, index, "similar", query))


@router.get("/items/{product_id}/upsell", responses=LIST_RESPONSES, response_class=Response)
async def upsell(request: Request, state: State, index: Index,
                 query: Annotated[ListQuery, Depends(UPSELL.read)],
                 caller: CallerDep) -> Response:
    """Better alternatives, priced within ``[serving] upsell_band`` times this product's price:
    same category or co-viewed substitutes, in stock, ranked by the sessions that viewed this
    product and bought the alternative instead, then by category orders (margin breaks ties);
    the reason gives the price difference. No best-seller fill: ``fallback`` is
    ``no_upsell`` (none qualifies) or ``no_price`` (the product has no price)."""
    caller.need_storefront()
    return list_response(request, index, service.upsell_list(state, index, query))


@router.get("/items/{product_id}/bundles",
            responses={200: {"model": BundleList}, **INVALID, **NOT_READY},
            response_class=Response)
async def bundles(request: Request, state: State, index: Index,
                  query: Annotated[ListQuery, Depends(BUNDLES.read)],
                  caller: CallerDep) -> Response:
    """Bundles holding this product, best expected order-value gain first."""
    caller.need_storefront()
    body = service.bundles(state, index, query, request.state.request_id)
    return Response(orjson.dumps(body), media_type="application/json")
