"""The list requests' session reads from Redis (``LRANGE``), pipelined over one connection
per event loop: each request queues its command and waits for its own reply, Redis
answers a connection's commands in order, so concurrent requests share one socket; the
commands of one loop iteration go out in one write and a burst of replies arrives in one
read, which hiredis's C reader (the parser redis-py uses when it is installed) splits into
replies: 0.3 us a reply of five products here, 3.1 us with the parser in Python this module
had before (BENCHMARKS.md). A read costs this process a few microseconds of CPU; 41-44 us
with ``redis.asyncio`` (a connection pool, a lock, a general client).

Only what the reads need of a client: the handshake (``AUTH``, ``SELECT`` from the URL,
``redis://`` or ``unix://``; a TLS URL is ``redis.asyncio``'s business, in ``live``), and the
replies in order. An error reply raises ``redis.ResponseError`` for that read alone; a reply
slower than ``timeout`` seconds, a lost connection or a stream that is not the protocol raises
``redis.RedisError`` and drops the connection (the replies still due would no longer match
their requests), and the next read opens another.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any

import hiredis
import redis
from redis.connection import UnixDomainSocketConnection, parse_url

__all__ = ["ListReader", "supported"]

Reply = list[str] | str | int | None  # a reply: a list, OK, a count or nothing


def supported(url: str) -> bool:
    """Whether ``ListReader`` reads from this URL (a plain TCP or Unix socket URL)."""
    return url.startswith(("redis://", "unix://"))


def command(*parts: bytes) -> bytes:
    """A command in the protocol's request form (an array of bulk strings)."""
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        out.append(b"$%d\r\n%s\r\n" % (len(part), part))
    return b"".join(out)


LRANGE = b"*4\r\n$6\r\nLRANGE\r\n$%d\r\n%s\r\n$1\r\n0\r\n$%d\r\n%s\r\n"  # command(), written out


class _Replies(asyncio.Protocol):
    """One connection: the requests of a loop iteration go out in one write, and the replies
    read are matched with the requests waiting, in order. One timer watches the oldest
    request (replies come in order: it is the first to be late), not one per request."""

    def __init__(self, timeout: float,
                 expire: Callable[[asyncio.Future[Reply]], None]) -> None:
        self.timeout, self.expire = timeout, expire
        # an error reply comes back as an exception instance (not raised): that read's alone
        self.reader = hiredis.Reader(encoding="utf-8", errors="replace",
                                     replyError=redis.ResponseError)
        self.waiting: deque[tuple[asyncio.Future[Reply], float]] = deque()  # with deadlines
        self.outgoing: list[bytes] = []
        self.transport: asyncio.Transport | None = None
        self.lost: Exception | None = None
        self.watch: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self, request: bytes, future: asyncio.Future[Reply]) -> None:
        loop = future.get_loop()
        if not self.outgoing:
            loop.call_soon(self._flush)
        self.outgoing.append(request)
        deadline = loop.time() + self.timeout
        self.waiting.append((future, deadline))
        if self.watch is None:
            self.watch = loop.call_at(deadline, self._check)

    def _check(self) -> None:
        """The oldest request still awaited fails past its deadline; else watch it. (One
        no longer awaited, e.g. cancelled, stays in the queue: its reply is still due.)"""
        self.watch = None
        for future, deadline in self.waiting:
            if not future.done():
                loop = future.get_loop()
                if loop.time() >= deadline:
                    self.expire(future)
                else:
                    self.watch = loop.call_at(deadline, self._check)
                return

    def _flush(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"".join(self.outgoing))
        self.outgoing.clear()  # on a closing connection: their futures fail with it

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while self.waiting:
            try:
                reply = self.reader.gets()
            except hiredis.ProtocolError as exc:  # not Redis speaking: nothing more matches
                if self.transport is not None:
                    self.transport.abort()  # connection_lost fails the requests waiting
                self.lost = redis.ConnectionError(f"not the Redis protocol: {exc}")
                return
            if reply is False:  # the rest of the reply is still to come
                break
            future, _ = self.waiting.popleft()
            if future.done():  # timed out: this connection is being dropped
                continue
            if isinstance(reply, redis.RedisError):
                future.set_exception(reply)
            else:
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = redis.ConnectionError(f"connection to Redis lost: {exc or 'closed'}")
        if self.watch is not None:
            self.watch.cancel()
            self.watch = None
        while self.waiting:
            future, _ = self.waiting.popleft()
            if not future.done():
                future.set_exception(self.lost)


class ListReader:
    """``LRANGE key 0 stop`` for the list requests of one event loop (see the module)."""

    def __init__(self, url: str, timeout: float) -> None:
        params: dict[str, Any] = parse_url(url)
        self.timeout = timeout
        self.unix = params.get("connection_class") is UnixDomainSocketConnection
        self.path = str(params.get("path", ""))
        self.host, self.port = str(params.get("host", "localhost")), int(params.get("port", 6379))
        handshake = []
        if params.get("password") is not None:
            user = params.get("username")
            handshake.append(command(b"AUTH", *([user.encode()] if user else []),
                                     str(params["password"]).encode()))
        if int(params.get("db", 0)):
            handshake.append(command(b"SELECT", str(params["db"]).encode()))
        self.handshake = handshake
        self.transport: asyncio.Transport | None = None
        self.replies = _Replies(timeout, self._expire)
        self.opening: asyncio.Future[None] | None = None

    async def lrange(self, key: str, stop: int) -> list[str]:
        """The list's items 0 to ``stop`` (an empty list for a missing key)."""
        if self.transport is None or self.replies.lost is not None:
            await self._open()
        name, last = key.encode(), b"%d" % stop
        reply = await self._ask(LRANGE % (len(name), name, len(last), last))
        return reply if isinstance(reply, list) else []

    async def _ask(self, request: bytes) -> Reply:
        assert self.transport is not None
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self.replies.send(request, future)
        return await future

    def _expire(self, future: asyncio.Future[Reply]) -> None:
        if not future.done():
            future.set_exception(redis.TimeoutError(
                f"no answer from Redis within {self.timeout * 1000:.0f} ms"))
            self.close()  # the replies still due would answer the next requests

    async def _open(self) -> None:
        """Connect (once, however many requests wait for it) and send the handshake."""
        if self.opening is None:
            self.opening = asyncio.ensure_future(self._connect())
        opening = self.opening
        try:
            await asyncio.shield(opening)
        finally:
            if self.opening is opening and opening.done():
                self.opening = None

    async def _connect(self) -> None:
        self.close()
        loop = asyncio.get_running_loop()
        replies = _Replies(self.timeout, self._expire)
        try:
            connecting = (loop.create_unix_connection(lambda: replies, self.path) if self.unix
                          else loop.create_connection(lambda: replies, self.host, self.port))
            transport, _ = await asyncio.wait_for(connecting, self.timeout)
        except (TimeoutError, OSError) as exc:
            raise redis.ConnectionError(f"cannot connect to Redis: {exc!r}") from exc
        self.transport, self.replies = transport, replies
        try:
            for request in self.handshake:
                await self._ask(request)
        except redis.RedisError:
            self.close()  # the next read connects again
            raise

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
            self.transport = None
