"""Live shopper state: each session's and each customer's recent products (most recent
first, each with its event: a view, a cart add or a purchase) and per-hour product counts for
trending, updated by ``POST /v1/events`` at once.

``RedisLive`` keeps them in Redis, shared by every worker and replica: a list per session
and per customer (LPUSH, LTRIM to the configured length, EXPIRE with the TTL) and a sorted
set of counts per hour bucket, all written by one script call (one round trip, atomic). An
event with an id (``event_id`` / ``Idempotency-Key``) counts once: the script first sets a
key for the id (SET NX, expiring with the session TTL) and a retried event whose key is set
changes nothing. A list request reads its session over one pipelined connection per event
loop (``recsys.serving.live_reads``). ``MemoryLive`` keeps the same in this process, for one
worker only. When Redis fails, ``RedisLive`` answers "nothing known" (lists are then served from
the artifact alone), says ``degraded`` and retries after ``RETRY_S``; it raises only for an
erasure (``forget``), which must not pass for done.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Iterable
from typing import NamedTuple, Protocol

import redis
import redis.asyncio

from recsys.config import ServingSettings
from recsys.errors import RecsysError
from recsys.serving.live_reads import ListReader, supported

__all__ = ["LIVE_EVENTS", "Live", "MemoryLive", "Recent", "RedisLive", "live_from"]

log = logging.getLogger("recsys.serving")
LIVE_EVENTS = frozenset({"view", "add_to_cart", "purchase"})  # what changes a session
RETRY_S = 2.0  # after a Redis failure, this long without trying (requests stay fast)
TIMEOUT_S = 0.05  # a Redis call slower than this counts as a failure
HOUR_S = 3600
SEP = "\x1f"  # a stored entry: "P1" for a view, "P1<SEP>add_to_cart" (ids hold no control chars)
# KEYS: the hour bucket, the event id's key, then the session's and/or customer's list;
# ARGV: product, list entry, list length, bucket TTL, the id key's TTL (0: no id), each
# list's TTL
_RECORD = """
if ARGV[5] ~= "0" and not redis.call("SET", KEYS[2], "1", "NX", "EX", ARGV[5]) then
  return 0
end
for i = 3, #KEYS do
  redis.call("LPUSH", KEYS[i], ARGV[2])
  redis.call("LTRIM", KEYS[i], 0, tonumber(ARGV[3]) - 1)
  redis.call("EXPIRE", KEYS[i], ARGV[i + 3])
end
redis.call("ZINCRBY", KEYS[1], 1, ARGV[1])
redis.call("EXPIRE", KEYS[1], ARGV[4])
return 1
"""


def hour_now() -> int:
    return int(time.time() // HOUR_S)


def _entry(event_type: str, product_id: str) -> str:
    return product_id if event_type == "view" else f"{product_id}{SEP}{event_type}"


class Recent(NamedTuple):
    """A session's or customer's recent products, most recent first, each one's event
    (``view``, ``add_to_cart``, ``purchase``), and those of them put in the cart or bought;
    a product may come more than once."""

    products: list[str]
    events: list[str]
    carted: frozenset[str]

    @classmethod
    def of(cls, entries: list[str]) -> Recent:
        """From the stored entries (an entry without an event, as stored before events were
        kept, is a view)."""
        if SEP not in "".join(entries):  # views only: the common case, kept cheap
            return cls(entries, ["view"] * len(entries), frozenset())
        pairs = [e.partition(SEP) for e in entries]
        return cls([p for p, _, _ in pairs], [event or "view" for _, _, event in pairs],
                   frozenset(p for p, _, event in pairs if event and event != "view"))


NOTHING = Recent([], [], frozenset())


class Live(Protocol):
    """What serving needs from the live state (see the module docstring)."""

    def record(self, event_type: str, product_id: str | None, session_id: str | None,
               customer_id: str | None, event_key: str | None = None) -> None: ...

    def recent(self, *, session_id: str | None = None, customer_id: str | None = None,
               n: int | None = None) -> Recent: ...

    async def recent_async(self, *, session_id: str) -> Recent: ...

    def hourly(self, hours: int) -> list[dict[str, int]]: ...

    def forget(self, customer_ids: Iterable[str], session_ids: Iterable[str]) -> int: ...

    def status(self) -> str: ...

    def close(self) -> None: ...

    async def aclose(self) -> None: ...


class _Expiring:
    """Bounded recent-first lists that expire ``ttl`` seconds after their last write."""

    def __init__(self, length: int, ttl: float) -> None:
        self.length, self.ttl = length, ttl
        self.lists: OrderedDict[str, tuple[float, deque[str]]] = OrderedDict()

    def push(self, key: str, value: str, now: float) -> None:
        until, items = self.lists.pop(key, (0.0, deque(maxlen=self.length)))
        if until <= now:  # expired (as a Redis key would be): a new list
            items = deque(maxlen=self.length)
        items.appendleft(value)
        self.lists[key] = (now + self.ttl, items)  # last written last: expiry order
        while self.lists:
            first = next(iter(self.lists.values()))
            if first[0] > now:
                break
            self.lists.popitem(last=False)

    def get(self, key: str, now: float) -> list[str]:
        found = self.lists.get(key)
        return list(found[1]) if found is not None and found[0] > now else []


class MemoryLive:
    """The live state in this process (one worker only: another worker sees none of it)."""

    def __init__(self, settings: ServingSettings) -> None:
        self.sessions = _Expiring(settings.session_length, settings.session_ttl_s)
        self.customers = _Expiring(settings.session_length, settings.customer_ttl_s)
        self.keep_hours = settings.trending_baseline_hours + settings.trending_hours
        self.counts: dict[int, Counter[str]] = {}
        self.seen = _Expiring(1, settings.session_ttl_s)  # event ids recorded

    def record(self, event_type: str, product_id: str | None, session_id: str | None,
               customer_id: str | None, event_key: str | None = None) -> None:
        if event_type not in LIVE_EVENTS or product_id is None:
            return
        now = time.time()
        if event_key is not None:
            if self.seen.get(event_key, now):
                return  # a retried event
            self.seen.push(event_key, "", now)
        entry = _entry(event_type, product_id)
        if session_id:
            self.sessions.push(session_id, entry, now)
        if customer_id:
            self.customers.push(customer_id, entry, now)
        hour = int(now // HOUR_S)
        self.counts.setdefault(hour, Counter())[product_id] += 1
        for old in [h for h in self.counts if h <= hour - self.keep_hours]:
            del self.counts[old]

    def recent(self, *, session_id: str | None = None, customer_id: str | None = None,
               n: int | None = None) -> Recent:
        now = time.time()
        found = (self.sessions.get(session_id, now) if session_id else
                 self.customers.get(customer_id, now) if customer_id else [])
        return Recent.of(found[:n] if n is not None else found)

    async def recent_async(self, *, session_id: str) -> Recent:
        return self.recent(session_id=session_id)

    def hourly(self, hours: int) -> list[dict[str, int]]:
        hour = hour_now()
        return [dict(self.counts.get(hour - back, {})) for back in range(hours)]

    def forget(self, customer_ids: Iterable[str], session_ids: Iterable[str]) -> int:
        """Drop these customers' and sessions' recent products (an erasure); how many lists."""
        dropped = 0
        for store, keys in ((self.customers, customer_ids), (self.sessions, session_ids)):
            for key in keys:
                dropped += store.lists.pop(key, None) is not None
        return dropped

    def status(self) -> str:
        return "off"

    def close(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


class RedisLive:
    """The live state in Redis (every worker and replica shares it)."""

    def __init__(self, settings: ServingSettings, url: str) -> None:
        self.url = url
        self.client = redis.Redis.from_url(url, socket_timeout=TIMEOUT_S,
                                           socket_connect_timeout=TIMEOUT_S,
                                           decode_responses=True)
        # the list requests' reads, on the event loop of the first one (uvicorn: one a worker):
        # pipelined over one connection (``live_reads``), redis.asyncio for a TLS URL
        self.async_client: ListReader | redis.asyncio.Redis | None = None
        self.async_loop: asyncio.AbstractEventLoop | None = None
        self.prefix = f"{settings.redis_prefix}:live:"
        self.length = settings.session_length
        self.session_ttl, self.customer_ttl = settings.session_ttl_s, settings.customer_ttl_s
        self.keep_s = (settings.trending_baseline_hours + settings.trending_hours + 1) * HOUR_S
        self.down_until = 0.0
        self.error: str | None = None
        self.script = self.client.register_script(_RECORD)

    def _failed(self, exc: Exception) -> None:
        if self.error is None:
            log.warning("redis unavailable, serving without live state: %s", exc)
        self.error = f"{type(exc).__name__}: {exc}"
        self.down_until = time.monotonic() + RETRY_S

    def _up(self) -> bool:
        return time.monotonic() >= self.down_until

    def record(self, event_type: str, product_id: str | None, session_id: str | None,
               customer_id: str | None, event_key: str | None = None) -> None:
        if event_type not in LIVE_EVENTS or product_id is None or not self._up():
            return
        keys = [f"{self.prefix}h:{hour_now()}", f"{self.prefix}e:{event_key or ''}"]
        args: list[str | int] = [product_id, _entry(event_type, product_id), self.length,
                                 int(self.keep_s),
                                 max(1, int(self.session_ttl)) if event_key else 0]
        for kind, owner, ttl in (("s", session_id, self.session_ttl),
                                 ("c", customer_id, self.customer_ttl)):
            if owner:
                keys.append(f"{self.prefix}{kind}:{owner}")
                args.append(max(1, int(ttl)))
        try:
            self.script(keys=keys, args=args)
            self.error = None
        except redis.RedisError as exc:
            self._failed(exc)

    def recent(self, *, session_id: str | None = None, customer_id: str | None = None,
               n: int | None = None) -> Recent:
        key = f"s:{session_id}" if session_id else f"c:{customer_id}" if customer_id else None
        if key is None or not self._up():
            return NOTHING
        try:
            found: list[str] = self.client.lrange(self.prefix + key, 0,
                                                  (n or self.length) - 1)  # type: ignore[assignment]
        except redis.RedisError as exc:
            self._failed(exc)
            return NOTHING
        self.error = None
        return Recent.of(found)

    async def recent_async(self, *, session_id: str) -> Recent:
        """The session's recent products, read without blocking the event loop: while Redis
        answers, the worker goes on with other requests."""
        if not self._up():
            return NOTHING
        loop = asyncio.get_running_loop()
        if self.async_client is None or self.async_loop is not loop:
            self.async_client = ListReader(self.url, TIMEOUT_S) if supported(self.url) else (
                redis.asyncio.Redis.from_url(self.url, socket_timeout=TIMEOUT_S,
                                             socket_connect_timeout=TIMEOUT_S,
                                             decode_responses=True))
            self.async_loop = loop
        key = f"{self.prefix}s:{session_id}"
        try:
            if isinstance(self.async_client, ListReader):
                found = await self.async_client.lrange(key, self.length - 1)
            else:
                found = await self.async_client.lrange(key, 0, self.length - 1)  # type: ignore[misc]
        except redis.RedisError as exc:
            self._failed(exc)
            return NOTHING
        self.error = None
        return Recent.of(found)

    def hourly(self, hours: int) -> list[dict[str, int]]:
        if not self._up():
            return []
        hour = hour_now()
        pipe = self.client.pipeline(transaction=False)
        for back in range(hours):
            pipe.zrange(f"{self.prefix}h:{hour - back}", 0, -1, withscores=True)
        try:
            rows = pipe.execute()
        except redis.RedisError as exc:
            self._failed(exc)
            return []
        self.error = None
        return [{pid: int(n) for pid, n in row} for row in rows]

    def forget(self, customer_ids: Iterable[str], session_ids: Iterable[str]) -> int:
        """Delete these customers' and sessions' lists (an erasure: tried even while Redis
        counts as down); how many there were. Raises RecsysError when Redis refuses."""
        keys = ([f"{self.prefix}c:{c}" for c in customer_ids]
                + [f"{self.prefix}s:{s}" for s in session_ids])
        if not keys:
            return 0
        try:
            return int(self.client.delete(*keys))  # type: ignore[arg-type]
        except redis.RedisError as exc:
            self._failed(exc)
            raise RecsysError(f"Redis ([serving] redis_url) did not erase the live session "
                              f"lists: {type(exc).__name__}: {exc}; nothing else was erased, "
                              "retry when it answers") from None

    def status(self) -> str:
        if not self._up():
            return "degraded"
        try:
            self.client.ping()
        except redis.RedisError as exc:
            self._failed(exc)
            return "degraded"
        self.error = None
        return "ok"

    def close(self) -> None:
        self.client.close()

    async def aclose(self) -> None:
        if self.async_client is not None and self.async_loop is asyncio.get_running_loop():
            if isinstance(self.async_client, ListReader):
                self.async_client.close()
            else:
                await self.async_client.aclose()
        self.async_client = None


def live_from(settings: ServingSettings) -> Live:
    """Redis when ``[serving] redis_url`` is set, else this process's memory."""
    if settings.redis_url:
        return RedisLive(settings, settings.redis_url)
    if settings.workers > 1:
        log.warning("%d workers without [serving] redis_url: each keeps its own sessions, so a "
                    "list may miss views posted to another worker", settings.workers)
    return MemoryLive(settings)
