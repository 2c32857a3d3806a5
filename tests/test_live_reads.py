"""The pipelined session reads (``live_reads``) against the real Redis: the same lists as
redis-py's ``LRANGE`` for many concurrent requests on one connection, replies split at any
byte (hiredis's reader), the handshake (database, password), and errors, timeouts and a lost connection
raising ``redis.RedisError`` with the next read connecting again."""

from __future__ import annotations

import asyncio
import random
import socket
import threading
import uuid
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import pytest
import redis

from recsys.serving.live_reads import ListReader, _Replies, command, supported

T = TypeVar("T")


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` on a thread of its own: in the whole suite a browser test's Playwright
    (sync API, greenlets) leaves this thread looking as if an event loop were running in it."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


@pytest.fixture
def lists(redis_url: str) -> Iterator[tuple[redis.Redis, str]]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    prefix = f"recsys-test-{uuid.uuid4().hex}:"
    yield client, prefix
    for key in client.scan_iter(f"{prefix}*"):
        client.delete(key)
    client.close()


def test_concurrent_reads_match_redis_py(lists: tuple[redis.Redis, str], redis_url: str) -> None:
    client, prefix = lists
    rng = random.Random(3)
    keys = [f"{prefix}s:{i}" for i in range(60)]
    for i, key in enumerate(keys[:50]):  # the last ten are missing: empty lists
        client.rpush(key, *[f"p-{rng.randint(0, 99)}-é" for _ in range(1 + i % 25)])
    reader = ListReader(redis_url, 0.5)

    async def read_all() -> list[list[str]]:
        stops = [rng.choice([0, 4, 19]) for _ in keys]
        found = await asyncio.gather(*(reader.lrange(k, s) for k, s in zip(keys * 3, stops * 3,
                                                                             strict=True)))
        assert found == [client.lrange(k, 0, s) for k, s in zip(keys * 3, stops * 3,
                                                                strict=True)]
        reader.close()
        return found

    found = run(read_all())
    assert sum(1 for f in found if f) == 150 and [] in found


def test_replies_split_anywhere_answer_their_requests_in_order() -> None:
    """Replies arriving a byte at a time answer the requests waiting in order, each the
    moment its last byte comes: lists (of an empty string too), a missing list (null), a
    simple string, and an error reply failing its own read alone; a stream that is not the
    protocol drops the connection."""
    replies = [b"*2\r\n$3\r\nabc\r\n$0\r\n\r\n", b"*-1\r\n", b"*0\r\n", b"+OK\r\n",
               b"-WRONGTYPE no list\r\n", b"*1\r\n$3\r\n\xc3\xa9a\r\n"]
    ends = [len(b"".join(replies[:i + 1])) for i in range(len(replies))]

    class Transport:
        aborted = False

        def is_closing(self) -> bool:
            return False

        def write(self, data: bytes) -> None:
            pass

        def abort(self) -> None:
            self.aborted = True

    async def feed() -> tuple[list[object], list[int], Transport]:
        loop = asyncio.get_running_loop()
        protocol = _Replies(5.0, lambda future: None)
        protocol.connection_made(Transport())  # type: ignore[arg-type]
        futures: list[asyncio.Future[Any]] = [loop.create_future() for _ in replies]
        for future in futures:
            protocol.send(b"", future)
        done_at: list[int] = []
        stream = b"".join(replies)
        for i in range(len(stream)):
            protocol.data_received(stream[i:i + 1])
            done_at += [i + 1] * (sum(f.done() for f in futures) - len(done_at))
        answers = [f.exception() or f.result() for f in futures]
        garbled = _Replies(5.0, lambda future: None)
        transport = Transport()
        garbled.connection_made(transport)  # type: ignore[arg-type]
        garbled.send(b"", loop.create_future())
        garbled.data_received(b"?not redis\r\n")
        for watched in (protocol, garbled):
            if watched.watch is not None:
                watched.watch.cancel()
        assert isinstance(garbled.lost, redis.ConnectionError)
        return answers, done_at, transport

    answers, done_at, transport = run(feed())
    assert done_at == ends
    assert answers[:4] == [["abc", ""], None, [], "OK"] and answers[5] == ["éa"]
    assert isinstance(answers[4], redis.ResponseError) and "WRONGTYPE" in str(answers[4])
    assert transport.aborted
    assert command(b"LRANGE", b"k", b"0", b"9") == (
        b"*4\r\n$6\r\nLRANGE\r\n$1\r\nk\r\n$1\r\n0\r\n$1\r\n9\r\n")


def test_handshake_selects_the_database(lists: tuple[redis.Redis, str], redis_url: str) -> None:
    _, prefix = lists
    base = redis_url.rsplit("/", 1)[0] if redis_url.count("/") > 2 else redis_url
    other = redis.Redis.from_url(f"{base}/1", decode_responses=True)
    key = f"{prefix}db1"
    other.rpush(key, "in-db-1")

    async def read(url: str) -> list[str]:
        reader = ListReader(url, 0.5)
        try:
            return await reader.lrange(key, 9)
        finally:
            reader.close()

    try:
        assert run(read(f"{base}/1")) == ["in-db-1"]
        assert run(read(f"{base}/0")) == []
        with pytest.raises(redis.ResponseError):  # AUTH refused (no password set, or wrong)
            run(read(f"redis://:not-the-password@{base.split('//', 1)[1]}/0"))
    finally:
        other.delete(key)
        other.close()
    assert supported("redis://h:1/0") and supported("unix:///tmp/r.sock")
    assert not supported("rediss://h:6380/0")


def test_wrong_type_silence_and_loss_raise_then_reconnect(lists: tuple[redis.Redis, str],
                                                          redis_url: str) -> None:
    client, prefix = lists
    client.set(f"{prefix}string", "x")
    client.rpush(f"{prefix}list", "a", "b")
    silent = socket.socket()  # accepts and never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    accepted: list[socket.socket] = []
    threading.Thread(target=lambda: accepted.append(silent.accept()[0]), daemon=True).start()
    reader = ListReader(redis_url, 0.2)
    mute = ListReader(f"redis://127.0.0.1:{silent.getsockname()[1]}/0", 0.05)

    async def check() -> None:
        with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
            await reader.lrange(f"{prefix}string", 9)
        assert await reader.lrange(f"{prefix}list", 9) == ["a", "b"]  # still in step
        assert reader.transport is not None
        reader.transport.abort()  # the connection drops
        await asyncio.sleep(0.01)
        assert await reader.lrange(f"{prefix}list", 0) == ["a"]  # a new connection
        slow = asyncio.gather(mute.lrange("k", 1), mute.lrange("k", 1), return_exceptions=True)
        first, second = await slow
        assert isinstance(first, redis.TimeoutError)
        assert isinstance(second, redis.RedisError)  # dropped with the connection
        assert mute.transport is None
        reader.close()

    run(check())
    silent.close()
    for conn in accepted:
        conn.close()


def test_one_timer_watches_each_request_to_its_own_deadline() -> None:
    """The reader's one timer follows the oldest request: a reply that comes in time
    answers its request, and the next one, sent later and never answered, still fails at
    its own deadline (not at the first's), dropping the connection."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()

    def answer_first_late() -> None:
        conn, _ = server.accept()
        conn.recv(1024)
        threading.Event().wait(0.06)  # inside the first request's 0.1 s
        conn.sendall(b"*1\r\n$1\r\na\r\n")
        threading.Event().wait(1.0)
        conn.close()

    threading.Thread(target=answer_first_late, daemon=True).start()
    reader = ListReader(f"redis://127.0.0.1:{server.getsockname()[1]}/0", 0.1)
    sent: list[float] = []

    async def check() -> float:
        loop = asyncio.get_running_loop()
        first = asyncio.ensure_future(reader.lrange("k", 0))
        await asyncio.sleep(0.05)
        sent.append(loop.time())
        with pytest.raises(redis.TimeoutError):
            await asyncio.gather(first, reader.lrange("k", 0))
        assert await first == ["a"]
        return loop.time()

    failed_at = run(check())
    assert failed_at - sent[0] >= 0.095  # its own deadline, not the first's (0.05 s earlier)
    assert reader.transport is None
    server.close()


def test_a_cancelled_read_keeps_the_replies_in_step() -> None:
    """A read cancelled while its reply is due (the client went away) still takes that
    reply when it comes, even after its own deadline passed: the next read gets its own
    list, never the cancelled one's."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()

    def answer_both_late() -> None:
        conn, _ = server.accept()
        got = b""
        while got.count(b"LRANGE") < 2:
            got += conn.recv(1024)
        threading.Event().wait(0.15)  # past the first read's deadline, inside the second's
        conn.sendall(b"*1\r\n$1\r\na\r\n*1\r\n$1\r\nb\r\n")
        threading.Event().wait(1.0)
        conn.close()

    threading.Thread(target=answer_both_late, daemon=True).start()
    reader = ListReader(f"redis://127.0.0.1:{server.getsockname()[1]}/0", 0.2)

    async def check() -> list[str]:
        first = asyncio.ensure_future(reader.lrange("a", 0))
        await asyncio.sleep(0.1)
        first.cancel()
        found = await reader.lrange("b", 0)
        reader.close()
        return found

    assert run(check()) == ["b"]
    server.close()
