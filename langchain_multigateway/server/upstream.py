"""The lean path's HTTP client: one aiohttp session per deployment and event loop.

Why aiohttp and not the openai SDK's httpx2: on loopback, a bare ASGI proxy on uvicorn
adds 0.64 ms (p50, sequential) with aiohttp as its upstream client, 1.39 ms with
httpcore and 1.63 ms with httpx2; aiohttp parses HTTP in C and keeps no per-request
model objects. The server's whole overhead budget is 1 ms, so the client is most of it.

The transport decides nothing about what a failure means. Its exceptions are raised
as the httpx2 exceptions of the same meaning (connect timeout, read timeout, connect
error, read error), so the provider's own rules (``_failure``) type them exactly as on
the SDK path: one place says what a reset or a slow server is.

Time limits are the call's clock's: connecting (and waiting for a pooled connection)
within ``connect``, each read of the answer within ``read``. Headers or a body that
keep trickling in, each read in time, are cut when the headers have not finished
``connect + read`` seconds after sending, or the body ``read`` seconds after the
headers: without that bound an upstream sending a byte a minute would hold the call,
and its router slot, forever.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from langchain_multigateway._redact import is_secret_header, redact
from langchain_multigateway.chat_models._loops import LoopBound

if TYPE_CHECKING:
    import aiohttp

__all__ = ["MAX_ANSWER_BYTES", "Answer", "Upstream"]

MAX_ANSWER_BYTES = 64 * 1024 * 1024
"""The largest answer body taken from an upstream (after decompression); a larger one fails the try.
A chat completion is kilobytes; the cap is there so one broken or hostile upstream cannot exhaust the
memory of a process every caller shares."""
_READ_PIECE = 64 * 1024
_POOL_SIZE = 1000  # connections per deployment, as the openai SDK's pool
_KEEPALIVE_SECONDS = 5.0  # shorter than servers' usual idle timeouts: an idle connection is ours to close first


class Answer:
    """An upstream's complete answer: status, headers (lower-case names), body."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body


class Upstream:
    """POSTs to one deployment's URL; a session per event loop, closed when that loop ends."""

    def __init__(self, url: str) -> None:
        self.url = url
        # HTTP(S)_PROXY / NO_PROXY are read once, here, as the server's environment is fixed at start:
        # aiohttp's trust_env reads them on every request, which measured 0.55 ms of CPU per call.
        self._proxy = _env_proxy(url)
        self._sessions: LoopBound[aiohttp.ClientSession] = LoopBound(lambda: _new_session(url), _close_session)

    def warm_up(self) -> None:
        """Import aiohttp and open this loop's session now, not on the first call (a call in an event loop)."""
        _ = self._sessions.get()

    async def post(
        self,
        body: bytes,
        headers: Mapping[str, str],
        params: Mapping[str, str] | None,
        timeouts: Mapping[str, float | None],
    ) -> Answer:
        """Send ``body``; the whole answer, or an httpx2 exception saying which phase failed."""
        import aiohttp
        import httpx2

        url = self.url
        read = timeouts.get("read")
        limits = aiohttp.ClientTimeout(total=None, connect=timeouts.get("connect"), sock_read=read)
        session = self._sessions.get()
        try:
            # The headers within connect + read of sending, then the body within read of the headers:
            # a server trickling either, each read in time, is cut all the same.
            async with asyncio.timeout(None if read is None else read + (timeouts.get("connect") or 0.0)) as phase:
                async with session.post(
                    url, data=body, headers=headers, params=params, timeout=limits, proxy=self._proxy
                ) as response:
                    if read is not None and not phase.expired():  # expired as the headers came: cut
                        phase.reschedule(asyncio.get_running_loop().time() + read)
                    content = await _read_within(response, MAX_ANSWER_BYTES, url)
                    return Answer(response.status, _lower(response.headers), content)
        except aiohttp.ConnectionTimeoutError as exc:
            raise httpx2.ConnectTimeout(f"no connection to {_where(url)} in time: {exc}") from exc
        except (aiohttp.ServerTimeoutError, TimeoutError) as exc:
            raise httpx2.ReadTimeout(f"{_where(url)} did not answer in time") from exc
        except aiohttp.ClientConnectorError as exc:
            raise httpx2.ConnectError(redact(f"could not connect to {_where(url)}: {exc.os_error}")) from exc
        except aiohttp.TooManyRedirects as exc:
            raise httpx2.TooManyRedirects(f"{_where(url)} redirected too many times") from exc
        except aiohttp.InvalidURL as exc:
            raise httpx2.UnsupportedProtocol(f"not a URL this gateway can call: {_where(url)}") from exc
        except (aiohttp.ClientError, OSError) as exc:  # reset, cut body, not HTTP: the exchange broke
            what = redact(f"{type(exc).__name__}: {exc}")  # an aiohttp message may quote the URL, query and all
            raise httpx2.ReadError(f"the connection to {_where(url)} failed: {what}") from exc


async def _read_within(response: aiohttp.ClientResponse, limit: int, url: str) -> bytes:
    """The answer's body (decompressed), or a ReadError once it is over ``limit`` bytes: a huge or
    gzip-bombed answer is cut while it arrives, not held whole in the memory every tenant shares."""
    import httpx2

    declared = response.content_length  # as sent (compressed, if it is)
    size = 0
    pieces: list[bytes] = []
    if declared is None or declared <= limit:
        async for piece in response.content.iter_chunked(_READ_PIECE):
            size += len(piece)
            if size > limit:
                break
            pieces.append(piece)
        else:
            return b"".join(pieces)
    msg = f"the answer from {_where(url)} is over {limit} bytes, the most the gateway takes for one answer"
    raise httpx2.ReadError(msg)


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    # As httpx's Headers read: lower-case names, repeated headers joined by ", ".
    out: dict[str, str] = {}
    for name, value in headers.items():
        key = name.lower()
        out[key] = f"{out[key]}, {value}" if key in out else value
    return out


def _where(url: str) -> str:
    """The server of ``url`` (scheme, host, port): never its query, which may hold a key."""
    if "://" not in url:
        return "the upstream"
    scheme, rest = url.split("://", 1)
    host = rest.split("/", 1)[0].split("?", 1)[0].rsplit("@", 1)[-1]  # no user:password@
    return f"{scheme}://{host}"


def _env_proxy(url: str) -> str | None:
    """The proxy HTTP(S)_PROXY names for ``url``, unless NO_PROXY exempts its host (as the SDK's client reads them)."""
    from urllib.parse import urlsplit
    from urllib.request import getproxies_environment, proxy_bypass

    parts = urlsplit(url)
    proxies = getproxies_environment()
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if not proxy or proxy_bypass(parts.hostname or ""):
        return None
    return proxy


def _new_session(url: str) -> aiohttp.ClientSession:
    import aiohttp

    # No cookie jar: one tenant's upstream cookies must never ride along on another's call.
    # The TLS context is the default one, so SSL_CERT_FILE / SSL_CERT_DIR apply as they do to the SDK.
    connector = _pool_class()(limit=_POOL_SIZE, limit_per_host=0, keepalive_timeout=_KEEPALIVE_SECONDS)
    return aiohttp.ClientSession(
        connector=connector, cookie_jar=aiohttp.DummyCookieJar(), middlewares=(_credentials_stay_home(url),)
    )


def _credentials_stay_home(url: str) -> aiohttp.ClientMiddlewareType:
    """A request hook that sends credential headers only to ``url``'s own scheme, host and port.

    On a redirect to another host aiohttp drops ``Authorization`` and ``Cookie``, but not a credential
    in a header of the deployment's own (``api-key``, ``X-Portkey-Api-Key``): this drops those too.
    """
    from yarl import URL  # aiohttp's URL type

    try:
        home: URL | None = URL(url).origin()
    except ValueError:  # not an absolute URL: every request to it fails anyway
        home = None

    async def credentials_stay_home(
        request: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
    ) -> aiohttp.ClientResponse:
        if home is None or request.url.origin() != home:
            for name in [name for name in request.headers if is_secret_header(name)]:
                del request.headers[name]
        return await handler(request)

    return credentials_stay_home


@functools.cache
def _pool_class() -> type[aiohttp.TCPConnector]:
    import aiohttp
    from aiohttp.connector import Connection

    class _Pool(aiohttp.TCPConnector):
        """Never hands out a kept-alive connection that received bytes while idle in the pool.

        Such bytes are an answer nobody asked for (a "408" an upstream sends before closing an idle
        connection, or a broken one's extra answer): aiohttp would read it as the next request's answer,
        and, the connection kept open, every later call would get the answer to the call before it.
        """

        async def _get(self, key: Any, traces: Any) -> Connection | None:
            while (connection := await super()._get(key, traces)) is not None:
                protocol = connection.protocol
                if protocol is not None and not protocol.should_close:  # nothing buffered, no error, no EOF
                    return connection
                connection.close()
            return None

    return _Pool


async def _close_session(session: aiohttp.ClientSession) -> Any:
    await session.close()
