"""What a list endpoint answers, shared by the FastAPI routes and the fast path: the shopper's
A/B arm, the list ranked for that arm, and the JSON body."""

from __future__ import annotations

from collections.abc import Callable

import orjson

from recsys.analytics.experiments import assign_arm, unit_id
from recsys.config import ServingSettings
from recsys.serving import recommend
from recsys.serving.index import ServingIndex
from recsys.serving.store import ServingStore

__all__ = ["arm_of", "ranked", "list_body"]


def arm_of(settings: ServingSettings, customer_id: str | None,
           session_id: str | None) -> str | None:
    """The experiment arm of this shopper (None without an A/B test or without any id)."""
    if not settings.ab_test:
        return None
    unit = unit_id(customer_id, session_id, settings.experiment.unit)
    if unit is None:
        return None
    return assign_arm(unit, salt=settings.experiment.salt, split=settings.experiment.split)


def ranked(store: ServingStore, settings: ServingSettings, index: ServingIndex,
           arm: str | None, options: recommend.Options,
           compute: Callable[[recommend.Decisions], recommend.Result]) -> recommend.Result:
    """The list for this arm: the control arm gets best sellers, every other arm the engine."""
    decisions = store.decisions()
    if arm is not None and arm == settings.experiment.control_arm:
        return recommend.popular(index, options, decisions)
    return compute(decisions)


def list_body(index: ServingIndex, result: recommend.Result, request_id: str,
              arm: str | None) -> bytes:
    """The JSON body of a list response (``ItemList`` in the OpenAPI document)."""
    return orjson.dumps({"items": result.items, "model_version": index.version,
                         "request_id": request_id, "fallback": result.fallback,
                         "applied": result.applied, "arm": arm})
