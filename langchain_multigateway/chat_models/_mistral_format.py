"""Wire format of MistralChatModel: messages, responses, the raw stream, and errors.

Conversion of LangChain messages to Mistral's chat format, of its responses (string or
text / thinking chunk content, tool calls) and server-sent stream events to LangChain
messages and chunks, and translation of mistralai SDK exceptions onto the gateway's
error hierarchy. The SDK itself is imported only inside the functions that need it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from langchain_core.messages import AIMessageChunk, BaseMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.messages.tool import tool_call_chunk
from langchain_core.outputs import ChatGenerationChunk

from langchain_multigateway.chat_models._base import GatewayChatModel
from langchain_multigateway.chat_models._openai_format import messages_to_openai, usage_from_openai
from langchain_multigateway.errors import (
    GatewayConnectionError,
    GatewayError,
    GatewayTimeoutError,
    InvalidRequestError,
    ProviderError,
    error_from_status,
)
from langchain_multigateway.tokens import count_message_tokens, count_text_tokens

__all__ = [
    "StreamAssembler",
    "answered_ok",
    "decode_event",
    "known_ids",
    "messages_to_mistral",
    "split_content",
    "translate_mistral_error",
]

_REQUEST_ID_HEADERS = ("x-request-id", "request-id", "mistral-correlation-id", "x-kong-request-id")


def answered_ok(exc: Exception) -> bool:
    """A 200 whose model list is not in Mistral's shape (an OpenAI-compatible server): it serves."""
    from mistralai.client import errors

    return isinstance(exc, errors.ResponseValidationError) and exc.status_code == 200


def messages_to_mistral(messages: Sequence[BaseMessage]) -> list[dict[str, Any]]:
    """OpenAI-format messages without what Mistral's schema lacks (``name`` on chat turns)."""
    out = messages_to_openai(messages)
    for message in out:
        message.pop("name", None)
    return out


def decode_event(raw: str) -> dict[str, Any]:
    """One server-sent event (the SDK's JSON envelope) to its ``data`` dict."""
    data = json.loads(raw).get("data")
    if not isinstance(data, dict):
        msg = f"stream event is not a JSON object: {str(data)[:200]!r}"
        raise ValueError(msg)
    return data


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


class StreamAssembler:
    """Turns Mistral (or OpenAI-style) stream events into LangChain chunks.

    Content and tool-call fragments go out as they arrive; one closing chunk
    carries the usage (when the server sent any), the model name and the
    finish reason, so that exactly one chunk holds each.
    """

    def __init__(self, owner: GatewayChatModel, prompt: Sequence[Mapping[str, Any]] | None = None) -> None:
        self.owner = owner
        self.prompt = prompt
        self.model_name: str | None = None
        self.finish_reason: str | None = None
        self.response_id: str | None = None
        self.usage: dict[str, Any] | None = None
        self.generated: list[str] = []  # text and tool arguments, for an estimate when no usage comes

    def feed(self, event: Mapping[str, Any]) -> Iterator[ChatGenerationChunk]:
        if event.get("error") or event.get("object") == "error":
            detail = event.get("error") or event.get("message") or event
            raise ProviderError(f"stream error: {detail}", provider=self.owner.provider_name, model=self.owner.model)
        self.model_name = event.get("model") or self.model_name
        self.response_id = event.get("id") or self.response_id
        if event.get("usage"):
            self.usage = dict(event["usage"])
        for choice in event.get("choices") or []:
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
            delta = choice.get("delta") or {}
            text, reasoning = split_content(delta.get("content"))
            chunks = []
            for position, call in enumerate(known_ids(delta.get("tool_calls"))):
                fn = call.get("function") or {}
                args = fn.get("arguments")
                chunks.append(
                    tool_call_chunk(
                        name=fn.get("name") or None,
                        args=json.dumps(args) if isinstance(args, dict) else args,
                        id=call.get("id"),
                        index=call.get("index", position),
                    )
                )
            additional = {"reasoning_content": reasoning} if reasoning else {}
            self.generated.extend([text, *(c.get("args") or "" for c in chunks)])
            if text or chunks or additional:
                yield ChatGenerationChunk(
                    message=AIMessageChunk(
                        content=text, tool_call_chunks=chunks, additional_kwargs=additional, id=self.response_id
                    )
                )

    def finish(self) -> ChatGenerationChunk:
        meta = self.owner._response_metadata(self.model_name, finish_reason=self.finish_reason, id=self.response_id)
        usage = usage_from_openai(self.usage)
        if usage is None and self.prompt is not None:
            # Mistral's SDK cannot ask an OpenAI-compatible server for stream usage: count
            # it here (tiktoken, offline) and say it is an estimate, rather than report none.
            usage = self._estimated_usage()
            meta["usage_estimated"] = True
        return ChatGenerationChunk(
            message=AIMessageChunk(
                content="",
                usage_metadata=usage,
                response_metadata=meta,
                id=self.response_id,
                chunk_position="last",
            ),
            generation_info={"finish_reason": self.finish_reason},
        )

    def _estimated_usage(self) -> UsageMetadata:
        model = self.owner.model
        prompt_tokens = count_message_tokens([dict(m) for m in self.prompt or []], model)
        output_tokens = count_text_tokens("".join(self.generated), model)
        return UsageMetadata(
            input_tokens=prompt_tokens, output_tokens=output_tokens, total_tokens=prompt_tokens + output_tokens
        )


# ---------------------------------------------------------------------- errors
def translate_mistral_error(exc: Exception, *, provider: str = "mistral", model: str | None = None) -> GatewayError:
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
    """The human part of an error body: OpenAI's ``{"error": {"message"}}``, Mistral's
    ``{"message": ...}`` (a string or a list), or FastAPI's ``{"detail": [...]}``."""
    if isinstance(body, Mapping):
        inner = body.get("error", body)
        if isinstance(inner, Mapping):
            for key in ("message", "detail"):
                value = inner.get(key)
                if isinstance(value, str) and value:
                    return value
                if value:
                    return json.dumps(value)
        if isinstance(inner, str) and inner:
            return inner
        return None
    if isinstance(body, str) and body.strip():
        return body.strip()[:2000]
    return None
