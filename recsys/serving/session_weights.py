"""How much the session weighs in bought-together and the cart add-ons: the config where it
sets a value (``[serving.placements.bought_together]`` ``session_weight`` / ``session_decay``,
``[serving.placements.cart]`` ``line_decay``), else the artifact's choice
(``session_weights.json``, written by the session_tuning job on the shop's own cart sessions,
``recsys.session_tuning``), else ``[serving]``'s ``session_weight`` / ``session_decay`` and
``DEFAULT_LINE_DECAY``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from recsys import layout
from recsys.config import DEFAULT_LINE_DECAY, ServingSettings

__all__ = ["SessionWeights", "load_session_weights", "session_weights_of", "line_decay_of"]

Placed = Literal["also_viewed", "bought_together", "cart"]  # a list with its own settings


@dataclass(frozen=True)
class SessionWeights:
    """The artifact's choice (None: it chose nothing, or a version from before the job)."""

    session_weight: float | None = None  # bought-together's
    session_decay: float | None = None
    line_decay: float | None = None  # the cart add-ons'

    @classmethod
    def of_file(cls, chosen: dict[str, Any]) -> SessionWeights:
        bought, cart = chosen.get("bought_together", {}), chosen.get("cart", {})
        return cls(session_weight=bought.get("session_weight"),
                   session_decay=bought.get("session_decay"),
                   line_decay=cart.get("line_decay"))


def load_session_weights(folder: Path) -> SessionWeights:
    """``session_weights.json``'s choice, where the version has one."""
    path = layout.SESSION_WEIGHTS.at(folder)
    if not path.exists():
        return SessionWeights()
    return SessionWeights.of_file(json.loads(path.read_text(encoding="utf-8")))


def session_weights_of(settings: ServingSettings, chosen: SessionWeights,
                       placement: Placed | None) -> tuple[float, float]:
    """(weight, decay) of the session in this placement's list."""
    own = getattr(settings.placements, placement) if placement is not None else None
    tuned = placement == "bought_together"
    weight, decay = settings.session_weight, settings.session_decay
    if tuned and chosen.session_weight is not None:
        weight = chosen.session_weight
    if tuned and chosen.session_decay is not None:
        decay = chosen.session_decay
    if own is not None and own.session_weight is not None:
        weight = own.session_weight
    if own is not None and own.session_decay is not None:
        decay = own.session_decay
    return weight, decay


def line_decay_of(settings: ServingSettings, chosen: SessionWeights) -> float:
    """The cart add-ons' ``line_decay``: the config's, the artifact's, the default."""
    pinned = settings.placements.cart.line_decay
    if pinned is not None:
        return pinned
    return chosen.line_decay if chosen.line_decay is not None else DEFAULT_LINE_DECAY
