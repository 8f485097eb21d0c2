"""The lean HTTP/1.1 client (``server/_http1.py``) and the server's new paths, attacked.

Each upstream is a real server on a loopback port (an asyncio one, or a blocking socket in a
thread) that misbehaves in one exact way on the wire: answering before it has read the request,
never reading it at all, answering with a status no HTTP/1.1 server sends. Each test says what
the client must do then, and would fail if it did otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
import threading
import time
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import httpx2
import pytest

from langchain_multigateway.chat_models._redirects import RedirectDropsTheRequest, redirect_failure
from langchain_multigateway.server.upstream import Upstream

TIMEOUTS: dict[str, float | None] = {"connect": 2.0, "read": 2.0}
OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"


async def _until(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "it never happened"
        await asyncio.sleep(0.01)


@asynccontextmanager
async def _server(
    handle: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> AsyncIterator[str]:
    """An asyncio server on loopback running ``handle`` per connection; yields its URL."""

    async def guarded(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await handle(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    listener = await asyncio.start_server(guarded, "127.0.0.1", 0, limit=64 * 1024 * 1024)
    port = listener.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/v1/chat/completions"
    finally:
        listener.close()


async def test_an_answer_before_the_whole_request_body_was_written_never_lets_the_connection_be_reused() -> None:
    """The server answers (kept alive) as soon as it has a request's head, without reading its body. The rest of
    a large body is then still in the client's write buffer: were the connection reused, that rest would reach
    the server as the next call's request, and the next call would get the answer to it."""
    heads: list[bytes] = []
    accepted = 0

    async def answer_at_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal accepted
        accepted += 1
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            heads.append(head)
            writer.write(OK if head.startswith(b"POST ") else b"HTTP/1.1 400 Bad\r\ncontent-length: 3\r\n\r\nbad")
            await writer.drain()

    async with _server(answer_at_once) as url:
        upstream = Upstream(url)
        first = await upstream.post(b"x" * (8 * 1024 * 1024), {}, None, TIMEOUTS)
        second = await upstream.post(b"{}", {}, None, TIMEOUTS)
        assert (first.status, second.status, second.body) == (200, 200, b"ok")
        assert accepted == 2  # the second call went on a new connection
        assert all(head.startswith(b"POST /v1/chat/completions HTTP/1.1") for head in heads)
        assert upstream.checked_out() == 0


def _open_sockets() -> int:
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # closed since it was listed
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
    return count


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts the process's sockets in /proc (Linux)")
async def test_a_call_to_a_server_that_never_reads_its_request_releases_its_socket_when_it_fails() -> None:
    """A hung upstream (its process stopped; the kernel still accepts connections) reads nothing: the request
    fills the socket's buffers and the rest waits in the client's. When the call times out, its connection
    must go then: asyncio's plain close() first writes what is buffered (to this server, never), so each
    such call would keep a socket and up to a whole request body for as long as the server lives."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    held: list[socket.socket] = []
    done = threading.Event()

    def deaf() -> None:  # accepts, never reads, keeps the connection until the test ends
        conn, _ = listener.accept()
        held.append(conn)
        done.wait(30)
        conn.close()

    thread = threading.Thread(target=deaf, daemon=True)
    thread.start()
    try:
        upstream = Upstream(f"http://127.0.0.1:{port}/v1/chat/completions")
        before = _open_sockets()  # the listener's
        with pytest.raises(httpx2.ReadTimeout):
            await upstream.post(b"x" * (16 * 1024 * 1024), {}, None, {"connect": 2.0, "read": 0.5})
        assert len(held) == 1  # the server's side of the connection, kept open
        await _until(lambda: _open_sockets() == before + 1)  # only the server's side is left
        assert upstream.checked_out() == 0
    finally:
        done.set()
        thread.join(10)
        listener.close()


@pytest.mark.parametrize("status", [b"000", b"099"])
async def test_an_answer_with_a_status_below_100_is_a_read_error_not_a_wait_for_another(status: bytes) -> None:
    """llhttp takes any three digits as a status. Under 100 is none: read as informational, the client would
    wait for the "real" answer after it, for as long as the call may read (with no read limit: for ever)."""

    async def odd(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 " + status + b" Odd\r\ncontent-length: 2\r\n\r\nhi")
        await writer.drain()
        await reader.read()  # keeps the connection open until the client closes it

    async with _server(odd) as url:
        upstream = Upstream(url)
        call = upstream.post(b"{}", {}, None, {"connect": 2.0, "read": None})
        with pytest.raises(httpx2.ReadError, match=f"status {status.decode()}"):
            await asyncio.wait_for(call, 10)
        assert upstream.checked_out() == 0


@pytest.mark.parametrize("wrapped", [True, False], ids=["zlib-wrapped", "raw"])
async def test_a_deflate_answer_whose_first_piece_is_one_byte_is_decoded(wrapped: bool) -> None:
    """``Content-Encoding: deflate`` is zlib-wrapped or (some servers) raw, told apart by the first two bytes.
    A chunked answer whose first chunk is one byte must be read as the same answer sent at once."""
    text = b'{"ok": "deflated"}'
    packer = zlib.compressobj(wbits=zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS)
    packed = packer.compress(text) + packer.flush()
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in (packed[:1], packed[1:])) + b"0\r\n\r\n"
    head = b"HTTP/1.1 200 OK\r\ncontent-encoding: deflate\r\ntransfer-encoding: chunked\r\n\r\n"

    async def one_byte_first(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        first_chunk_end = chunked.index(b"\r\n", 3) + 2  # "1\r\n" + the byte + "\r\n"
        writer.write(head + chunked[:first_chunk_end])
        await writer.drain()
        await asyncio.sleep(0.05)  # the first byte is read alone
        writer.write(chunked[first_chunk_end:])
        await writer.drain()
        await reader.read()

    async with _server(one_byte_first) as url:
        answer = await Upstream(url).post(b"{}", {}, None, TIMEOUTS)
    assert (answer.status, answer.body) == (200, text)


@pytest.mark.parametrize("status", [300, 304, 305])
async def test_a_3xx_that_is_not_a_redirect_is_the_answer_even_with_a_location(status: int) -> None:
    """aiohttp and the SDK's client follow 301, 302, 303, 307 and 308 only; the lean path must not send the call
    anywhere else on another 3xx that carries a Location (the full path would answer with that status)."""
    elsewhere: list[bytes] = []

    async def other(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        elsewhere.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(OK)
        await writer.drain()

    async with _server(other) as other_url:
        moved = f"HTTP/1.1 {status} Not A Redirect\r\nlocation: {other_url}\r\ncontent-length: 0\r\n\r\n".encode()

        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            await reader.readexactly(2)
            writer.write(moved)
            await writer.drain()
            await reader.read()

        async with _server(answer) as url:
            got = await Upstream(url).post(b"{}", {}, None, TIMEOUTS)
    assert got.status == status
    assert elsewhere == []


def _chunked_with_trailers(trailers: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n" + trailers + b"\r\n"


async def test_trailers_are_not_taken_for_headers_and_endless_ones_are_cut() -> None:
    """Trailer fields (after a chunked body's last chunk) came in through the same parser callback as headers:
    kept and merged into the answer's headers, and never counted, so a server sending them without end held
    them all in memory (about 300 MB a second on loopback) until the read limit. aiohttp and httpx2 keep none."""
    sent: list[bytes] = [
        _chunked_with_trailers(b"x-request-id: from-the-trailer\r\n"),
        _chunked_with_trailers((b"x-padding: " + b"v" * 100 + b"\r\n") * 20_000),  # 2.2 MB of them
    ]

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await reader.readuntil(b"\r\n\r\n")
            await reader.readexactly(2)
            writer.write(sent.pop(0))
            await writer.drain()

    async with _server(answer) as url:
        upstream = Upstream(url)
        plain = await upstream.post(b"{}", {}, None, TIMEOUTS)
        assert (plain.status, plain.body) == (200, b"ok")
        assert "x-request-id" not in plain.headers
        with pytest.raises(httpx2.ReadError, match="bytes of headers"):
            await upstream.post(b"{}", {}, None, TIMEOUTS)
        assert upstream.checked_out() == 0


async def test_a_small_pool_under_cancellations_timeouts_and_broken_answers_holds_nothing_after(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Five hundred calls at once through a pool of three connections: some cancelled at a random moment,
    some with a connect limit too short to get a connection, against a server that now and then closes, cuts
    an answer short or says ``Connection: close``. Afterwards no connection is lent, opening or waited for,
    at most three are idle, and the pool still serves."""
    from langchain_multigateway.server import upstream as upstream_module

    monkeypatch.setattr(upstream_module, "_POOL_SIZE", 3)
    chance = random.Random(7)
    calm = asyncio.Event()  # set: the server answers every request whole

    async def moody(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(int(line[15:]) for line in head.lower().split(b"\r\n") if line.startswith(b"content-length:"))
            await reader.readexactly(length)
            await asyncio.sleep(chance.random() * 0.02)
            mood = 1.0 if calm.is_set() else chance.random()
            if mood < 0.05:
                return  # closes without answering
            if mood < 0.10:
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\nok")  # cut short
                return
            if mood < 0.15:
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
                return
            writer.write(OK)
            await writer.drain()

    async with _server(moody) as url:
        upstream = Upstream(url)

        async def one() -> str:
            connect = chance.choice([0.05, 5.0])
            call = asyncio.ensure_future(upstream.post(b"{}", {}, None, {"connect": connect, "read": 5.0}))
            if chance.random() < 0.4:
                await asyncio.sleep(chance.random() * 0.05)
                call.cancel()
            try:
                return str((await call).status)
            except asyncio.CancelledError:
                return "cancelled"
            except (httpx2.ConnectTimeout, httpx2.ReadError) as exc:
                return type(exc).__name__

        outcomes = await asyncio.gather(*(one() for _ in range(500)))
        assert set(outcomes) <= {"200", "cancelled", "ConnectTimeout", "ReadError"}
        assert "200" in outcomes
        pool = upstream._pools.get()
        assert (upstream.checked_out(), pool._opening, len(pool._waiters)) == (0, 0, 0)
        assert len(pool._idle) <= 3
        calm.set()
        after = await asyncio.gather(*(upstream.post(b"{}", {}, None, {"connect": 5.0, "read": 5.0}) for _ in range(9)))
        assert [answer.status for answer in after] == [200] * 9
        assert upstream.checked_out() == 0


def test_one_upstream_used_from_several_event_loops_in_threads_at_once_keeps_a_pool_per_loop() -> None:
    """Four threads, each running event loops one after another, send through the same ``Upstream`` at once: every
    call is answered (no connection or future of one loop used from another), each loop's pool lends none after
    its calls, and each is closed and forgotten with its loop."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve_connection(conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as stream:
            while True:
                head = b""
                while not head.endswith(b"\r\n\r\n"):
                    line = stream.readline()
                    if not line:
                        return
                    head += line
                length = next(int(h[15:]) for h in head.lower().split(b"\r\n") if h.startswith(b"content-length:"))
                stream.read(length)
                conn.sendall(OK)

    def accept() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:  # the listener closed: the test is over
                return
            threading.Thread(target=serve_connection, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    upstream = Upstream(f"http://127.0.0.1:{port}/v1/chat/completions")
    statuses: list[int] = []
    failures: list[BaseException] = []

    async def calls() -> None:
        answers = await asyncio.gather(*(upstream.post(b"{}", {}, None, TIMEOUTS) for _ in range(50)))
        statuses.extend(answer.status for answer in answers)
        assert upstream.checked_out() == 0

    def worker() -> None:
        try:
            for _ in range(2):
                asyncio.run(calls())
        except BaseException as exc:  # reported below, in the test's thread
            failures.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    finally:
        listener.close()
    assert failures == []
    assert statuses == [200] * (4 * 2 * 50)
    assert len(upstream._pools._by_loop) == 0  # each loop's pool closed and dropped with its loop


async def test_an_answer_in_one_byte_chunks_is_held_in_memory_once_not_piece_by_piece() -> None:
    """MAX_ANSWER_BYTES caps what one upstream may make the process hold. Kept as a list of the pieces the
    parser hands over, a chunked answer of one-byte chunks cost a Python object (about 40 bytes) per byte:
    some 90 times its size, over 5 GB at the cap. Measured here by the allocations made while it is read."""
    size = 1_000_000
    block = b"1\r\nx\r\n" * 100_000

    async def one_byte_chunks(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await reader.readexactly(2)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        for _ in range(size // 100_000):
            writer.write(block)
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        await reader.read()

    async with _server(one_byte_chunks) as url:
        upstream = Upstream(url)
        tracemalloc.start()
        try:
            answer = await upstream.post(b"{}", {}, None, {"connect": 5.0, "read": 60.0})
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert answer.body == b"x" * size
    assert peak < 16 * size  # the answer, a copy or two, the reads in flight; a list of its bytes was some 90 times it


@pytest.mark.parametrize("status", [301, 302, 303])
@pytest.mark.parametrize("hop", ["first", "after-a-307"])
async def test_a_redirect_that_would_drop_the_posts_body_is_refused_as_the_providers_refuse_it(
    status: int, hop: str
) -> None:
    """A 301, 302 or 303 to the chat POST would have it resent as a GET without its body (what aiohttp and httpx
    do): whatever page answers is no answer to the chat. The providers' own clients refuse it, and a typed,
    not retried error says to set the base URL; the lean path must refuse it too, on its own first hop and on a
    later one (after a 307, through aiohttp), and send nothing there."""
    reached: list[bytes] = []

    async def elsewhere(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        reached.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(OK)
        await writer.drain()

    def moving_to(url: str, code: int) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
        async def moved(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                await reader.readexactly(2)
                writer.write(f"HTTP/1.1 {code} Moved\r\nlocation: {url}\r\ncontent-length: 0\r\n\r\n".encode())
                await writer.drain()

        return moved

    async with _server(elsewhere) as target, _server(moving_to(target, status)) as dropping:
        first = dropping
        async with _server(moving_to(dropping, 307)) as keeping:
            if hop == "after-a-307":
                first = keeping
            upstream = Upstream(first + "?api-key=sk-planted-0123456789")
            with pytest.raises(RedirectDropsTheRequest) as caught:
                await upstream.post(b"{}", {"authorization": "Bearer sk-planted-0123456789"}, None, TIMEOUTS)
            await upstream._sessions.get().close()
    assert reached == []  # nothing was sent where it pointed
    assert f"HTTP {status}" in str(caught.value)
    assert "sk-planted" not in str(caught.value)
    failure = redirect_failure(caught.value)
    assert failure is not None  # the providers' typing: a ProviderError with the redirect's status, not retried
    assert failure[1] == status
