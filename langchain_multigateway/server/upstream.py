"""The lean path's HTTP client: a POST to one deployment's URL, its whole answer back.

Plain ``http://`` and ``https://`` URLs with no proxy (every deployment, in practice) are sent
by the gateway's own HTTP/1.1 client (``_http1.py``: asyncio and httptools, a keep-alive pool
per deployment and event loop): 0.09-0.10 ms of CPU per exchange against 0.21 ms for a bare
aiohttp session (``benchmarks/upstream_client.py``); that module says why, and what its pool
guarantees. The rest goes through an aiohttp session, kept for it: a proxy from the
environment, a URL the lean client does not take, and a redirect (see ``post``).
(Why not the openai SDK's httpx2 at all: on loopback, a bare ASGI proxy on uvicorn adds 0.64 ms
p50 with aiohttp as its upstream client, 1.39 ms with httpcore and 1.63 ms with httpx2.)

A redirect that would resend the POST as a bodiless GET (301, 302, 303) is refused with the
providers' own error for it, as their clients refuse it; 307 and 308 are followed.

The transport decides nothing about what a failure means. Its exceptions are raised
as the httpx2 exceptions of the same meaning (connect timeout, read timeout, connect
error, read error), so the provider's own rules (``_failure``) type them exactly as on
the SDK path: one place says what a reset or a slow server is.

Time limits are the call's clock's: connecting (and waiting for a pooled connection)
within ``connect``, the answer's first byte within ``read``. Headers or a body that
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
from urllib.parse import urljoin

from langchain_multigateway._redact import redact
from langchain_multigateway.chat_models._loops import LoopBound
from langchain_multigateway.chat_models._redirects import RedirectDropsTheRequest, credential_headers, drops_the_request
from langchain_multigateway.server._http1 import Answer, Pool, Target, joined_headers

if TYPE_CHECKING:
    import aiohttp

__all__ = ["MAX_ANSWER_BYTES", "Answer", "Upstream"]

MAX_ANSWER_BYTES = 64 * 1024 * 1024
"""The largest answer body taken from an upstream (after decompression); a larger one fails the try.
A chat completion is kilobytes; the cap is there so one broken or hostile upstream cannot exhaust the
memory of a process every caller shares."""
_READ_PIECE = 64 * 1024
_POOL_SIZE = 1000  # connections per deployment, as the openai SDK's pool
# Shorter than the idle timeouts servers use (uvicorn's, so vLLM's and most Python servers', is 5 s; nginx's
# 75 s): an idle connection is ours to close first. At equal timeouts a call sent as the server closes fails.
_KEEPALIVE_SECONDS = 4.0
_MAX_REDIRECTS = 10  # as aiohttp's default, the first hop included
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


class Upstream:
    """POSTs to one deployment's URL: a connection pool per event loop (and an aiohttp session for
    what the pool does not take), closed when that loop ends."""

    def __init__(self, url: str) -> None:
        self.url = url
        # HTTP(S)_PROXY / NO_PROXY are read once, here, as the server's environment is fixed at start:
        # aiohttp's trust_env reads them on every request, which measured 0.55 ms of CPU per call.
        self._proxy = _env_proxy(url)
        self._target = Target.of(url) if self._proxy is None else None  # None: every call through aiohttp
        self._pools: LoopBound[Pool] = LoopBound(self._new_pool, Pool.close)
        self._sessions: LoopBound[aiohttp.ClientSession] = LoopBound(lambda: _new_session(url), _close_session)

    def _new_pool(self) -> Pool:
        assert self._target is not None
        return Pool(self._target, _where(self.url), _POOL_SIZE, _KEEPALIVE_SECONDS)

    def warm_up(self) -> None:
        """Open this loop's pool (or aiohttp session) now, not on the first call (a call in an event loop)."""
        _ = self._pools.get() if self._target is not None else self._sessions.get()

    def checked_out(self) -> int:
        """How many of the pool's connections calls in the running loop hold now (0: all given back)."""
        return len(self._pools.get().lent) if self._target is not None else 0

    async def post(
        self,
        body: bytes,
        headers: Mapping[str, str],
        params: Mapping[str, str] | None,
        timeouts: Mapping[str, float | None],
    ) -> Answer:
        """Send ``body``; the whole answer, or an httpx2 exception saying which phase failed."""
        target = self._target
        if target is None:  # a proxy applies, or a URL the lean client does not take
            return await self._through_aiohttp("POST", self.url, body, headers, params, timeouts, _MAX_REDIRECTS)
        head = target.head(headers, params)
        pool = self._pools.get()
        answer = await pool.post(head, body, timeouts.get("connect"), timeouts.get("read"), MAX_ANSWER_BYTES)
        # Only the statuses aiohttp and the SDK's httpx2 follow: a 300, 304 or 305 is the call's answer.
        location = answer.headers.get("location") if answer.status in _REDIRECTS else None
        if location is None:
            return answer
        nxt = urljoin(self.url, location)
        if drops_the_request("POST", answer.status):  # refused, as the providers' own clients refuse it
            raise _drops_the_request(answer.status, self.url, nxt)
        # A redirect that keeps the POST and its body: its next hop, and any after it, go through aiohttp, which
        # follows redirects (relative Locations, a scheme change, the hop count) and, with this session's
        # middleware, keeps credential headers home. The lean client stays a one-request client.
        return await self._through_aiohttp("POST", nxt, body, headers, None, timeouts, _MAX_REDIRECTS - 1)

    async def _through_aiohttp(
        self,
        method: str,
        url: str,
        body: bytes | None,
        headers: Mapping[str, str],
        params: Mapping[str, str] | None,
        timeouts: Mapping[str, float | None],
        redirects: int,
    ) -> Answer:
        import aiohttp
        import httpx2

        where = _where(self.url)
        read = timeouts.get("read")
        limits = aiohttp.ClientTimeout(total=None, connect=timeouts.get("connect"), sock_read=read)
        session = self._sessions.get()
        try:
            # The headers within connect + read of sending, then the body within read of the headers:
            # a server trickling either, each read in time, is cut all the same.
            async with asyncio.timeout(None if read is None else read + (timeouts.get("connect") or 0.0)) as phase:
                async with session.request(
                    method,
                    url,
                    data=body,
                    headers=headers,
                    params=params,
                    timeout=limits,
                    proxy=self._proxy,
                    max_redirects=redirects,
                ) as response:
                    if read is not None and not phase.expired():  # expired as the headers came: cut
                        phase.reschedule(asyncio.get_running_loop().time() + read)
                    content = await _read_within(response, MAX_ANSWER_BYTES, where)
                    return Answer(response.status, _lower(response.headers), content)
        except aiohttp.ConnectionTimeoutError as exc:
            raise httpx2.ConnectTimeout(f"no connection to {where} in time: {exc}") from exc
        except (aiohttp.ServerTimeoutError, TimeoutError) as exc:
            raise httpx2.ReadTimeout(f"{where} did not answer in time") from exc
        except aiohttp.ClientConnectorError as exc:
            raise httpx2.ConnectError(redact(f"could not connect to {where}: {exc.os_error}")) from exc
        except aiohttp.TooManyRedirects as exc:
            raise httpx2.TooManyRedirects(f"{where} redirected too many times") from exc
        except (aiohttp.InvalidURL, aiohttp.NonHttpUrlClientError) as exc:  # (ftp://, or a redirect to it)
            raise httpx2.UnsupportedProtocol(f"not a URL this gateway can call: {where}") from exc
        except (aiohttp.ClientError, OSError) as exc:  # reset, cut body, not HTTP: the exchange broke
            what = redact(f"{type(exc).__name__}: {exc}")  # an aiohttp message may quote the URL, query and all
            raise httpx2.ReadError(f"the connection to {where} failed: {what}") from exc


async def _read_within(response: aiohttp.ClientResponse, limit: int, where: str) -> bytes:
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
    msg = f"the answer from {where} is over {limit} bytes, the most the gateway takes for one answer"
    raise httpx2.ReadError(msg)


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    # As httpx's Headers read: lower-case names, repeated headers joined by ", " (as the lean client's).
    return joined_headers(headers.items())


def _drops_the_request(status: int, url: str, location: str) -> Exception:
    """The error the providers' own clients raise for a redirect that would drop the POST's body (typed there)."""
    return RedirectDropsTheRequest(status, redact(url), redact(location))  # a URL's query may hold a key


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
            for name in credential_headers(request.headers.items()):  # the providers' clients' rule
                del request.headers[name]
        response = await handler(request)
        location = response.headers.get("location")
        if location is not None and drops_the_request(request.method, response.status):
            response.release()  # aiohttp would follow it as a bodiless GET: refused, as on the first hop
            raise _drops_the_request(response.status, str(request.url), urljoin(str(request.url), location))
        return response

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
