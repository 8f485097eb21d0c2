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

from langchain_multigateway.chat_models._openai_format import parse_tool_calls, usage_from_openai
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
        reasoning_blocks: bool = False,
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
        # Reasoning as content blocks (see content_with_reasoning): once a stream has
        # reasoned, its text and tool calls go out as blocks too, so the chunks merge into one list.
        self.reasoning_blocks = reasoning_blocks
        self.reasoned = False
        self.calls: dict[int, dict[str, str]] = {}  # tool calls of a reasoning stream, for its last chunk
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
            reasoning = reasoning or _reasoning_of(delta)
            calls = [self._tool_call(call, position) for position, call in enumerate(delta.get("tool_calls") or [])]
            additional: dict[str, Any] = {"reasoning_content": reasoning} if reasoning else {}
            if delta.get("refusal"):  # Structured Outputs' refusal, in pieces (joined as the chunks add up)
                additional["refusal"] = str(delta["refusal"])
            self.generated.extend([text, reasoning])
            self.generated.extend(f"{c.get('name') or ''}{c.get('args') or ''}" for c in calls)
            if text or calls or additional:
                content = self._blocks(text, reasoning, calls) if self.reasoning_blocks else text
                yield ChatGenerationChunk(
                    message=AIMessageChunk(
                        content=content, tool_call_chunks=calls, additional_kwargs=additional, id=self.response_id
                    )
                )

    def _blocks(self, text: str, reasoning: str, calls: list[Any]) -> str | list[dict[str, Any]]:
        """A delta's content: plain text until the stream reasons, blocks from then on."""
        self.reasoned = self.reasoned or bool(reasoning)
        if not self.reasoned:
            return text
        for call in calls:
            held = self.calls.setdefault(call["index"], {"id": "", "name": "", "args": ""})
            for key in ("id", "name", "args"):
                held[key] += call.get(key) or ""
        blocks: list[dict[str, Any]] = []
        if reasoning:
            blocks.append({"type": "reasoning", "reasoning": reasoning, "index": 0})
        if text:
            blocks.append({"type": "text", "text": text, "index": 1})
        return blocks

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
        content: str | list[dict[str, Any]] = ""
        if self.reasoned:  # the tool calls as blocks too, so content_blocks lists them
            raw = [
                {"id": c["id"], "function": {"name": c["name"], "arguments": c["args"]}} for c in self.calls.values()
            ]
            calls, _ = parse_tool_calls(raw)
            content = [
                {"type": "tool_call", "id": c.get("id"), "name": c["name"], "args": c["args"], "index": 2 + position}
                for position, c in enumerate(calls)
            ]
        return ChatGenerationChunk(
            message=AIMessageChunk(
                content=content,
                usage_metadata=usage,
                response_metadata=meta,
                id=self.response_id,
                chunk_position="last",
            ),
            generation_info={"finish_reason": self.finish_reason},
        )


def _reasoning_of(delta: Mapping[str, Any]) -> str:
    """A delta's reasoning text: ``reasoning_content`` (llama.cpp, DeepSeek, older vLLM) or
    ``reasoning`` (newer vLLM, OpenRouter)."""
    for key in ("reasoning_content", "reasoning"):
        value = delta.get(key)
        if isinstance(value, str) and value:
            return value
    return ""


def _about_the_request(detail: Any) -> bool:
    """A stream's error event that blames the request (an invalid request, a content filter), not the server."""
    kind = str(detail.get("type") or "") if isinstance(detail, Mapping) else ""
    return kind == "invalid_request_error" or "content_filter" in str(detail) or "content_policy" in str(detail)
