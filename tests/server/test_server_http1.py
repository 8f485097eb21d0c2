"""The lean path's own HTTP/1.1 client (``server/_http1.py``, through :class:`Upstream`) against real servers.

Each server is a real asyncio TCP server on a loopback port (one a TLS server with a
certificate made here, one a blocking socket in a thread), answering in the exact HTTP/1.1
wire formats: kept-alive, closing, chunked, gzip and deflate, informational answers,
trickling, lying about lengths. Counted server-side: connections accepted, requests seen.
"""

from __future__ import annotations

import asyncio
import gzip
import shutil
import socket
import ssl
import subprocess
import threading
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import httpx2
import pytest

from langchain_multigateway.server import upstream as upstream_module
from langchain_multigateway.server.upstream import Upstream

TIMEOUTS: dict[str, float | None] = {"connect": 2.0, "read": 2.0}
Answerer = Callable[[int, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[bool]]


class Server:
    """An HTTP/1.1 server on loopback: ``answer(n, reader, writer)`` writes the answer to the n-th request
    (counted from 0) and says whether to keep the connection open. It counts connections and requests."""

    def __init__(self, answer: Answerer) -> None:
        self.answer = answer
        self.accepted = 0
        self.requests: list[bytes] = []  # each request's head
        self.bodies: list[bytes] = []
        self.closed_by_client = 0  # connections that ended with the client's EOF
        self.url = ""

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    self.closed_by_client += 1
                    return
                lengths = [int(h.split(b":", 1)[1]) for h in head.split(b"\r\n") if h.lower().startswith(b"content-le")]
                length = lengths[0] if lengths else 0
                self.bodies.append(await reader.readexactly(length))
                self.requests.append(head)
                if not await self.answer(len(self.requests) - 1, reader, writer):
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:  # the test's loop ending: asyncio's stream callback chokes on a cancelled task
            pass
        finally:
            writer.close()


@asynccontextmanager
async def serving(answer: Answerer, tls: ssl.SSLContext | None = None) -> AsyncIterator[Server]:
    server = Server(answer)
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0, ssl=tls)
    port = listener.sockets[0].getsockname()[1]
    server.url = f"{'https' if tls else 'http'}://127.0.0.1:{port}/v1/chat/completions"
    try:
        yield server
    finally:
        listener.close()


async def _until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, "it never happened"
        await asyncio.sleep(0.01)


def ok(body: bytes = b'{"ok": true}', extra: str = "", version: str = "1.1") -> bytes:
    return f"HTTP/{version} 200 OK\r\ncontent-length: {len(body)}\r\n{extra}\r\n".encode() + body


def answering(raw: bytes, keep: bool = True) -> Answerer:
    async def answer(n: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        writer.write(raw)
        await writer.drain()
        return keep

    return answer


async def test_ten_calls_share_one_kept_alive_connection() -> None:
    async with serving(answering(ok())) as server:
        upstream = Upstream(server.url)
        for _ in range(10):
            answer = await upstream.post(b"{}", {}, None, TIMEOUTS)
            assert (answer.status, answer.body) == (200, b'{"ok": true}')
        assert (server.accepted, len(server.requests)) == (1, 10)
        assert upstream.checked_out() == 0


async def test_the_request_says_what_aiohttp_said_and_the_query_is_url_encoded() -> None:
    async with serving(answering(ok())) as server:
        headers = {"content-type": "application/json", "Authorization": "Bearer sk-x", "authorization": "Bearer sk-y"}
        await Upstream(server.url + "?v=1").post(b"{}", headers, {"api-key": "a b&c"}, TIMEOUTS)
        await Upstream(server.url).post(b"[]", {}, None, TIMEOUTS)
    first, second = (head.decode().split("\r\n") for head in server.requests)
    assert first[0] == "POST /v1/chat/completions?v=1&api-key=a+b%26c HTTP/1.1"
    lowered = [line.lower() for line in first]
    port = server.url.split(":")[2].split("/")[0]
    assert f"host: 127.0.0.1:{port}" in lowered
    assert "content-length: 2" in lowered
    assert "accept-encoding: gzip, deflate" in lowered
    assert [line for line in lowered if line.startswith("authorization")] == ["authorization: bearer sk-y"]  # one
    assert [line for line in lowered if line.startswith("content-type")] == ["content-type: application/json"]
    assert any(line.startswith("user-agent: ") for line in lowered)
    assert "content-type: application/octet-stream" in [line.lower() for line in second]  # bytes, as aiohttp


async def test_a_large_request_body_goes_out_whole() -> None:
    sent = b'{"messages": "' + b"m" * 300_000 + b'"}'
    async with serving(answering(ok())) as server:
        upstream = Upstream(server.url)
        for body in (sent, b"{}"):
            assert (await upstream.post(body, {}, None, TIMEOUTS)).status == 200
    assert server.bodies == [sent, b"{}"]
    assert server.accepted == 1


async def test_a_header_with_a_line_break_is_refused_without_quoting_its_value() -> None:
    async with serving(answering(ok())) as server:
        with pytest.raises(httpx2.LocalProtocolError) as caught:
            await Upstream(server.url).post(b"{}", {"x-key": "sk-secret-value\r\nx-injected: 1"}, None, TIMEOUTS)
        assert "sk-secret" not in str(caught.value)
        assert server.requests == []  # nothing went out


@pytest.mark.parametrize(
    ("first", "reused"),
    [
        (ok(extra="connection: close\r\n"), False),
        (ok(version="1.0"), False),
        (ok(version="1.0", extra="connection: keep-alive\r\n"), True),
        (ok() + b"surplus", False),  # bytes past the answer's end: the answer stands, the connection does not
        (ok() + ok(b"{}"), False),  # a second whole answer nobody asked for, in the same write
    ],
    ids=["connection-close", "http-1.0", "http-1.0-keep-alive", "bytes-past-the-end", "two-answers"],
)
async def test_a_connection_is_reused_only_after_an_answer_that_allows_it(first: bytes, reused: bool) -> None:
    async def answer(n: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        writer.write(first if n == 0 else ok())
        await writer.drain()
        return True  # the server would keep it: only what the answer said decides

    async with serving(answer) as server:
        upstream = Upstream(server.url)
        for _ in range(2):
            assert (await upstream.post(b"{}", {}, None, TIMEOUTS)).body == b'{"ok": true}'
        assert server.accepted == (1 if reused else 2)


async def test_an_answer_then_the_server_closing_is_whole_and_the_next_call_gets_a_new_connection() -> None:
    async with serving(answering(ok(), keep=False)) as server:
        upstream = Upstream(server.url)
        for _ in range(3):
            assert (await upstream.post(b"{}", {}, None, TIMEOUTS)).status == 200
            await asyncio.sleep(0.05)  # the server's EOF arrives while the connection is idle
        assert (server.accepted, len(server.requests)) == (3, 3)


async def test_bytes_arriving_on_an_idle_connection_spoil_it() -> None:
    async def answer(n: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        writer.write(ok(str(n).encode()))
        await writer.drain()
        await asyncio.sleep(0.02)
        writer.write(b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\n\r\n")  # nobody asked
        return True

    async with serving(answer) as server:
        upstream = Upstream(server.url)
        for n in range(3):
            assert (await upstream.post(b"{}", {}, None, TIMEOUTS)).body == str(n).encode()
            await asyncio.sleep(0.1)
        assert server.accepted == 3


def test_a_connection_closed_by_the_server_before_the_loop_saw_it_is_not_lent() -> None:
    """The server closes the idle connection and the call comes before the event loop has read that EOF:
    the pool looks at the socket itself, so the request goes on a fresh connection, sent once."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    requests: list[bytes] = []
    close_now, closed = threading.Event(), threading.Event()

    def serve() -> None:
        for index in range(2):
            conn, _ = listener.accept()
            with conn:
                data = b""
                while not data.endswith(b"{}"):
                    data += conn.recv(65536)
                requests.append(data)
                conn.sendall(ok())
                if index == 0:
                    close_now.wait(10)
            closed.set()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()

    async def main() -> None:
        upstream = Upstream(f"http://127.0.0.1:{port}/v1/chat/completions")
        assert (await upstream.post(b"{}", {}, None, TIMEOUTS)).status == 200
        close_now.set()
        assert closed.wait(10)
        time.sleep(0.05)  # noqa: ASYNC251 (blocks the loop on purpose: the FIN is in the socket, unread by the loop)
        assert (await upstream.post(b"{}", {}, None, TIMEOUTS)).status == 200

    try:
        asyncio.run(main())
    finally:
        thread.join(10)
        listener.close()
    assert len(requests) == 2  # one per call: the second was never written to the closed connection


async def test_idle_connections_are_closed_after_the_keep_alive_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(upstream_module, "_KEEPALIVE_SECONDS", 0.2)
    async with serving(answering(ok())) as server:
        upstream = Upstream(server.url)
        await upstream.post(b"{}", {}, None, TIMEOUTS)
        await _until(lambda: server.closed_by_client > 0)
        assert server.closed_by_client == 1  # closed by the pool, with no call to notice it
        assert (await upstream.post(b"{}", {}, None, TIMEOUTS)).status == 200
        assert server.accepted == 2


async def test_a_chunked_answer_is_read_whole_and_the_connection_reused() -> None:
    body = b'{"content": "' + b"x" * 5000 + b'"}'
    chunks = b"".join(
        f"{len(body[i : i + 700]):x}\r\n".encode() + body[i : i + 700] + b"\r\n" for i in range(0, len(body), 700)
    )
    raw = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n"
    async with serving(answering(raw)) as server:
        upstream = Upstream(server.url)
        for _ in range(2):
            assert (await upstream.post(b"{}", {}, None, TIMEOUTS)).body == body
        assert server.accepted == 1


async def test_a_large_answer_arriving_with_its_headers_in_one_read_is_taken_whole() -> None:
    body = b'{"x": "' + b"y" * 900_000 + b'"}'
    async with serving(answering(ok(body))) as server:
        assert (await Upstream(server.url).post(b"{}", {}, None, TIMEOUTS)).body == body


async def test_headers_without_end_are_cut_at_their_size_limit() -> None:
    raw = b"HTTP/1.1 200 OK\r\n" + b"".join(b"x-filler-%d: %s\r\n" % (i, b"z" * 1000) for i in range(400))
    async with serving(answering(raw)) as server:
        with pytest.raises(httpx2.ReadError, match="bytes of headers"):
            await Upstream(server.url).post(b"{}", {}, None, TIMEOUTS)


async def test_a_body_delimited_by_the_connections_end_is_read_to_it() -> None:
    async with serving(answering(b"HTTP/1.1 200 OK\r\n\r\n" + b'{"until": "eof"}', keep=False)) as server:
        answer = await Upstream(server.url).post(b"{}", {}, None, TIMEOUTS)
    assert answer.body == b'{"until": "eof"}'


@pytest.mark.parametrize(
    ("encoding", "packed"),
    [
        ("gzip", gzip.compress(b'{"packed": 1}')),
        ("deflate", zlib.compress(b'{"packed": 1}')),
        ("deflate", zlib.compress(b'{"packed": 1}')[2:-4]),  # raw deflate, as some servers send it
    ],
    ids=["gzip", "deflate-zlib", "deflate-raw"],
)
async def test_compressed_answers_are_decoded(encoding: str, packed: bytes) -> None:
    async with serving(answering(ok(packed, f"content-encoding: {encoding}\r\n"))) as server:
        answer = await Upstream(server.url).post(b"{}", {}, None, TIMEOUTS)
    assert answer.body == b'{"packed": 1}'


async def test_a_compressed_answer_cut_short_is_a_read_error_and_an_empty_one_is_empty() -> None:
    cut = gzip.compress(b'{"packed": 1}' * 50)[:-12]
    async with serving(answering(ok(cut, "content-encoding: gzip\r\n"))) as server:
        with pytest.raises(httpx2.ReadError, match="cut short"):
            await Upstream(server.url).post(b"{}", {}, None, TIMEOUTS)
    async with serving(answering(ok(b"", "content-encoding: gzip\r\n"))) as server:
        assert (await Upstream(server.url).post(b"{}", {}, None, TIMEOUTS)).body == b""


async def test_a_chunked_gzip_bomb_is_cut_as_it_arrives_and_its_connection_closed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(upstream_module, "MAX_ANSWER_BYTES", 1024 * 1024)
    bomb = gzip.compress(b"0" * (64 * 1024 * 1024))  # 64 MiB inflated, 64 KiB sent

    async def answer(n: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        if n:
            writer.write(ok())
            return True
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-encoding: gzip\r\n\r\n")
        for i in range(0, len(bomb), 4096):
            writer.write(f"{len(bomb[i : i + 4096]):x}\r\n".encode() + bomb[i : i + 4096] + b"\r\n")
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        return True

    async with serving(answer) as server:
        upstream = Upstream(server.url)
        with pytest.raises(httpx2.ReadError, match="over 1048576 bytes"):
            await upstream.post(b"{}", {}, None, TIMEOUTS)
        assert upstream.checked_out() == 0
        assert (await upstream.post(b"{}", {}, None, TIMEOUTS)).status == 200
        assert server.accepted == 2  # the cut answer's connection was not reused


async def test_informational_answers_are_skipped_and_the_connection_kept() -> None:
    raw = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n" + ok(extra="x-real: 1\r\n")
    async with serving(answering(raw)) as server:
        upstream = Upstream(server.url)
        for _ in range(2):
            answer = await upstream.post(b"{}", {}, None, TIMEOUTS)
            assert (answer.status, answer.body, answer.headers.get("x-real")) == (200, b'{"ok": true}', "1")
            assert "link" not in answer.headers  # the 103's headers are not the answer's
        assert server.accepted == 1


@pytest.mark.parametrize(
    "raw",
    [
        b"SSH-2.0-OpenSSH_9.6\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: nine\r\n\r\n{}",
        b"HTTP/1.1 200 OK\r\ncontent-length: 50\r\n\r\n{}",  # then EOF: the body cut short
        b"HTTP/1.1 200 OK\r\ncontent-",  # then EOF: the headers cut short
        b"",  # EOF before any byte of an answer
        b"HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\ncontent-length: 4\r\n\r\nnope",
    ],
    ids=["not-http", "bad-length", "eof-mid-body", "eof-mid-headers", "eof-before-answer", "corrupt-gzip"],
)
async def test_a_malformed_answer_is_a_read_error_and_its_connection_closed(raw: bytes) -> None:
    async with serving(answering(raw, keep=False)) as server:
        upstream = Upstream(server.url)
        with pytest.raises(httpx2.ReadError):
            await upstream.post(b"{}", {}, None, TIMEOUTS)
        assert upstream.checked_out() == 0
        assert len(upstream._pools.get()._idle) == 0


async def test_a_status_line_trickling_in_is_cut_after_connect_plus_read() -> None:
    async def answer(n: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        for byte in b"HTTP/1.1 200 OK\r\nx-slow: " + b"y" * 600:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.05)
        return False

    async with serving(answer) as server:
        upstream = Upstream(server.url)
        started = time.monotonic()
        with pytest.raises(httpx2.ReadTimeout):
            await upstream.post(b"{}", {}, None, {"connect": 0.3, "read": 0.3})
        assert time.monotonic() - started < 20  # the trickle would take 30 s
        assert upstream.checked_out() == 0


async def test_read_none_means_no_limit() -> None:
    async def answer(n: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        await asyncio.sleep(0.3)
        writer.write(ok())
        return True

    async with serving(answer) as server:
        assert (await Upstream(server.url).post(b"{}", {}, None, {"connect": 1.0, "read": None})).status == 200


async def test_waiting_for_a_free_connection_counts_against_the_connect_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(upstream_module, "_POOL_SIZE", 1)
    release = asyncio.Event()

    async def answer(n: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        if n == 0:
            await release.wait()
        writer.write(ok())
        return True

    async with serving(answer) as server:
        upstream = Upstream(server.url)
        holding = asyncio.ensure_future(upstream.post(b"{}", {}, None, {"connect": 5.0, "read": 10.0}))
        await asyncio.sleep(0.1)
        with pytest.raises(httpx2.ConnectTimeout, match="all 1 were in use"):
            await upstream.post(b"{}", {}, None, {"connect": 0.2, "read": 10.0})
        waiting = asyncio.ensure_future(upstream.post(b"{}", {}, None, {"connect": 5.0, "read": 10.0}))
        await asyncio.sleep(0.05)
        release.set()
        assert [(await holding).status, (await waiting).status] == [200, 200]
        assert server.accepted == 1  # the waiting call got the connection the first gave back


@pytest.mark.parametrize("phase", ["waiting-for-a-connection", "before-the-answer", "mid-headers", "mid-body"])
async def test_a_call_cancelled_at_each_phase_closes_its_connection_and_holds_none(
    monkeypatch: pytest.MonkeyPatch, phase: str
) -> None:
    monkeypatch.setattr(upstream_module, "_POOL_SIZE", 1)
    reached, release, client_left = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def answer(n: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        if n == 0 and phase == "mid-headers":
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-le")
        elif n == 0 and phase == "mid-body":
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{")
        elif n == 0 and phase == "waiting-for-a-connection":
            reached.set()
            await release.wait()
            writer.write(ok())
            return True
        elif n > 0:
            writer.write(ok())
            return True
        await writer.drain()
        reached.set()
        if await reader.read(1) == b"":  # the client closed its side
            client_left.set()
        return False

    async with serving(answer) as server:
        upstream = Upstream(server.url)
        first = asyncio.ensure_future(upstream.post(b"{}", {}, None, TIMEOUTS))
        await asyncio.wait_for(reached.wait(), 10)
        cancelled = first
        if phase == "waiting-for-a-connection":  # the pool's one connection is lent: the second call waits
            cancelled = asyncio.ensure_future(upstream.post(b"{}", {}, None, TIMEOUTS))
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.05)
        cancelled.cancel()
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        if phase == "waiting-for-a-connection":
            release.set()
            assert (await first).status == 200
        else:
            await asyncio.wait_for(client_left.wait(), 10)  # the cancelled call's connection was closed (a FIN)
        assert upstream.checked_out() == 0
        assert (await upstream.post(b"{}", {}, None, TIMEOUTS)).status == 200  # the pool serves on
        assert upstream.checked_out() == 0
        assert server.accepted == (1 if phase == "waiting-for-a-connection" else 2)  # a cut one is never reused


async def test_a_redirect_is_followed_through_aiohttp_with_credentials_kept_home() -> None:
    async with serving(answering(ok(b'{"moved": true}'))) as other:
        elsewhere = other.url.replace("127.0.0.1", "localhost").replace("/v1/", "/elsewhere/")
        for status, method in ((307, "POST"), (308, "POST")):  # (a 301/302/303 is refused: see the next test file)
            moved = f"HTTP/1.1 {status} Moved\r\nlocation: {elsewhere}\r\ncontent-length: 0\r\n\r\n".encode()
            async with serving(answering(moved)) as first:
                headers = {"authorization": "Bearer sk-home-only-0123456789", "x-portkey-api-key": "pk-home-0123456789"}
                answer = await Upstream(first.url).post(b'{"q": 1}', headers, None, TIMEOUTS)
            assert (answer.status, answer.body) == (200, b'{"moved": true}')
            assert b"sk-home-only" in first.requests[-1]
            sent = other.requests[-1]
            assert sent.startswith(f"{method} /elsewhere/chat/completions".encode())
            assert b"sk-home-only" not in sent
            assert b"pk-home" not in sent


async def test_a_known_key_under_a_harmless_header_name_stays_home_on_a_redirect() -> None:
    """The rule of the providers' own clients (``credential_headers``): a header is kept from another origin
    by its value too, when that value holds a key the process knows, whatever the header is called."""
    from langchain_multigateway._redact import register_secret

    key = "sk-tenant-key-" + "7" * 24
    register_secret(key)
    async with serving(answering(ok(b'{"moved": true}'))) as other:
        elsewhere = other.url.replace("127.0.0.1", "localhost")
        moved = f"HTTP/1.1 307 Moved\r\nlocation: {elsewhere}\r\ncontent-length: 0\r\n\r\n".encode()
        async with serving(answering(moved)) as first:
            answer = await Upstream(first.url).post(b"{}", {"x-tenant": key, "x-trace": "t-1"}, None, TIMEOUTS)
        assert answer.status == 200
        assert key.encode() in first.requests[-1]  # home gets it ...
        assert key.encode() not in other.requests[-1]  # ... another origin never does
        assert b"t-1" in other.requests[-1]  # a header holding no credential still goes


def _self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, made with the openssl command."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"),
            *("-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=127.0.0.1"),
            *("-addext", "subjectAltName=IP:127.0.0.1"),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command to make a certificate")
async def test_https_is_verified_against_the_default_trust_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = _self_signed(tmp_path)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    async with serving(answering(ok()), tls) as server:
        with pytest.raises(httpx2.ConnectError, match="could not connect"):  # not trusted: refused
            await Upstream(server.url).post(b"{}", {}, None, TIMEOUTS)
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # trusted, as the SDK's client would trust it
        upstream = Upstream(server.url)
        for _ in range(3):
            assert (await upstream.post(b"{}", {}, None, TIMEOUTS)).body == b'{"ok": true}'
        assert server.accepted == 1  # one kept alive for three calls (the refused handshake never got this far)


async def test_a_proxy_from_the_environment_is_used_through_aiohttp(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    async with serving(answering(ok(b'{"via": "proxy"}'))) as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url.split("/v1/")[0])
        upstream = Upstream("http://upstream.example/v1/chat/completions")
        assert (await upstream.post(b"{}", {}, None, TIMEOUTS)).body == b'{"via": "proxy"}'
        await upstream._sessions.get().close()
    assert proxy.requests[0].startswith(b"POST http://upstream.example/v1/chat/completions HTTP/1.1")


async def test_a_url_with_credentials_in_it_goes_through_aiohttp_as_basic_auth() -> None:
    async with serving(answering(ok())) as server:
        upstream = Upstream(server.url.replace("http://", "http://gateway:pw-0123456789@"))
        assert (await upstream.post(b"{}", {}, None, TIMEOUTS)).status == 200
        await upstream._sessions.get().close()
    assert b"authorization: basic " in server.requests[0].lower()
    assert b"pw-0123456789" not in server.requests[0].split(b"\r\n")[0]


async def test_a_url_of_another_scheme_is_unsupported_without_naming_its_query() -> None:
    upstream = Upstream("ftp://files.example/v1/chat/completions?key=sk-planted-0123456789")
    with pytest.raises(httpx2.UnsupportedProtocol) as caught:
        await upstream.post(b"{}", {}, None, TIMEOUTS)
    assert "sk-planted" not in str(caught.value)
    await upstream._sessions.get().close()
