"""What the API answers, as plain functions over the serving state: the shopper's A/B arm,
each list ranked for that arm, the JSON body. The routes, the fast path and the console all
call these (never each other), so a list is computed one way wherever it is shown."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

import orjson

from recsys.analytics.experiments import assign_arm, unit_id
from recsys.config import ServingSettings
from recsys.serving import recommend
from recsys.serving.index import ServingIndex
from recsys.serving.params import ListQuery
from recsys.serving.upsell import upsell

if TYPE_CHECKING:
    from recsys.serving.state import ServingState

__all__ = ["Answer", "arm_of", "ranked", "list_body", "item_list", "cart_list",
           "customer_list", "popular_list", "bundles", "upsell_list", "product_lists"]

Answer = tuple[recommend.Result, str | None]  # the list, and the shopper's A/B arm
ItemKind = Literal["also-viewed", "bought-together"]
ITEM_LISTS = {"also-viewed": recommend.also_viewed,
              "bought-together": recommend.bought_together}


def arm_of(settings: ServingSettings, customer_id: str | None,
           session_id: str | None) -> str | None:
    """The experiment arm of this shopper (None without an A/B test or without any id)."""
    if not settings.ab_test:
        return None
    unit = unit_id(customer_id, session_id, settings.experiment.unit)
    if unit is None:
        return None
    return assign_arm(unit, salt=settings.experiment.salt, split=settings.experiment.split)


def ranked(state: ServingState, index: ServingIndex, arm: str | None,
           options: recommend.Options,
           compute: Callable[[recommend.Decisions], recommend.Result]) -> recommend.Result:
    """The list for this arm: the control arm gets best sellers, every other arm the engine."""
    decisions = state.store.decisions()
    if arm is not None and arm == state.settings.experiment.control_arm:
        return recommend.popular(index, options, decisions)
    return compute(decisions)


def list_body(index: ServingIndex, result: recommend.Result, request_id: str,
              arm: str | None) -> bytes:
    """The JSON body of a list response (``ItemList`` in the OpenAPI document)."""
    return orjson.dumps({"items": result.items, "model_version": index.version,
                         "request_id": request_id, "fallback": result.fallback,
                         "applied": result.applied, "arm": arm})


def item_list(state: ServingState, index: ServingIndex, kind: ItemKind,
              query: ListQuery) -> Answer:
    """A product's also-viewed or bought-together list for this shopper."""
    compute, product_id, options = ITEM_LISTS[kind], query.product_id or "", query.options
    arm = arm_of(state.settings, query.customer_id, query.session_id)
    return ranked(state, index, arm, options,
                  lambda d: compute(index, product_id, options, d)), arm


def cart_list(state: ServingState, index: ServingIndex, products: list[str],
              customer_id: str | None, session_id: str | None, query: ListQuery) -> Answer:
    """Add-ons for a cart of these products."""
    arm = arm_of(state.settings, customer_id, session_id)
    return ranked(state, index, arm, query.options, lambda d: recommend.cart_addons(
        index, products, query.options, d)), arm


def customer_list(state: ServingState, index: ServingIndex, query: ListQuery) -> Answer:
    """A customer's personalised list (``history``: what an anonymous shopper looked at)."""
    arm = arm_of(state.settings, query.customer_id, query.session_id)
    return ranked(state, index, arm, query.options, lambda d: recommend.for_customer(
        index, query.customer_id, list(query.history), query.options, d)), arm


def popular_list(state: ServingState, index: ServingIndex, query: ListQuery) -> Answer:
    """Best sellers (every arm: they are the control arm's list)."""
    return (recommend.popular(index, query.options, state.store.decisions()),
            arm_of(state.settings, query.customer_id, query.session_id))


def upsell_list(state: ServingState, index: ServingIndex, query: ListQuery) -> Answer:
    """Pricier alternatives to a product (the control arm: by category orders alone)."""
    arm = arm_of(state.settings, query.customer_id, query.session_id)
    control = arm is not None and arm == state.settings.experiment.control_arm
    return upsell(index, query.product_id or "", query.options, state.store.decisions(),
                  band=state.settings.upsell_band, popular_only=control,
                  customer_id=query.customer_id), arm


def bundles(state: ServingState, index: ServingIndex, query: ListQuery,
            request_id: str) -> dict[str, Any]:
    """The bundles answer (``BundleList`` in the OpenAPI document)."""
    found = recommend.bundles_for(index, query.product_id or "", query.options.k,
                                  in_stock_only=query.options.in_stock_only,
                                  blocked=state.store.decisions().blocked_products)
    return {"bundles": found, "model_version": index.version, "request_id": request_id,
            "fallback": None if found else "no_bundles",
            "arm": arm_of(state.settings, query.customer_id, query.session_id)}


def product_lists(state: ServingState, index: ServingIndex,
                  product_id: str) -> dict[str, list[dict[str, Any]]]:
    """What the API shows for a product now (the engine's arm, default options): its
    bought-together and also-viewed lists and its first bundles."""
    decisions, options = state.store.decisions(), recommend.Options(k=10)
    return {"bought_together": recommend.bought_together(index, product_id, options,
                                                         decisions).items,
            "also_viewed": recommend.also_viewed(index, product_id, options, decisions).items,
            "bundles": recommend.bundles_for(index, product_id, 5,
                                             blocked=decisions.blocked_products)}
