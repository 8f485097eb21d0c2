"""Shared httpx plumbing for the providers that speak HTTP directly (Ollama, Anthropic).

One place that turns transport failures, HTTP statuses and malformed bodies
into the gateway's error hierarchy, keeps one lazily created sync and one async
``httpx`` client per model, and splits NDJSON and server-sent-event streams.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Protocol

import httpx
from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from pydantic import Field, PrivateAttr

from langchain_multigateway.chat_models._base import GatewayChatModel
from langchain_multigateway.errors import (
    GatewayConnectionError,
    GatewayError,
    GatewayTimeoutError,
    InvalidRequestError,
    ProviderError,
    error_from_status,
)

__all__ = ["HttpChatModel", "SSEEvent", "StreamAssembler", "aiter_sse", "iter_sse", "translate_httpx_error"]

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


class HttpChatModel(GatewayChatModel):
    """A GatewayChatModel that talks HTTP through httpx (base of Ollama and Anthropic)."""

    default_headers: dict[str, str] | None = None
    """Headers added to every request."""

    http_client: httpx.Client | None = Field(default=None, exclude=True)
    """An httpx.Client to send requests with (proxies, custom TLS, or a MockTransport in tests)."""

    http_async_client: httpx.AsyncClient | None = Field(default=None, exclude=True)
    """An httpx.AsyncClient for the async methods."""

    _client: httpx.Client | None = PrivateAttr(default=None)
    _async_client: httpx.AsyncClient | None = PrivateAttr(default=None)

    # ------------------------------------------------------------------ hooks
    def _api_base(self) -> str:
        raise NotImplementedError

    def _auth_headers(self) -> dict[str, str]:
        return {}

    def _error_message(self, body: Any) -> str | None:
        """The human message in an error body; providers refine this."""
        if isinstance(body, Mapping):
            inner = body.get("error", body)
            if isinstance(inner, Mapping) and isinstance(inner.get("message"), str):
                return str(inner["message"])
            if isinstance(inner, str):
                return inner
            if isinstance(body.get("message"), str):
                return str(body["message"])
        return None

    # ------------------------------------------------------------------ clients
    @property
    def client(self) -> httpx.Client:
        """The sync httpx client: ``http_client`` if given, else one created on first use."""
        if self.http_client is not None:
            return self.http_client
        if self._client is None:
            self._client = httpx.Client(timeout=self.timeout)
        return self._client

    @property
    def async_client(self) -> httpx.AsyncClient:
        """The async httpx client: ``http_async_client`` if given, else one created on first use."""
        if self.http_async_client is not None:
            return self.http_async_client
        if self._async_client is None:
            self._async_client = httpx.AsyncClient(timeout=self.timeout)
        return self._async_client

    def _url(self, path: str) -> str:
        return self._api_base().rstrip("/") + path

    def _headers(self) -> dict[str, str]:
        headers = {"content-type": "application/json", "accept": "application/json"}
        headers.update(self.default_headers or {})
        headers.update(self._auth_headers())
        return headers

    # ------------------------------------------------------------------ errors
    def _translate(self, exc: BaseException, model: str | None = None) -> GatewayError:
        return self._locate(translate_httpx_error(exc, provider=self.provider_name, model=model or self.model))

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

    # ------------------------------------------------------------------ requests
    def _request_json(self, method: str, path: str, payload: Any = None, *, model: str | None = None) -> Any:
        """Send one request and return its decoded JSON body; failures raise mapped errors."""
        try:
            response = self.client.request(
                method, self._url(path), json=payload, headers=self._headers(), timeout=self.timeout
            )
        except Exception as exc:
            raise self._translate(exc, model) from exc
        if response.status_code >= 400:
            raise self._status_error(response, response.content, model)
        return decode_json(response.content, provider=self.provider_name, model=model or self.model)

    async def _arequest_json(self, method: str, path: str, payload: Any = None, *, model: str | None = None) -> Any:
        try:
            response = await self.async_client.request(
                method, self._url(path), json=payload, headers=self._headers(), timeout=self.timeout
            )
        except Exception as exc:
            raise self._translate(exc, model) from exc
        if response.status_code >= 400:
            raise self._status_error(response, response.content, model)
        return decode_json(response.content, provider=self.provider_name, model=model or self.model)

    def _stream_lines(self, path: str, payload: Any, *, model: str | None = None) -> Iterator[str]:
        """POST ``payload`` and yield the response's lines as they arrive."""
        try:
            with self.client.stream(
                "POST", self._url(path), json=payload, headers=self._headers(), timeout=self.timeout
            ) as response:
                if response.status_code >= 400:
                    raise self._status_error(response, response.read(), model)
                yield from response.iter_lines()
        except GatewayError:
            raise
        except Exception as exc:
            raise self._translate(exc, model) from exc

    async def _astream_lines(self, path: str, payload: Any, *, model: str | None = None) -> AsyncIterator[str]:
        try:
            async with self.async_client.stream(
                "POST", self._url(path), json=payload, headers=self._headers(), timeout=self.timeout
            ) as response:
                if response.status_code >= 400:
                    raise self._status_error(response, await response.aread(), model)
                async for line in response.aiter_lines():
                    yield line
        except GatewayError:
            raise
        except Exception as exc:
            raise self._translate(exc, model) from exc

    # ------------------------------------------------------------------ chat calls
    # Subclasses name their endpoint and stream framing, and supply the request
    # builder, the response parser and a stream assembler; the calls are shared.
    chat_path: ClassVar[str] = ""
    """Path of the chat endpoint under the API base."""

    stream_framing: ClassVar[Literal["sse", "ndjson"]] = "sse"
    """How the streamed body is framed: server-sent events or one JSON object per line."""

    def _request(self, messages: list[BaseMessage], stop: list[str] | None, *, stream: bool, **kwargs: Any) -> Any:
        raise NotImplementedError

    def _result(self, data: Any, model: str) -> ChatResult:
        raise NotImplementedError

    def _assembler(self, model: str) -> StreamAssembler:
        raise NotImplementedError

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        payload = self._request(messages, stop, stream=False, **kwargs)
        model = payload["model"]
        data = self._with_retry(lambda: self._request_json("POST", self.chat_path, payload, model=model))
        return self._result(data, model)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        payload = self._request(messages, stop, stream=False, **kwargs)
        model = payload["model"]

        async def call() -> Any:
            return await self._arequest_json("POST", self.chat_path, payload, model=model)

        return self._result(await self._awith_retry(call), model)

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        payload = self._request(messages, stop, stream=True, **kwargs)
        model = payload["model"]

        def open_stream() -> Iterator[ChatGenerationChunk]:
            assembler = self._assembler(model)
            lines = self._stream_lines(self.chat_path, payload, model=model)
            events: Iterator[Any] = iter_sse(lines) if self.stream_framing == "sse" else lines
            for event in events:
                for chunk in assembler.feed(event):
                    if run_manager and chunk.text:
                        run_manager.on_llm_new_token(chunk.text, chunk=chunk)
                    yield chunk
            yield assembler.finish()

        yield from self._stream_with_retry(open_stream)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        payload = self._request(messages, stop, stream=True, **kwargs)
        model = payload["model"]

        async def open_stream() -> AsyncIterator[ChatGenerationChunk]:
            assembler = self._assembler(model)
            lines = self._astream_lines(self.chat_path, payload, model=model)
            events: AsyncIterator[Any] = aiter_sse(lines) if self.stream_framing == "sse" else lines
            async for event in events:
                for chunk in assembler.feed(event):
                    if run_manager and chunk.text:
                        await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
                    yield chunk
            yield assembler.finish()

        async for chunk in self._astream_with_retry(open_stream):
            yield chunk


class StreamAssembler(Protocol):
    """Turns a provider's stream events into LangChain chunks."""

    def feed(self, event: Any) -> Iterator[ChatGenerationChunk]: ...

    def finish(self) -> ChatGenerationChunk: ...
