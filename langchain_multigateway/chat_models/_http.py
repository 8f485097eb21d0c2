"""The httpx transport of the providers that speak HTTP directly (Ollama, Anthropic).

One place that turns transport failures and HTTP statuses into the gateway's error
hierarchy, keeps one lazily created sync client and one async client per event loop,
applies each request's time limits, and splits NDJSON and server-sent-event streams.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import httpx
from pydantic import Field, PrivateAttr

from langchain_multigateway.chat_models._base import GatewayChatModel
from langchain_multigateway.chat_models._error_body import error_message_of
from langchain_multigateway.chat_models._exchange import Exchange
from langchain_multigateway.chat_models._limits import CallClock
from langchain_multigateway.chat_models._loops import CLIENTS_LOCK, LoopBound
from langchain_multigateway.chat_models._redirects import guard_redirects
from langchain_multigateway.errors import (
    GatewayConnectionError,
    GatewayError,
    GatewayTimeoutError,
    InvalidRequestError,
    ProviderError,
    error_from_status,
)

__all__ = [
    "HttpChatModel",
    "SSEEvent",
    "aiter_sse",
    "iter_sse",
    "request_id_of",
    "set_body_read_timeout",
    "translate_httpx_error",
]

_REQUEST_ID_HEADERS = ("request-id", "x-request-id", "anthropic-request-id")


def translate_httpx_error(exc: BaseException, *, provider: str, model: str | None) -> GatewayError:
    """Map an httpx (or JSON decoding) failure onto the gateway hierarchy."""
    if isinstance(exc, GatewayError):
        return exc
    if isinstance(exc, httpx.TimeoutException):
        return GatewayTimeoutError(f"request timed out: {type(exc).__name__}: {exc}", provider=provider, model=model)
    if isinstance(exc, (httpx.NetworkError, httpx.RemoteProtocolError, httpx.ProxyError)):
        return GatewayConnectionError(
            f"could not reach the server: {type(exc).__name__}: {exc}", provider=provider, model=model
        )
    if isinstance(exc, (httpx.UnsupportedProtocol, httpx.LocalProtocolError, httpx.InvalidURL)):
        return InvalidRequestError(f"bad request URL or protocol: {exc}", provider=provider, model=model)
    if isinstance(exc, (json.JSONDecodeError, UnicodeDecodeError, ValueError, KeyError, TypeError)):
        return ProviderError(f"malformed response from the server: {exc}", provider=provider, model=model)
    return ProviderError(f"{type(exc).__name__}: {exc}", provider=provider, model=model, retryable=False)


def request_id_of(headers: Mapping[str, str], body: Any = None) -> str | None:
    """The provider's request id, from the headers or the error body."""
    for name in _REQUEST_ID_HEADERS:
        value = headers.get(name)
        if value:
            return value
    if isinstance(body, Mapping) and isinstance(body.get("request_id"), str):
        return str(body["request_id"])
    return None


@dataclass(frozen=True)
class SSEEvent:
    """One server-sent event: its ``event:`` name (may be empty) and joined ``data:`` lines."""

    event: str
    data: str


class _SSEParser:
    def __init__(self) -> None:
        self.event = ""
        self.data: list[str] = []

    def feed(self, line: str) -> SSEEvent | None:
        if not line:
            return self.flush()
        if line.startswith(":"):
            return None  # comment / keep-alive
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            self.event = value
        elif field == "data":
            self.data.append(value)
        return None

    def flush(self) -> SSEEvent | None:
        event = SSEEvent(self.event, "\n".join(self.data)) if self.data or self.event else None
        self.event, self.data = "", []
        return event


def iter_sse(lines: Iterator[str]) -> Iterator[SSEEvent]:
    """Server-sent events from an iterator of lines (without line endings)."""
    parser = _SSEParser()
    for line in lines:
        event = parser.feed(line)
        if event is not None:
            yield event
    last = parser.flush()
    if last is not None:
        yield last


async def aiter_sse(lines: AsyncIterator[str]) -> AsyncIterator[SSEEvent]:
    """Async twin of :func:`iter_sse`."""
    parser = _SSEParser()
    async for line in lines:
        event = parser.feed(line)
        if event is not None:
            yield event
    last = parser.flush()
    if last is not None:
        yield last


def decode_json(text: str | bytes, *, provider: str, model: str | None) -> Any:
    """Parse a JSON body or line; a malformed one is a ProviderError."""
    try:
        return json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        shown = text if isinstance(text, str) else text.decode("utf-8", "replace")
        msg = f"malformed JSON from the server: {exc}: {shown[:200]!r}"
        raise ProviderError(msg, provider=provider, model=model) from exc


class _SelfClosingClient(httpx.Client):
    """The sync client made when the user gave none: closed when collected, as the SDKs' own
    clients are, so its pooled sockets are not left to the collector ("unclosed socket").
    (Copies of a model share its client: the client, not the model, decides when it is done.)"""

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # at collection or exit: nobody to tell
            self.close()


class HttpChatModel(GatewayChatModel):
    """A GatewayChatModel that talks HTTP through httpx (base of Ollama and Anthropic)."""

    clients_built_from: ClassVar[frozenset[str]] = frozenset({"base_url", "timeout", "connect_timeout"})

    default_headers: dict[str, str] | None = None
    """Headers added to every request."""

    http_client: httpx.Client | None = Field(default=None, exclude=True)
    """An httpx.Client to send requests with (proxies, custom TLS, or a MockTransport in tests).

    Used as given: its redirect policy and hooks are yours. The client made when none is given
    follows redirects (as the providers' own SDKs do) and sends credential headers only to the
    base URL's own scheme, host and port (see ``_redirects``); a 301/302/303 answering the chat
    POST (which httpx would resend as a bodiless GET) is not followed but a ``ProviderError``
    saying where the server moved. A client of yours that follows redirects sends every header
    but ``Authorization`` on to whatever host a redirect names."""

    http_async_client: httpx.AsyncClient | None = Field(default=None, exclude=True)
    """An httpx.AsyncClient for the async methods (used as given, like ``http_client``)."""

    _client: httpx.Client | None = PrivateAttr(default=None)
    _async_clients: LoopBound[httpx.AsyncClient] | None = PrivateAttr(default=None)

    # ------------------------------------------------------------------ hooks
    def _api_base(self) -> str:
        raise NotImplementedError

    def _auth_headers(self) -> dict[str, str]:
        return {}

    def _error_message(self, body: Any) -> str | None:
        """The human message in an error body (the common shapes); a provider with its own refines this."""
        return error_message_of(body)

    # ------------------------------------------------------------------ clients
    @property
    def client(self) -> httpx.Client:
        """The sync httpx client: ``http_client`` if given, else one created on first use."""
        if self.http_client is not None:
            return self.http_client
        if self._client is None:
            with CLIENTS_LOCK:
                if self._client is None:
                    client = _SelfClosingClient(timeout=self._default_timeout(), follow_redirects=True)
                    guard_redirects(client, self._api_base(), asynchronous=False)
                    self._client = client
        return self._client

    @property
    def async_client(self) -> httpx.AsyncClient:
        """The async httpx client: ``http_async_client`` if given, else the running event loop's own
        (made on first use there and closed when that loop shuts down)."""
        if self.http_async_client is not None:
            return self.http_async_client
        if self._async_clients is None:
            with CLIENTS_LOCK:
                if self._async_clients is None:
                    self._async_clients = LoopBound(self._make_async_client, _aclose)
        return self._async_clients.get()

    def _make_async_client(self) -> httpx.AsyncClient:
        client = httpx.AsyncClient(timeout=self._default_timeout(), follow_redirects=True)
        guard_redirects(client, self._api_base(), asynchronous=True)
        return client

    def _default_timeout(self) -> httpx.Timeout:
        # Requests carry their own limits; this bounds anything sent without them (probes).
        return httpx.Timeout(self.timeout, connect=self.connect_timeout)

    def _url(self, path: str) -> str:
        return self._api_base().rstrip("/") + path

    def _headers(self) -> dict[str, str]:
        headers = {"content-type": "application/json", "accept": "application/json"}
        headers.update(self.default_headers or {})
        headers.update(self._auth_headers())
        return headers

    # ------------------------------------------------------------------ errors
    def _translate(self, exc: BaseException, model: str | None = None) -> GatewayError:
        return translate_httpx_error(exc, provider=self.provider_name, model=model or self.model)

    def _endpoint(self) -> str | None:
        return self._api_base()

    def _status_error(self, response: httpx.Response, body_bytes: bytes, model: str | None) -> GatewayError:
        try:
            body: Any = json.loads(body_bytes) if body_bytes else None
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = body_bytes.decode("utf-8", "replace")
        message = self._error_message(body) or (body if isinstance(body, str) and body else None)
        error = error_from_status(
            response.status_code,
            message or f"HTTP {response.status_code} {response.reason_phrase}",
            provider=self.provider_name,
            model=model or self.model,
            request_id=request_id_of(response.headers, body),
            headers=dict(response.headers),
            body=body,
        )
        return self._locate(error)

    # ------------------------------------------------------------------ probes
    def _request_json(self, method: str, path: str) -> Any:
        """One plain request (health probes); failures raise mapped errors."""
        try:
            response = self.client.request(method, self._url(path), headers=self._headers())
        except Exception as exc:
            raise self._locate(self._translate(exc)) from exc
        if response.status_code >= 400:
            raise self._status_error(response, response.content, None)
        return decode_json(response.content, provider=self.provider_name, model=self.model)

    async def _arequest_json(self, method: str, path: str) -> Any:
        try:
            response = await self.async_client.request(method, self._url(path), headers=self._headers())
        except Exception as exc:
            raise self._locate(self._translate(exc)) from exc
        if response.status_code >= 400:
            raise self._status_error(response, response.content, None)
        return decode_json(response.content, provider=self.provider_name, model=self.model)

    # ------------------------------------------------------------------ transport
    # Subclasses name their endpoint and stream framing, and supply the request
    # builder, the response parser and a stream assembler; the calls are the base's.
    chat_path: ClassVar[str] = ""
    """Path of the chat endpoint under the API base."""

    stream_framing: ClassVar[Literal["sse", "ndjson"]] = "sse"
    """How the streamed body is framed: server-sent events or one JSON object per line."""

    def _post_args(self, exchange: Exchange) -> dict[str, Any]:
        timeouts, exchange.waiting_for = exchange.clock.http_timeouts()
        return {
            "url": self._url(self.chat_path),
            "json": exchange.payload,
            "headers": self._headers(),
            "timeout": httpx.Timeout(**timeouts),
        }

    def _answer(self, response: httpx.Response, exchange: Exchange) -> Any:
        exchange.request_id = request_id_of(response.headers)
        exchange.note_headers(response.headers)
        if response.status_code >= 400:
            raise self._status_error(response, response.content, exchange.model)
        exchange.answered = True
        return json.loads(response.content)

    def _send(self, exchange: Exchange) -> Any:
        return self._answer(self.client.post(**self._post_args(exchange)), exchange)

    async def _asend(self, exchange: Exchange) -> Any:
        return self._answer(await self.async_client.post(**self._post_args(exchange)), exchange)

    @contextmanager
    def _send_stream(self, exchange: Exchange) -> Iterator[Iterator[Any]]:
        with self.client.stream("POST", **self._post_args(exchange)) as response:
            exchange.note_headers(response.headers)
            if response.status_code >= 400:
                raise self._status_error(response, response.read(), exchange.model)
            exchange.request_id = request_id_of(response.headers)
            exchange.waiting_for = set_body_read_timeout(response.request, exchange.clock)
            lines = response.iter_lines()
            yield iter_sse(lines) if self.stream_framing == "sse" else lines

    @asynccontextmanager
    async def _asend_stream(self, exchange: Exchange) -> AsyncIterator[AsyncIterator[Any]]:
        async with self.async_client.stream("POST", **self._post_args(exchange)) as response:
            exchange.note_headers(response.headers)
            if response.status_code >= 400:
                raise self._status_error(response, await response.aread(), exchange.model)
            exchange.request_id = request_id_of(response.headers)
            set_body_read_timeout(response.request, None)  # the template times each read itself
            lines = response.aiter_lines()
            yield aiter_sse(lines) if self.stream_framing == "sse" else lines


def set_body_read_timeout(request: Any, clock: CallClock | None) -> str:
    """Set the per-read limit of a streamed body before it starts (httpx and httpx2 read it then).

    ``clock=None`` lifts it (an async caller times each read itself). Returns the limit's name.
    """
    seconds, name = clock.body_read_timeout() if clock is not None else (None, "")
    timeouts = request.extensions.get("timeout")
    if isinstance(timeouts, dict):
        timeouts["read"] = seconds
    return name


async def _aclose(client: httpx.AsyncClient) -> None:
    await client.aclose()
