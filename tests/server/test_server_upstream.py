"""The lean path's upstream client (``server/upstream.py``) against real loopback servers.

Each server here is a real asyncio TCP server speaking HTTP/1.1 the way a misbehaving
upstream would (slow, trickling, resetting, setting cookies); the client under test is
the real :class:`Upstream` (its own HTTP/1.1 client, ``server/_http1.py``; aiohttp for what that does not take).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import httpx2
import pytest

from langchain_multigateway.server import upstream as upstream_module
from langchain_multigateway.server.upstream import Upstream, _env_proxy

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
TIMEOUTS = {"connect": 2.0, "read": 2.0, "write": None, "pool": 2.0}


async def _read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return head, await reader.readexactly(length)


def _answer(body: bytes, extra: str = "") -> bytes:
    return (
        f"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n{extra}\r\n".encode()
        + body
    )


@asynccontextmanager
async def serving(handler: Handler) -> AsyncIterator[str]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/v1/chat/completions"
    finally:
        server.close()


async def test_an_answer_comes_back_whole_with_lower_case_headers_and_repeats_joined() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        _, body = await _read_request(reader)
        writer.write(_answer(body, "X-Request-ID: r-1\r\nX-Thing: a\r\nX-Thing: b\r\n"))
        await writer.drain()
        writer.close()

    async with serving(handler) as url:
        answer = await Upstream(url).post(b'{"echo": 1}', {"content-type": "application/json"}, None, TIMEOUTS)
    assert answer.status == 200
    assert answer.body == b'{"echo": 1}'  # what was sent came back: the body went out unchanged
    assert answer.headers["x-request-id"] == "r-1"
    assert answer.headers["x-thing"] == "a, b"


async def test_a_refused_connection_is_a_connect_error_naming_the_server_not_the_query() -> None:
    async with serving(lambda r, w: asyncio.sleep(0)) as url:
        pass  # closed: the port now refuses
    with pytest.raises(httpx2.ConnectError) as caught:
        await Upstream(url + "?api-key=sk-planted-secret-0123456789").post(b"{}", {}, None, TIMEOUTS)
    assert "127.0.0.1" in str(caught.value)
    assert "sk-planted" not in str(caught.value)


async def test_a_server_that_never_answers_is_a_read_timeout_after_the_read_limit() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        await asyncio.sleep(30)

    async with serving(handler) as url:
        started = time.monotonic()
        with pytest.raises(httpx2.ReadTimeout):
            await Upstream(url).post(b"{}", {}, None, {**TIMEOUTS, "read": 0.3})
        assert time.monotonic() - started < 20  # bounded by the read limit, not the server's 30 s


async def test_a_body_trickling_in_forever_is_cut_after_the_read_limit() -> None:
    """Each byte arrives well within the read limit; the body as a whole never ends."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100000\r\n\r\n")
        for _ in range(600):
            writer.write(b" ")
            await writer.drain()
            await asyncio.sleep(0.05)

    async with serving(handler) as url:
        started = time.monotonic()
        with pytest.raises(httpx2.ReadTimeout):
            await Upstream(url).post(b"{}", {}, None, {**TIMEOUTS, "read": 0.5})
        assert time.monotonic() - started < 20  # the trickle would take 30 s


async def test_a_reset_mid_answer_is_a_read_error() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b'HTTP/1.1 200 OK\r\ncontent-length: 500\r\n\r\n{"partial')
        await writer.drain()
        writer.transport.abort()

    async with serving(handler) as url:
        with pytest.raises(httpx2.ReadError):
            await Upstream(url).post(b"{}", {}, None, TIMEOUTS)


async def test_cookies_an_upstream_sets_are_never_sent_back() -> None:
    seen: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                head, _ = await _read_request(reader)
            except asyncio.IncompleteReadError:
                return
            seen.append(head)
            writer.write(_answer(b"{}", "Set-Cookie: tenant=a; Path=/\r\n"))
            await writer.drain()

    async with serving(handler) as url:
        upstream = Upstream(url)
        for _ in range(2):
            await upstream.post(b"{}", {}, None, TIMEOUTS)
    assert len(seen) == 2
    assert b"cookie" not in seen[1].lower().replace(b"set-cookie", b"")


def test_the_proxy_is_read_from_the_environment_and_no_proxy_exempts_a_host(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    assert _env_proxy("https://api.example.com/v1/chat/completions") is None
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    assert _env_proxy("https://api.example.com/v1/chat/completions") == "http://proxy.internal:3128"
    assert _env_proxy("http://api.example.com/v1/chat/completions") is None  # no HTTP_PROXY
    monkeypatch.setenv("NO_PROXY", "example.com")
    assert _env_proxy("https://api.example.com/v1/chat/completions") is None


async def test_a_call_cancelled_mid_answer_leaves_no_connection_checked_out() -> None:
    arrived = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        arrived.set()
        await asyncio.sleep(30)

    async with serving(handler) as url:
        upstream = Upstream(url)
        task = asyncio.ensure_future(upstream.post(b"{}", {}, None, TIMEOUTS))
        await asyncio.wait_for(arrived.wait(), 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert upstream.checked_out() == 0  # the cancelled request's connection was given up, not held


async def test_a_gzip_bomb_is_cut_once_its_inflated_size_passes_the_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    import gzip

    monkeypatch.setattr(upstream_module, "MAX_ANSWER_BYTES", 1024 * 1024)
    bomb = gzip.compress(b"0" * (8 * 1024 * 1024))  # 8 MiB of zeros, about 8 KiB on the wire

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(_answer(bomb, "content-encoding: gzip\r\n"))
        await writer.drain()

    async with serving(handler) as url:
        with pytest.raises(httpx2.ReadError, match="over 1048576 bytes"):
            await Upstream(url).post(b"{}", {}, None, TIMEOUTS)


async def test_an_answer_declared_over_the_cap_is_refused_without_waiting_for_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(upstream_module, "MAX_ANSWER_BYTES", 1024)

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 10000000\r\n\r\n{")
        await writer.drain()
        await asyncio.sleep(30)  # the rest never comes: only the declared length can say it is too large

    async with serving(handler) as url:
        started = time.monotonic()
        with pytest.raises(httpx2.ReadError, match="over 1024 bytes"):
            await Upstream(url).post(b"{}", {}, None, {**TIMEOUTS, "read": 20.0})
        assert time.monotonic() - started < 10


async def test_an_answer_at_the_cap_is_taken_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(upstream_module, "MAX_ANSWER_BYTES", 200_000)
    body = b'{"x": "' + b"y" * (200_000 - 9) + b'"}'
    assert len(body) == 200_000

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(_answer(body))
        await writer.drain()

    async with serving(handler) as url:
        answer = await Upstream(url).post(b"{}", {}, None, TIMEOUTS)
    assert answer.body == body
