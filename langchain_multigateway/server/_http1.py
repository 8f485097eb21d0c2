"""The lean path's own HTTP/1.1 client: asyncio connections, httptools parsing, a keep-alive pool.

Why hand-written, on httptools: measured in-process against the loopback stub, per POST and
read of a small chat completion, aiohttp (as ``Upstream`` used it) cost 0.29-0.31 ms of CPU,
a bare aiohttp session 0.21-0.25 ms, and a bare HTTP/1.1 exchange on a kept-alive asyncio
connection 0.08 ms; pyreqwest and aiosonic were no faster than aiohttp. The server's whole
budget is 1 ms per request, so the client was the largest lever left. An exchange here is one
write, llhttp (httptools: uvicorn's parser, in C) calling back as bytes arrive, one future
resolved when the answer is whole, and its time limits as one loop timer, not a task.

It serves one thing: a POST to a plain ``http://`` or ``https://`` URL with no proxy. What it
does not do (proxies, redirects, URLs with credentials in them) stays with aiohttp; see
``upstream.py``.

What the pool guarantees (per deployment and event loop):

* at most ``size`` connections, lent or idle; a call waiting for one waits within its connect limit;
* a connection goes back to the pool only after a whole answer that allows keep-alive (HTTP/1.1
  without ``Connection: close``, or HTTP/1.0 with ``keep-alive``) was read to its end, with not
  one byte more; anything else (an error, a timeout, a cancelled call, an answer cut short) closes it;
* a pooled connection is lent only if nothing arrived on it while it was idle (no byte, no EOF:
  checked on the socket too, for what the loop has not yet delivered) and it has been idle less
  than the keep-alive time; idle ones are closed when that time passes, used or not;
* a request is never sent twice. A connection the server closed while idle is seen closed before
  it is lent, and the call gets a fresh one. A request already written on a connection that then
  ends with no answer is a ReadError, not sent again: the server may have read it and started the
  work (an answer paid for twice). As Go's net/http and aiohttp do for a POST; the router's retry
  policy decides, knowing it.
"""

from __future__ import annotations

import asyncio
import contextlib
import select
import ssl
import sys
import zlib
from collections import deque
from collections.abc import Mapping
from typing import Any, cast
from urllib.parse import quote, urlencode, urlsplit

import httptools
import httpx2

from langchain_multigateway import __version__
from langchain_multigateway._redact import redact

__all__ = ["Answer", "Pool", "Target"]

_MAX_HEAD = 256 * 1024  # status line and headers, all together: a server sending headers for ever is cut
_USER_AGENT = f"Python/{sys.version_info[0]}.{sys.version_info[1]} langchain-multigateway/{__version__}"
# Sent when the caller's headers do not say otherwise, as aiohttp did (a body of bytes: octet-stream).
_DEFAULTS = {
    "accept": "*/*",
    "accept-encoding": "gzip, deflate",
    "user-agent": _USER_AGENT,
    "content-type": "application/octet-stream",
}
_OURS = frozenset({"host", "content-length", "transfer-encoding"})  # never taken from the caller's headers
_TOKEN = frozenset("!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")


class Answer:
    """An upstream's complete answer: status, headers (lower-case names), body."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body


def joined_headers(pairs: Any) -> dict[str, str]:
    """Header ``(name, value)`` pairs as httpx's Headers read: lower-case names, repeats joined by ", "."""
    out: dict[str, str] = {}
    for name, value in pairs:
        key = name.lower()
        out[key] = f"{out[key]}, {value}" if key in out else value
    return out


class Target:
    """Where the requests go: host, port, TLS or not, and the request line's path."""

    __slots__ = ("_head_of", "host", "host_header", "path", "port", "tls")

    def __init__(self, host: str, port: int, tls: bool, host_header: str, path: str) -> None:
        self.host = host
        self.port = port
        self.tls = tls
        self.host_header = host_header
        self.path = path
        self._head_of: tuple[Any, bytes] | None = None  # the last headers and params, and the head they make

    @classmethod
    def of(cls, url: str) -> Target | None:
        """The target of a plain ``http(s)://host[:port]/path[?query]`` URL; None for anything else
        (another scheme, ``user:password@``, a fragment, a bad port, a host no IDNA encodes): aiohttp's to send."""
        try:
            parts = urlsplit(url)
            port = parts.port
            host = parts.hostname
            if parts.scheme not in ("http", "https") or not host or "@" in parts.netloc or parts.fragment:
                return None
            ascii_host = host.encode("idna").decode("ascii")
        except (ValueError, UnicodeError):
            return None
        tls = parts.scheme == "https"
        default = 443 if tls else 80
        shown = f"[{ascii_host}]" if ":" in ascii_host else ascii_host  # an IPv6 literal
        host_header = shown if port in (None, default) else f"{shown}:{port}"
        path = quote(parts.path or "/", safe="/%:@!$&'()*+,;=-._~")
        if parts.query:
            path += "?" + quote(parts.query, safe="/%:@!$&'()*+,;=-._~?")
        return cls(ascii_host, port or default, tls, host_header, path)

    def head(self, headers: Mapping[str, str], params: Mapping[str, Any] | None) -> bytes:
        """The request's head up to its content-length (the caller's headers, checked, and ours)."""
        key = (tuple(headers.items()), tuple(params.items()) if params else None)
        cached = self._head_of
        if cached is not None and cached[0] == key:
            return cached[1]
        path = self.path
        if params:
            path += ("&" if "?" in path else "?") + urlencode(params)
        given: dict[str, tuple[str, str]] = {}  # lower-case name -> (name, value): a later one replaces, as aiohttp
        for name, value in headers.items():
            value = str(value)
            if not name or not _TOKEN.issuperset(name) or "\r" in value or "\n" in value or "\0" in value:
                # Never quoted: the value may be a key. A line break would let it write headers of its own.
                msg = f"the header {name[:40]!r} cannot be sent: a line break or a bad character in its name or value"
                raise httpx2.LocalProtocolError(msg)
            given[name.lower()] = (name, value)
        host = given["host"][1] if "host" in given else self.host_header  # the caller's own Host, as aiohttp
        lines = [f"POST {path} HTTP/1.1\r\nhost: {host}\r\n"]
        lines += [f"{name}: {value}\r\n" for lowered, (name, value) in given.items() if lowered not in _OURS]
        lines += [f"{name}: {value}\r\n" for name, value in _DEFAULTS.items() if name not in given]
        head = "".join(lines).encode()  # as aiohttp: UTF-8
        self._head_of = (key, head)
        return head


class Pool:
    """Keep-alive connections to one target, for one event loop (see the module docstring)."""

    def __init__(self, target: Target, where: str, size: int, keepalive: float) -> None:
        self.target = target
        self.where = where  # the server, as errors name it: never its query
        self.size = size
        self.keepalive = keepalive
        self.lent: set[_Connection] = set()
        self._idle: list[_Connection] = []  # oldest first: a LIFO stack, so the warmest is lent first
        self._opening = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._sweep: asyncio.TimerHandle | None = None
        self._closed = False
        # The default context, as the SDK's client: verifies, and SSL_CERT_FILE / SSL_CERT_DIR apply.
        self._tls = ssl.create_default_context() if target.tls else None

    async def post(self, head: bytes, body: bytes, connect: float | None, read: float | None, limit: int) -> Answer:
        """One exchange on a pooled or new connection; httpx2 exceptions say which phase failed."""
        loop = asyncio.get_running_loop()
        deadline = None if connect is None else loop.time() + connect
        for last in (False, True):
            connection = await self._lend(loop, deadline)
            reusable = False
            try:
                answer = await connection.exchange(head, body, connect, read, limit)
                reusable = connection.reusable()
                return answer
            except _NotSentError as exc:
                # Closed (or spoken on) before one byte of the request went out: sent nowhere, so safe to
                # send once more on another connection (a server that shuts every new connection: an error).
                if last:
                    raise httpx2.ReadError(f"{self.where} closed the connection before the request") from exc
            finally:  # however it ended (an error, a cancelled call): a connection not reusable is closed
                self._give_back(connection, reusable)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _lend(self, loop: asyncio.AbstractEventLoop, deadline: float | None) -> _Connection:
        while True:
            if self._closed:
                raise httpx2.ConnectError(f"the connection pool to {self.where} is closed (its event loop ended)")
            now = loop.time()
            idle = self._idle
            while idle:
                connection = idle.pop()
                if connection.fresh(now, self.keepalive):
                    self.lent.add(connection)
                    return connection
                connection.close()
            if len(self.lent) + self._opening < self.size:
                return await self._open(loop, deadline)
            waiter = loop.create_future()
            self._waiters.append(waiter)
            try:
                async with asyncio.timeout_at(deadline):
                    await waiter
            except BaseException as exc:
                if waiter.done() and not waiter.cancelled():
                    self._wake()  # woken, but leaving (cancelled, timed out): the free slot goes to the next
                if isinstance(exc, TimeoutError):
                    msg = f"no connection to {self.where} in time: all {self.size} were in use"
                    raise httpx2.ConnectTimeout(msg) from None
                raise
            finally:
                waiter.cancel()
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)

    async def _open(self, loop: asyncio.AbstractEventLoop, deadline: float | None) -> _Connection:
        target = self.target
        where = self.where
        self._opening += 1
        opened = False
        try:
            async with asyncio.timeout_at(deadline):  # not wait_for: a connection made as it times out is closed
                _, connection = await loop.create_connection(
                    lambda: _Connection(where),
                    target.host,
                    target.port,
                    ssl=self._tls,
                    server_hostname=target.host if target.tls else None,
                )
            self.lent.add(connection)
            opened = True
            return connection
        except TimeoutError:
            raise httpx2.ConnectTimeout(f"no connection to {where} in time") from None
        except OSError as exc:  # refused, unreachable, no such host, a certificate that does not verify
            raise httpx2.ConnectError(redact(f"could not connect to {where}: {exc}")) from exc
        finally:
            self._opening -= 1
            if not opened:
                self._wake()  # its slot is free again

    def _give_back(self, connection: _Connection, reusable: bool) -> None:
        self.lent.discard(connection)
        if reusable and not self._closed:
            connection.idle_since = asyncio.get_running_loop().time()
            self._idle.append(connection)
            if self._sweep is None:
                self._sweep = asyncio.get_running_loop().call_at(connection.idle_since + self.keepalive, self._expire)
        else:
            connection.close()
        self._wake()

    def _wake(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _expire(self) -> None:
        """Close the connections idle for the keep-alive time; come back when the next one will be."""
        self._sweep = None
        idle = self._idle
        loop = asyncio.get_running_loop()
        now = loop.time()
        expired = 0
        while expired < len(idle) and now - idle[expired].idle_since >= self.keepalive:
            idle[expired].close()
            expired += 1
        del idle[:expired]
        if idle:
            self._sweep = loop.call_at(idle[0].idle_since + self.keepalive, self._expire)

    async def close(self) -> None:
        """Close every connection (idle or lent) and refuse new calls: the pool's event loop is ending."""
        self._closed = True
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        connections = [*self._idle, *self.lent]
        self._idle.clear()
        for connection in connections:
            connection.close()
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)  # it finds the pool closed
        lost = [c.lost for c in connections if not c.lost.done()]
        if lost:
            await asyncio.wait(lost, timeout=1.0)


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection: at most one exchange at a time; what it reads is parsed as it arrives."""

    def __init__(self, where: str) -> None:
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._where = where
        self.lost: asyncio.Future[None] = loop.create_future()
        self.transport: asyncio.Transport | None = None
        self.idle_since = 0.0
        self._spoiled = False  # it had bytes while idle, an EOF, an error, or an answer not read to its end
        self._poll: Any = None
        self._parser = httptools.HttpResponseParser(self)
        # The exchange in flight (None: idle).
        self._answer: asyncio.Future[Answer] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._sent = self._headers_at = 0.0
        self._connect = 0.0
        self._read: float | None = None
        self._limit = 0
        self._status = 0
        self._headers: list[tuple[bytes, bytes]] = []
        # The first piece as it came (most answers are one), then one buffer: not a list of pieces, as an
        # answer of one-byte chunks would hold an object (about 40 bytes) per byte: 5 GB at MAX_ANSWER_BYTES.
        self._body: bytes | bytearray = b""
        self._size = 0
        self._head_size = 0
        self._any_byte = self._headers_done = self._until_eof = self._keep_alive = False
        self._inflate: Any = None
        self._fed = False  # any compressed byte given to it
        self._failure: Exception | None = None

    # ------------------------------------------------------------------ the pool's side
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is one, without subclassing it
        sock = transport.get_extra_info("socket")
        if sock is not None and hasattr(select, "poll"):
            self._poll = select.poll()
            self._poll.register(sock.fileno(), select.POLLIN)

    def fresh(self, now: float, keepalive: float) -> bool:
        """Whether this idle connection may carry a request: open, idle for less than ``keepalive``,
        and nothing arrived on it while idle (nor waits on its socket, not yet read by the loop)."""
        transport = self.transport
        if self._spoiled or transport is None or transport.is_closing() or now - self.idle_since >= keepalive:
            return False
        return self._poll is None or not self._poll.poll(0)

    def reusable(self) -> bool:
        transport = self.transport
        # Part of the request still unwritten: the server answered before reading it all (an early 413, or
        # a broken server). Sent later, that rest would be read as the next call's request.
        return (
            not self._spoiled
            and self._keep_alive
            and transport is not None
            and not transport.is_closing()
            and not transport.get_write_buffer_size()
        )

    def close(self) -> None:
        self._spoiled = True
        if self.transport is not None and not self.transport.is_closing():
            _shut(self.transport)

    async def exchange(self, head: bytes, body: bytes, connect: float | None, read: float | None, limit: int) -> Answer:
        if self._spoiled or self.transport is None or self.transport.is_closing():
            raise _NotSentError  # a new connection closed, or spoken on, before the request
        loop = self._loop
        answer: asyncio.Future[Answer] = loop.create_future()
        self._answer = answer
        self._failure = None
        self._headers = []
        self._body = b""
        self._size = self._head_size = 0
        self._any_byte = self._headers_done = self._until_eof = self._keep_alive = False
        self._inflate = None
        self._fed = False
        self._limit = limit
        self._connect = connect or 0.0
        self._read = read
        length = b"content-length: %d\r\n\r\n" % len(body)
        if len(body) < 65536:
            self.transport.write(b"".join((head, length, body)))
        else:
            self.transport.write(head + length)
            self.transport.write(body)
        self._sent = loop.time()
        if read is not None:
            self._timer = loop.call_at(self._sent + read, self._check_time)
        try:
            return await answer
        finally:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._answer = None

    # ------------------------------------------------------------------ asyncio's side
    def data_received(self, data: bytes) -> None:
        answer = self._answer
        if answer is None or answer.done():  # bytes nobody asked for (an idle connection's "408"): never reused
            self._spoiled = True
            return
        self._any_byte = True
        try:
            self._parser.feed_data(data)
        except Exception as exc:  # httptools' errors, a callback's wrapped (any other too: one parse, one outcome)
            if answer.done() and self._failure is None:  # bytes past the answer's end: it stands, the connection not
                self._spoiled = True
                return
            failure = self._failure or httpx2.ReadError(f"the answer from {self._where} is not valid HTTP/1.1: {exc}")
            self._fail(failure)
            return
        if not self._headers_done:  # counted as they come, so a server sending headers for ever is cut
            self._head_size += len(data)
            if self._head_size > _MAX_HEAD:
                self._fail(httpx2.ReadError(f"the answer from {self._where} has over {_MAX_HEAD} bytes of headers"))

    def eof_received(self) -> bool | None:
        self._ended(None)
        return None  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        self._ended(exc)
        if not self.lost.done():
            self.lost.set_result(None)

    def _ended(self, exc: Exception | None) -> None:
        self._spoiled = True
        answer = self._answer
        if answer is None or answer.done():
            return
        if self._until_eof and self._headers_done and exc is None:
            self._finish()  # a body delimited by the connection's end: it ended
            return
        if not self._any_byte:
            what = "closed the connection without answering"
        elif not self._headers_done:
            what = "closed the connection before the answer's headers ended"
        else:
            what = "closed the connection before the answer's body ended"
        detail = f" ({type(exc).__name__}: {exc})" if exc is not None else ""
        self._fail(httpx2.ReadError(redact(f"{self._where} {what}{detail}")))

    def _check_time(self) -> None:
        """The exchange's one timer: the first byte within ``read`` of sending, the headers within
        ``connect + read`` of it, the body within ``read`` of the headers (a trickle is cut all the same)."""
        self._timer = None
        read = self._read
        answer = self._answer
        if read is None or answer is None or answer.done():
            return
        if not self._any_byte:
            end = self._sent + read
        elif not self._headers_done:
            end = self._sent + self._connect + read
        else:
            end = self._headers_at + read
        if self._loop.time() >= end:
            self._fail(httpx2.ReadTimeout(f"{self._where} did not answer in time"))
        else:
            self._timer = self._loop.call_at(end, self._check_time)

    def _fail(self, failure: Exception) -> None:
        self._spoiled = True
        answer = self._answer
        if answer is not None and not answer.done():
            answer.set_exception(failure)
        if self.transport is not None:
            _shut(self.transport)

    def _finish(self) -> None:
        answer = self._answer
        if answer is None or answer.done():
            return
        body = bytes(self._body) if isinstance(self._body, bytearray) else self._body
        inflate = self._inflate
        if inflate is not None and self._fed and not inflate.eof:  # (an empty body is no cut stream)
            self._fail(httpx2.ReadError(f"the compressed answer from {self._where} was cut short"))
            return
        headers = joined_headers((name.decode("latin-1"), _text(value)) for name, value in self._headers)
        self._body, self._headers = b"", []  # an idle connection holds no answer
        answer.set_result(Answer(self._status, headers, body))

    # ------------------------------------------------------------------ httptools' callbacks
    def on_message_begin(self) -> None:
        answer = self._answer
        if answer is None or answer.done():  # a second answer after the one asked for: never reused
            raise _RefusedError
        self._headers = []

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._headers_done:  # a trailer, after a chunked body: kept by neither aiohttp nor httpx2, nor here;
            self._head_size += len(name) + len(value)  # counted, or a server sending them for ever fills memory
            if self._head_size > _MAX_HEAD:
                self._failure = httpx2.ReadError(f"the answer from {self._where} has over {_MAX_HEAD} bytes of headers")
                raise _RefusedError
            return
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        self._status = status
        if status < 100:  # llhttp takes any three digits: "000" would pass for informational, and be waited past
            self._failure = httpx2.ReadError(f"{self._where} answered with status {status:03d}, which HTTP has not")
            raise _RefusedError
        if status < 200:
            return  # an informational answer (100 Continue, 103 Early Hints): the real one follows
        self._headers_done = True
        self._headers_at = self._loop.time()
        declared: int | None = None
        chunked = False
        encoding = b""
        for name, value in self._headers:
            lowered = name.lower()
            if lowered == b"content-length":
                declared = int(value)  # llhttp checked it is a number, and one
            elif lowered == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif lowered == b"content-encoding":
                encoding = value.strip().lower()
        if declared is not None and declared > self._limit:
            self._failure = httpx2.ReadError(_too_large(self._where, self._limit))
            raise _RefusedError
        self._until_eof = declared is None and not chunked and status not in (204, 304)
        if encoding in (b"gzip", b"x-gzip"):
            self._inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == b"deflate":
            self._inflate = _Deflate()

    def on_body(self, piece: bytes) -> None:
        inflate = self._inflate
        room = self._limit - self._size
        if inflate is not None:
            self._fed = True
            try:
                piece = inflate.decompress(piece, room + 1)  # never more than one byte past the cap
            except zlib.error as exc:
                self._failure = httpx2.ReadError(f"the compressed answer from {self._where} is corrupt: {exc}")
                raise _RefusedError from exc
        self._size += len(piece)
        if self._size > self._limit:  # a huge or gzip-bombed answer, cut as it arrives
            self._failure = httpx2.ReadError(_too_large(self._where, self._limit))
            raise _RefusedError
        if not self._body:
            self._body = piece
        else:
            if not isinstance(self._body, bytearray):
                self._body = bytearray(self._body)
            self._body += piece  # in place

    def on_message_complete(self) -> None:
        status = self._status
        if status < 200:
            if status == 101:  # a protocol switch nobody asked for
                self._failure = httpx2.ReadError(f"{self._where} answered 101 Switching Protocols to a POST")
                raise _RefusedError
            self._headers = []
            return
        self._keep_alive = self._parser.should_keep_alive()
        self._finish()


class _NotSentError(Exception):
    """The connection was unusable before one byte of the request was written on it."""


class _RefusedError(Exception):
    """Raised from a parser callback to stop parsing; the reason is in ``_failure``."""


class _Deflate:
    """``Content-Encoding: deflate`` as servers send it: zlib-wrapped, or (some servers) raw."""

    def __init__(self) -> None:
        self._inner: Any = None
        self._first = b""  # the body's first byte, while it came alone: which of the two it is takes two

    @property
    def eof(self) -> bool:
        return self._inner is not None and bool(self._inner.eof)

    def decompress(self, data: bytes, max_length: int) -> bytes:
        if self._inner is None:
            data = self._first + data
            if len(data) < 2:  # a body arriving a byte at a time (a chunk of one, a trickle): wait for the next
                self._first = data
                return b""
            wrapped = len(data) >= 2 and (data[0] & 0x0F) == 8 and ((data[0] << 8) | data[1]) % 31 == 0
            self._inner = zlib.decompressobj(zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS)
        out: bytes = self._inner.decompress(data, max_length)
        return out


def _shut(transport: asyncio.Transport) -> None:
    """Close ``transport``: a FIN (the server sees its caller gone), or a reset when part of the request is
    still unwritten. asyncio's close() first writes what is buffered: to a server that no longer reads (a
    hung one, or one that answered early), never, and the socket and up to a whole body would be held."""
    if transport.get_write_buffer_size():
        transport.abort()
    else:
        transport.close()


def _text(value: bytes) -> str:
    try:
        return value.decode()
    except UnicodeDecodeError:
        return value.decode("latin-1")


def _too_large(where: str, limit: int) -> str:
    return f"the answer from {where} is over {limit} bytes, the most the gateway takes for one answer"
