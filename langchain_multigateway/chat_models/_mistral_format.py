"""Wire format of MistralChatModel: messages, responses, the raw stream, and errors.

Conversion of LangChain messages to Mistral's chat format and of its responses (string
or text / thinking chunk content, tool calls, usage with cache hits), each request's time
limits for the SDK's HTTP clients, and translation of mistralai SDK exceptions onto the
gateway's error hierarchy. The SDK itself is imported only inside the functions that need it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from langchain_core.messages import BaseMessage
from langchain_core.messages.ai import UsageMetadata

from langchain_multigateway.chat_models._error_body import error_message_of
from langchain_multigateway.chat_models._openai_format import messages_to_openai, usage_from_openai
from langchain_multigateway.errors import (
    GatewayConnectionError,
    GatewayError,
    GatewayTimeoutError,
    InvalidRequestError,
    ProviderError,
    error_from_status,
)

if TYPE_CHECKING:
    from langchain_multigateway.chat_models._exchange import Exchange

__all__ = [
    "aapply_call_timeouts",
    "answered_ok",
    "apply_call_timeouts",
    "call_timeouts",
    "known_ids",
    "messages_to_mistral",
    "split_content",
    "translate_mistral_error",
    "usage_from_mistral",
]

_REQUEST_ID_HEADERS = ("x-request-id", "request-id", "mistral-correlation-id", "x-kong-request-id")


def answered_ok(exc: Exception) -> bool:
    """A 200 whose model list is not in Mistral's shape (an OpenAI-compatible server): it serves."""
    from mistralai.client import errors

    return isinstance(exc, errors.ResponseValidationError) and exc.status_code == 200


def messages_to_mistral(messages: Sequence[BaseMessage]) -> list[dict[str, Any]]:
    """OpenAI-format messages without what Mistral's schema lacks (``name`` on chat turns)."""
    out = messages_to_openai(messages, "mistral")  # data blocks in Mistral's chunk types
    for message in out:
        message.pop("name", None)
    return out


def split_content(content: Any) -> tuple[str, str]:
    """Mistral content (a string or a list of text / thinking chunks) as (text, reasoning)."""
    if content is None:
        return "", ""
    if isinstance(content, str):
        return content, ""
    text: list[str] = []
    reasoning: list[str] = []
    for chunk in content:
        if isinstance(chunk, str):
            text.append(chunk)
        elif chunk.get("type") == "text":
            text.append(str(chunk.get("text") or ""))
        elif chunk.get("type") == "thinking":
            inner_text, _ = split_content(chunk.get("thinking"))
            reasoning.append(inner_text)
    return "".join(text), "".join(reasoning)


def known_ids(calls: Sequence[Mapping[str, Any]] | None) -> list[dict[str, Any]]:
    """Tool calls with the SDK's placeholder id ``"null"`` turned into no id."""
    fixed = []
    for call in calls or []:
        call_dict = dict(call)
        if call_dict.get("id") in ("null", ""):
            call_dict["id"] = None
        fixed.append(call_dict)
    return fixed


def usage_from_mistral(usage: Mapping[str, Any] | None) -> UsageMetadata | None:
    """Mistral usage as LangChain's; prompt-cache hits (``num_cached_tokens``, or newer
    responses' ``prompt_tokens_details.cached_tokens``) become ``cache_read``."""
    result = usage_from_openai(usage)
    if result is None or usage is None:
        return result
    cached = usage.get("num_cached_tokens")
    details = usage.get("prompt_tokens_details")
    if cached is None and isinstance(details, Mapping):
        cached = details.get("cached_tokens")
    if cached is not None:
        result["input_token_details"] = {**result.get("input_token_details", {}), "cache_read": int(cached)}
    return result


# ---------------------------------------------------------------------- time limits
# The SDK takes one timeout per call; its httpx2 clients read each request's phase
# limits (connect, first byte, write, pool) from here instead, set around the SDK call.
_CALL_TIMEOUTS: ContextVar[dict[str, float | None] | None] = ContextVar("mistral_call_timeouts", default=None)


@contextmanager
def call_timeouts(exchange: Exchange) -> Iterator[None]:
    """Make the requests sent inside this block carry ``exchange``'s time limits."""
    timeouts, exchange.waiting_for = exchange.clock.http_timeouts()
    token = _CALL_TIMEOUTS.set(timeouts)
    try:
        yield
    finally:
        _CALL_TIMEOUTS.reset(token)


def apply_call_timeouts(request: Any) -> None:
    """httpx2 request hook: the current call's time limits onto the outgoing request."""
    timeouts = _CALL_TIMEOUTS.get()
    if timeouts is not None:
        request.extensions["timeout"] = dict(timeouts)


async def aapply_call_timeouts(request: Any) -> None:
    apply_call_timeouts(request)


# ---------------------------------------------------------------------- errors
def translate_mistral_error(exc: BaseException, *, provider: str = "mistral", model: str | None = None) -> GatewayError:
    """Map a mistralai SDK (or httpx2 transport) exception onto the gateway hierarchy.

    The caller chains the original (``raise translated from exc``).
    """
    import httpx2
    from mistralai.client import errors

    if isinstance(exc, GatewayError):
        return exc
    if isinstance(exc, httpx2.TimeoutException):
        return GatewayTimeoutError(f"request timed out: {exc!r}", provider=provider, model=model)
    if isinstance(exc, (httpx2.TransportError, errors.NoResponseError)):
        return GatewayConnectionError(f"could not reach the server: {exc!r}", provider=provider, model=model)
    if isinstance(exc, errors.ResponseValidationError):
        return ProviderError(
            f"malformed response from the server: {exc.message[:500]}",
            provider=provider,
            model=model,
            status_code=exc.status_code,
            request_id=_request_id(exc.headers),
            body=exc.body,
        )
    if isinstance(exc, errors.MistralError):
        headers = dict(exc.headers)
        body = _json_or_text(exc.body)
        return error_from_status(
            exc.status_code,
            _error_message(body) or exc.message,
            provider=provider,
            model=model,
            request_id=_request_id(exc.headers),
            headers=headers,
            body=body,
        )
    if isinstance(exc, (json.JSONDecodeError, ValueError)):
        return ProviderError(f"malformed response from the server: {exc}", provider=provider, model=model)
    if isinstance(exc, TypeError):
        # e.g. a model_kwargs / invoke keyword the SDK does not take
        return InvalidRequestError(f"the mistralai SDK refused the request: {exc}", provider=provider, model=model)
    return ProviderError(f"{type(exc).__name__}: {exc}", provider=provider, model=model, retryable=False)


def _request_id(headers: Mapping[str, str]) -> str | None:
    for name in _REQUEST_ID_HEADERS:
        value = headers.get(name)
        if value:
            return value
    return None


def _json_or_text(body: str | None) -> Any:
    if not body:
        return body
    try:
        return json.loads(body)
    except ValueError:
        return body


def _error_message(body: Any) -> str | None:
    """Mistral's own shapes first: a ``message`` that is a list or an object, FastAPI's
    ``{"detail": [...]}`` (its 422s), a text body trimmed and capped; then the common ones."""
    if isinstance(body, str):
        return body.strip()[:2000] or None
    inner = body.get("error", body) if isinstance(body, Mapping) else None
    if isinstance(inner, Mapping):
        value = inner.get("message") or inner.get("detail")
        if value:
            return value if isinstance(value, str) else json.dumps(value)
    return error_message_of(body)
