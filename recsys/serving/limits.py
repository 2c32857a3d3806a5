"""Request bodies bounded before anything parses them (issue #14, point 6).

``BodyLimit`` is pure ASGI middleware in front of every route (API, fast path, console,
storefront): a ``Content-Length`` over the limit is answered 413 at once; a body without one
(chunked) is read, counting, only up to the limit and then handed on. Memory per request is
thus bounded by ``max_body_bytes``, whatever the client sends.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["BodyLimit"]


class BodyLimit:
    """413 for a body over ``max_bytes``, 400 for an unreadable ``Content-Length``."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = chunked = None
        for key, value in scope["headers"]:
            if key == b"content-length":
                length = value
            elif key == b"transfer-encoding":
                chunked = value
        if length is not None:
            if not length.isdigit():
                await _answer(send, 400, "Content-Length must be a whole number of bytes")
                return
            if int(length) > self.max_bytes:
                await self._too_large(send)
                return
        elif chunked is None:  # no body at all
            await self.app(scope, receive, send)
            return
        body = await self._read(receive)
        if body is None:
            await self._too_large(send)
            return
        await self.app(scope, _replay(body, receive), send)

    async def _read(self, receive: Receive) -> list[Message] | None:
        """The body's messages, or None as soon as they add up to more than the limit."""
        messages, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # a disconnect: let the app see it
                messages.append(message)
                return messages
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                return None
            messages.append(message)
            if not message.get("more_body", False):
                return messages

    async def _too_large(self, send: Send) -> None:
        await _answer(send, 413, f"request body over the limit of {self.max_bytes} bytes "
                                 "(max_body_bytes)")


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """A receive that gives the messages read first, then the client's own (disconnect)."""
    pending = list(messages)

    async def replayed() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replayed


async def _answer(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
