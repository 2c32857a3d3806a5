"""What stands between ``POST /v1/events`` and the events table (issue #14, point 7): a rate
limit per client, plausibility checks, and the retention of stored events.

The rate limit counts each client's events per minute (a fixed window). With ``redis_url``
the count is kept in Redis, so every worker and every server sharing it shares the limit;
without it (or while Redis does not answer) each worker counts on its own, so N workers
together let through up to N times the limit. The client is the address uvicorn sees (behind
a proxy, set ``FORWARDED_ALLOW_IPS``).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from fastapi import HTTPException

from recsys.config import ServingSettings

if TYPE_CHECKING:
    from recsys.serving.store import ServingStore

__all__ = ["FUTURE_SKEW", "RateLimiter", "check_plausible", "keep_events_pruned"]

log = logging.getLogger("recsys.serving")

FUTURE_SKEW = timedelta(minutes=5)  # a client's clock may run this far ahead
WINDOW_S = 60
PRUNE_EVERY_S = 3600.0


class RateLimiter:
    """At most ``per_minute`` events per client and minute (0: no limit)."""

    def __init__(self, settings: ServingSettings) -> None:
        self.per_minute = settings.events_per_minute
        self.prefix = f"{settings.redis_prefix}:events:"
        self.redis: Any = None
        if settings.redis_url and self.per_minute:
            import redis

            self.redis = redis.Redis.from_url(settings.redis_url, socket_timeout=0.5,
                                              socket_connect_timeout=0.5)
        self._lock = threading.Lock()
        self._window = -1
        self._counts: dict[str, int] = {}
        self._redis_down = False

    def wait_s(self, client: str) -> int:
        """0 when this event may pass (and counts it), else seconds until the next window."""
        if not self.per_minute:
            return 0
        now = time.time()
        window = int(now // WINDOW_S)
        count = self._shared(client, window)
        if count is None:
            count = self._local(client, window)
        return 0 if count <= self.per_minute else int((window + 1) * WINDOW_S - now) + 1

    def _shared(self, client: str, window: int) -> int | None:
        """The count in Redis (None without Redis, or while it fails)."""
        if self.redis is None:
            return None
        import redis

        key = f"{self.prefix}{window}:{client}"
        try:
            with self.redis.pipeline() as pipe:
                count, _ = pipe.incr(key).expire(key, 2 * WINDOW_S).execute()
        except redis.RedisError as exc:
            if not self._redis_down:
                log.warning("Redis does not answer (%s): events rate limit per worker until "
                            "it does", exc)
            self._redis_down = True
            return None
        if self._redis_down:
            log.warning("Redis answers again: events rate limit shared again")
            self._redis_down = False
        return int(count)

    def _local(self, client: str, window: int) -> int:
        with self._lock:
            if window != self._window:
                self._window, self._counts = window, {}
            count = self._counts[client] = self._counts.get(client, 0) + 1
            return count

    def close(self) -> None:
        if self.redis is not None:
            self.redis.close()


def check_plausible(event: dict[str, Any], settings: ServingSettings,
                    now: datetime | None = None) -> None:
    """422 naming the field for a price, quantity or time no real shopper sends."""
    problems = []
    price, quantity = event.get("price"), event.get("quantity")
    if price is not None and price > settings.event_max_price:
        problems.append({"where": "body.price", "problem": f"{price} is above the largest "
                         f"plausible price ({settings.event_max_price}, event_max_price)"})
    if quantity is not None and quantity > settings.event_max_quantity:
        problems.append({"where": "body.quantity", "problem": f"{quantity} is above the "
                         f"largest plausible quantity ({settings.event_max_quantity}, "
                         "event_max_quantity)"})
    occurred = event.get("occurred_at")
    if occurred is not None:
        aware = occurred if occurred.tzinfo else occurred.replace(tzinfo=UTC)
        if aware > (now or datetime.now(UTC)) + FUTURE_SKEW:
            problems.append({"where": "body.occurred_at", "problem": f"{occurred.isoformat()}"
                             " is in the future (more than 5 minutes ahead of the server)"})
    if problems:
        raise HTTPException(status_code=422, detail=problems)


async def keep_events_pruned(store: ServingStore, days: int,
                             every_s: float = PRUNE_EVERY_S) -> None:
    """Delete events older than ``days`` (0: keep all) now, then every ``every_s``."""
    while days:
        cutoff = datetime.now(UTC) - timedelta(days=days)
        try:
            removed = await asyncio.to_thread(store.delete_events_before, cutoff)
            if removed:
                log.info("deleted %d events received before %s (retention %d days)",
                         removed, cutoff.isoformat(timespec="seconds"), days)
        except Exception as exc:  # noqa: BLE001 - retention must outlive a database outage
            log.warning("events retention: could not delete old events: %s", exc)
        await asyncio.sleep(every_s)
