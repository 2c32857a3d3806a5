"""What the API answers, as plain functions over the serving state: the shopper's A/B arm,
each list ranked for that arm, the JSON body. The routes, the fast path and the console all
call these (never each other), so a list is computed one way wherever it is shown."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Literal

import orjson

from recsys.analytics.experiments import assign_arm, unit_id
from recsys.config import ServingSettings
from recsys.serving import customer_view, livelists, recommend, similar
from recsys.serving.index import ServingIndex
from recsys.serving.live import NOTHING, Recent
from recsys.serving.params import ListQuery
from recsys.serving.session import Session, line_weights, session_of_recent
from recsys.serving.session_weights import Placed, line_decay_of, session_weights_of
from recsys.serving.upsell import upsell

if TYPE_CHECKING:
    from recsys.serving.state import ServingState

__all__ = ["Answer", "UnknownCategory", "category_known", "arm_of", "ranked", "list_body",
           "item_list", "cart_list", "customer_list", "popular_list", "recent_of", "session_of",
           "session_at", "placed", "live_recent", "bundles", "upsell_list", "product_lists", "customer_lists",
           "UPSELL_SEEDS"]

Answer = tuple[recommend.Result, str | None]  # the list, and the shopper's A/B arm
UPSELL_SEEDS = 3  # the customer page shows the upsell lists of this many last purchases
ItemKind = Literal["also-viewed", "bought-together", "similar"]
ITEM_LISTS = {"also-viewed": recommend.also_viewed,
              "bought-together": recommend.bought_together}
PLACEMENTS: dict[str, Placed] = {"also-viewed": "also_viewed",
                                 "bought-together": "bought_together"}


class UnknownCategory(ValueError):
    """A ``category`` no product of the catalog is in: every list endpoint answers 422."""

    def __init__(self, index: ServingIndex, category: str) -> None:
        tops = sorted({path.split(" > ")[0] for path in index.category_paths})
        known = ", ".join(tops[:10]) + (", ..." if len(tops) > 10 else "") if tops else "none"
        super().__init__(f"unknown category {category!r}: no product of the catalog is in it "
                         f"(top-level categories: {known})")


def category_known(index: ServingIndex, query: ListQuery) -> bool:
    """Whether the query's category (if any) is a level of some product's category path."""
    category = query.options.category
    return category is None or category in index.category_paths


def _check_category(index: ServingIndex, query: ListQuery) -> None:
    if not category_known(index, query):
        raise UnknownCategory(index, query.options.category or "")


def placed(settings: ServingSettings, placement: Placed,
            options: recommend.Options) -> recommend.Options:
    """The request's options with the placement's minimum evidence and fill."""
    floor = getattr(settings.placements, placement)
    return replace(options, min_score_share=floor.min_score_share,
                   max_p_value=floor.max_p_value, fill=floor.fill)


def arm_of(settings: ServingSettings, customer_id: str | None,
           session_id: str | None) -> str | None:
    """The experiment arm of this shopper (None without an A/B test or without any id)."""
    if not settings.ab_test:
        return None
    unit = unit_id(customer_id, session_id, settings.experiment.unit)
    if unit is None:
        return None
    return assign_arm(unit, salt=settings.experiment.salt, split=settings.experiment.split)


async def live_recent(state: ServingState, session_id: str | None,
                      history: tuple[str, ...]) -> Recent | None:
    """The live session's recent products for a list request, read without blocking the
    event loop; None when the list reads none (``history`` given, or no session)."""
    if history or not session_id:
        return None
    return await state.live.recent_async(session_id=session_id)


def recent_of(state: ServingState, session_id: str | None, history: tuple[str, ...],
              live: Recent | None = None) -> Recent:
    """The shopper's recent products, most recent first: ``history`` (most recent last; no
    event types: each counts as a view) when given, else the live session's (``live`` when
    read already; nothing when Redis is down: the list is the artifact's)."""
    if history:
        return Recent(list(reversed(history)), ["view"] * len(history), frozenset())
    if live is not None:
        return live
    return state.live.recent(session_id=session_id) if session_id else NOTHING


def session_of(state: ServingState, index: ServingIndex, recent: Recent, leave_out: list[str],
               placement: Placed | None = None) -> Session:
    """The Session of these recent products around ``leave_out`` (with those put in the cart
    or bought), by the ``placement``'s session weights (``recsys.serving.session_weights``:
    the config's, else the artifact's choice)."""
    weight, decay = session_weights_of(state.settings, index.session_weights, placement)
    return session_at(state.settings, recent, leave_out, weight, decay)


def session_at(settings: ServingSettings, recent: Recent, leave_out: list[str], weight: float,
               decay: float) -> Session:
    """The Session of these recent products around ``leave_out`` at this weight and decay,
    with the rest of ``settings``' session settings (the session_tuning job scores each
    setting of its grid this way)."""
    s = settings
    return session_of_recent(recent.products, leave_out, weight=weight, decay=decay,
                             length=s.session_length, knn_weight=s.session_knn_weight,
                             knn_k=s.session_knn_k, knn_sample=s.session_knn_sample,
                             in_cart=recent.carted)


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
              query: ListQuery, live: Recent | None = None) -> Answer:
    """A product's also-viewed, bought-together or similar-items list for this shopper
    (``live``: the session's recent products, when read already)."""
    _check_category(index, query)
    product_id, options = query.product_id or "", query.options
    placement = PLACEMENTS.get(kind)
    if placement is not None:
        options = placed(state.settings, placement, options)
    arm = arm_of(state.settings, query.customer_id, query.session_id)
    if kind == "similar":
        return ranked(state, index, arm, query.options,
                      lambda d: similar.similar_items(index, product_id, options, d)), arm
    recent = recent_of(state, query.session_id, query.history, live)
    session = session_of(state, index, recent, [product_id], placement)
    return ranked(state, index, arm, query.options,
                  lambda d: ITEM_LISTS[kind](index, product_id, options, d, session)), arm


def cart_list(state: ServingState, index: ServingIndex, products: list[str],
              customer_id: str | None, session_id: str | None, query: ListQuery,
              live: Recent | None = None) -> Answer:
    """Add-ons for a cart of these products (``live`` as for ``item_list``), the lines the
    session touched last counting most."""
    _check_category(index, query)
    arm = arm_of(state.settings, customer_id, session_id)
    options = placed(state.settings, "cart", query.options)
    recent = recent_of(state, session_id, query.history, live)
    session = session_of(state, index, recent, products, "cart")
    weights = line_weights(products, recent.products,
                           line_decay_of(state.settings, index.session_weights))
    return ranked(state, index, arm, query.options, lambda d: recommend.cart_addons(
        index, products, options, d, session, weights)), arm


def customer_list(state: ServingState, index: ServingIndex, query: ListQuery) -> Answer:
    """A customer's personalised list (``history``: what an anonymous shopper looked at)."""
    _check_category(index, query)
    arm = arm_of(state.settings, query.customer_id, query.session_id)
    return ranked(state, index, arm, query.options, lambda d: recommend.for_customer(
        index, query.customer_id, list(query.history), query.options, d)), arm


def popular_list(state: ServingState, index: ServingIndex, query: ListQuery) -> Answer:
    """Best sellers (every arm: they are the control arm's list)."""
    _check_category(index, query)
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
    together = placed(state.settings, "bought_together", options)
    viewed = placed(state.settings, "also_viewed", options)
    return {"bought_together": recommend.bought_together(index, product_id, together,
                                                         decisions).items,
            "also_viewed": recommend.also_viewed(index, product_id, viewed, decisions).items,
            "bundles": recommend.bundles_for(index, product_id, 5,
                                             blocked=decisions.blocked_products)}


def customer_lists(state: ServingState, index: ServingIndex, customer_id: str,
                   k: int = 10) -> dict[str, Any]:
    """What every list would show this customer now (the console's customer page), each
    computed as its endpoint computes it, for the customer's A/B arm: ``personalised``
    (``/customers/{id}/recommendations``: their due replenishments and repeat products, then
    ALS), ``recently_viewed`` (live events), ``upsell``: per product of their last
    ``UPSELL_SEEDS`` purchases, its upsell list for them (empty for a discount-only buyer);
    and their rows of the nightly action lists, less what cannot be sold now
    (``customer_view.sellable``): ``replenishment`` (due and overdue consumables),
    ``winback`` (their offer, when in the win-back list), ``high_value`` (their rank)."""
    query = ListQuery(recommend.Options(k=k), customer_id=customer_id)
    personal, arm = customer_list(state, index, query)
    upsells = []
    for bought in customer_view.purchases(index, customer_id, UPSELL_SEEDS):
        result, _ = upsell_list(state, index, query._replace(
            options=recommend.Options(k=5), product_id=bought["product_id"]))
        upsells.append({"product": bought, "items": result.items, "fallback": result.fallback})
    blocked = state.store.decisions().blocked_products
    actions: dict[str, list[dict[str, Any]] | None] = {}
    for name in ("replenishment", "winback", "high_value"):
        rows = customer_view.action_rows(state.settings.artifacts, index, name, customer_id)
        actions[name] = None if rows is None else customer_view.sellable(
            rows, name, index, blocked).to_dict("records")
    return {"arm": arm, "personalised": personal.items, "personalised_fallback":
            personal.fallback, "recently_viewed": livelists.recently_viewed(
                state, index, query).items, "upsell": upsells, **actions}
