"""The stream assembler of OpenAI-style chat completions (OpenAI's API and Mistral's).

Fed one server-sent event at a time (I/O-free): content, reasoning and tool-call
fragments go out as they arrive; one closing chunk carries the usage, model name and
finish reason, so exactly one chunk holds each (LangChain's streaming rules).

The answer ends with a ``finish_reason``; ``[DONE]`` closes the stream. A stream with
a finish reason but no ``[DONE]`` is complete (finished as soon as its usage is in,
when usage was asked for); one with neither was cut short.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from langchain_core.messages import AIMessageChunk
from langchain_core.messages.ai import UsageMetadata
from langchain_core.messages.tool import tool_call_chunk
from langchain_core.outputs import ChatGenerationChunk

from langchain_multigateway.chat_models._openai_format import usage_from_openai
from langchain_multigateway.errors import ProviderError, error_from_status

if TYPE_CHECKING:
    from langchain_multigateway.chat_models._base import GatewayChatModel
    from langchain_multigateway.chat_models._exchange import Exchange
    from langchain_multigateway.chat_models._http import SSEEvent

__all__ = ["ChatCompletionsAssembler", "plain_content"]


def plain_content(content: Any) -> tuple[str, str]:
    """OpenAI delta content as (text, reasoning): it is a string (or absent)."""
    if content is None:
        return "", ""
    if not isinstance(content, str):
        msg = f"delta content is not a string: {str(content)[:100]!r}"
        raise TypeError(msg)
    return content, ""


class ChatCompletionsAssembler:
    """Chat-completions stream events to LangChain chunks (see the module docstring)."""

    end_marker = "a finish_reason or [DONE]"

    def __init__(
        self,
        owner: GatewayChatModel,
        exchange: Exchange,
        *,
        split_content: Callable[[Any], tuple[str, str]] = plain_content,
        usage_of: Callable[[Mapping[str, Any] | None], UsageMetadata | None] = usage_from_openai,
        estimate_usage: Callable[[str, str | None], UsageMetadata] | None = None,
        usage_expected: bool | None = None,
    ) -> None:
        self.owner = owner
        self.exchange = exchange
        self.split_content = split_content
        self.usage_of = usage_of
        self.estimate_usage = estimate_usage
        if usage_expected is None:  # OpenAI sends stream usage when asked to
            options = exchange.payload.get("stream_options")
            usage_expected = isinstance(options, Mapping) and bool(options.get("include_usage"))
        self.usage_asked = usage_expected
        self.done = False
        self.chose = False  # a choice arrived: [DONE] alone is no answer, only the end of one
        self.model_name: str | None = None
        self.finish_reason: str | None = None
        self.response_id: str | None = None
        self.system_fingerprint: str | None = None
        self.usage: dict[str, Any] | None = None
        self.generated: list[str] = []  # for an estimate when the server sends no usage

    @property
    def answered(self) -> bool:
        return self.finish_reason is not None or (self.done and self.chose)

    @property
    def complete(self) -> bool:
        return self.done or (self.finish_reason is not None and (self.usage is not None or not self.usage_asked))

    def feed(self, event: SSEEvent) -> Iterator[ChatGenerationChunk]:
        data = event.data.strip()
        if not data or self.done:
            return
        if data == "[DONE]":
            self.done = True
            return
        parsed = json.loads(data)
        if not isinstance(parsed, Mapping):
            msg = f"stream event is not a JSON object: {data[:100]!r}"
            raise TypeError(msg)
        yield from self._event(parsed)

    def _event(self, event: Mapping[str, Any]) -> Iterator[ChatGenerationChunk]:
        if event.get("error") or event.get("object") == "error":
            detail = event.get("error") or event.get("message") or event
            message = f"stream error: {detail}"
            provider, model, request_id = self.owner.provider_name, self.exchange.model, self.exchange.request_id
            if _about_the_request(detail):  # typed as an HTTP 400 would be: raised, not retried or sent elsewhere
                raise error_from_status(400, message, provider=provider, model=model, request_id=request_id)
            raise ProviderError(message, provider=provider, model=model, request_id=request_id)
        self.model_name = event.get("model") or self.model_name
        self.response_id = event.get("id") or self.response_id
        self.system_fingerprint = event.get("system_fingerprint") or self.system_fingerprint
        if event.get("usage"):
            self.usage = dict(event["usage"])
        for choice in event.get("choices") or []:
            self.chose = True
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
            delta = choice.get("delta") or {}
            text, reasoning = self.split_content(delta.get("content"))
            reasoning = reasoning or delta.get("reasoning_content") or ""
            calls = [self._tool_call(call, position) for position, call in enumerate(delta.get("tool_calls") or [])]
            additional = {"reasoning_content": reasoning} if reasoning else {}
            self.generated.extend([text, reasoning])
            self.generated.extend(f"{c.get('name') or ''}{c.get('args') or ''}" for c in calls)
            if text or calls or additional:
                yield ChatGenerationChunk(
                    message=AIMessageChunk(
                        content=text, tool_call_chunks=calls, additional_kwargs=additional, id=self.response_id
                    )
                )

    @staticmethod
    def _tool_call(call: Mapping[str, Any], position: int) -> Any:
        fn = call.get("function") or {}
        args = fn.get("arguments")
        call_id = call.get("id")
        return tool_call_chunk(
            name=fn.get("name") or None,
            args=json.dumps(args) if isinstance(args, dict) else args,
            id=None if call_id in ("null", "") else call_id,  # Mistral's SDK placeholder id
            index=call.get("index", position),
        )

    def finish(self) -> ChatGenerationChunk:
        meta = self.owner._response_metadata(
            self.model_name,
            finish_reason=self.finish_reason,
            id=self.response_id,
            system_fingerprint=self.system_fingerprint,
            request_id=self.exchange.request_id,
        )
        usage = self.usage_of(self.usage)
        if usage is None and self.estimate_usage is not None:
            usage = self.estimate_usage("".join(self.generated), self.finish_reason)
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


def _about_the_request(detail: Any) -> bool:
    """A stream's error event that blames the request (an invalid request, a content filter), not the server."""
    kind = str(detail.get("type") or "") if isinstance(detail, Mapping) else ""
    return kind == "invalid_request_error" or "content_filter" in str(detail) or "content_policy" in str(detail)
