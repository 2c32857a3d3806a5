"""The lists computed from live events: a session's or a customer's recently viewed
products, and trending products (their recent rate above their usual one), which fall back
to the artifact's best sellers (named in ``fallback``) when too few events qualify."""

from __future__ import annotations

import time
import weakref
from typing import TYPE_CHECKING

from recsys.serving import recommend
from recsys.serving.finish import Candidate, finish
from recsys.serving.index import ServingIndex
from recsys.serving.params import ListQuery

if TYPE_CHECKING:
    from recsys.serving.state import ServingState

__all__ = ["recently_viewed", "trending", "rising"]

CACHE_S = 5.0  # trending counts are re-read at most this often per worker


def recently_viewed(state: ServingState, index: ServingIndex,
                    query: ListQuery) -> recommend.Result:
    """The session's (or customer's) products viewed, carted or bought, most recent first,
    each once (its evidence: its last event and that event's position); excluded, blocked
    and (``in_stock_only``) unavailable ones left out."""
    options = query.options
    recent = state.live.recent(session_id=query.session_id, customer_id=query.customer_id)
    blocked = state.store.decisions().blocked_products
    items, seen = [], set(options.exclude) | blocked
    n = len(recent.products)
    for position, (pid, event) in enumerate(zip(recent.products, recent.events, strict=True),
                                             start=1):
        if pid in seen or (options.in_stock_only and pid not in index.available):
            continue
        seen.add(pid)
        item = index.describe(pid)
        item["score"] = float(n - position + 1)
        item["reason"] = {"source": "recently_viewed",
                          "evidence": {"position": position, "event": event}}
        items.append(item)
        if len(items) == options.k:
            break
    return recommend.Result(items=items, fallback=None, applied=[])


def rising(hourly: list[dict[str, int]], hours: int, baseline_hours: int,
           min_count: int) -> list[tuple[str, int, float, float]]:
    """(product, recent events, usual events per hour, rise) of every product with at least
    ``min_count`` events in the first ``hours`` of ``hourly`` (most recent hour first),
    best rise first. rise = recent rate / usual rate over the ``baseline_hours`` after,
    the usual count smoothed by one (a product never seen before is not infinitely new)."""
    recent: dict[str, int] = {}
    usual: dict[str, int] = {}
    for back, counts in enumerate(hourly):
        target = recent if back < hours else usual
        for pid, n in counts.items():
            target[pid] = target.get(pid, 0) + n
    out = []
    for pid, n in recent.items():
        if n >= min_count:
            per_hour = usual.get(pid, 0) / baseline_hours
            rise = (n / hours) / ((usual.get(pid, 0) + 1) / baseline_hours)
            out.append((pid, n, per_hour, rise))
    out.sort(key=lambda row: (-row[3], -row[1], row[0]))
    return out


_cache: weakref.WeakKeyDictionary[ServingState, tuple[float, list[tuple[str, int, float, float]]]]
_cache = weakref.WeakKeyDictionary()  # per app


def trending(state: ServingState, index: ServingIndex, query: ListQuery) -> recommend.Result:
    """Trending products (in ``category`` when given), filled from best sellers."""
    s, options = state.settings, query.options
    now = time.monotonic()
    cached = _cache.get(state)
    if cached is None or now - cached[0] > CACHE_S:
        hourly = state.live.hourly(s.trending_hours + s.trending_baseline_hours)
        cached = _cache[state] = (now, rising(hourly, s.trending_hours,
                                                  s.trending_baseline_hours,
                                                  s.trending_min_count))
    candidates = [Candidate(pid, rise, "trending", {
        "recent_events": n, "hours": s.trending_hours, "usual_per_hour": round(per_hour, 4),
        "rise": round(rise, 4)}) for pid, n, per_hour, rise in cached[1]]
    return finish(index, candidates, options, state.store.decisions(),
                  fallback_category=options.category)
