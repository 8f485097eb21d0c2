"""The stream assembler of OpenAI's Responses API (``POST /responses`` with ``stream: true``).

Fed one server-sent event at a time (I/O-free). Text, reasoning and function-call
arguments go out as they arrive, as content blocks keyed by their output item's
position (so LangChain's chunk merging joins each item's pieces) plus tool-call chunks;
``response.completed`` (or ``response.incomplete``) ends the answer, and one closing
chunk carries its usage, model name and status.

Servers differ in detail: OpenAI sends ``output_index`` on every event, llama.cpp only
the ``item_id``; a server may also skip the deltas and send an item whole in
``response.output_item.done``. Both are handled: positions come from either, and the
part of an item's text or arguments no delta carried is sent when the item is done.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from langchain_core.messages import AIMessageChunk
from langchain_core.messages.tool import ToolCallChunk, tool_call_chunk
from langchain_core.outputs import ChatGenerationChunk

from langchain_multigateway.chat_models._responses_format import reasoning_block, usage_from_responses
from langchain_multigateway.errors import ProviderError, error_from_status

if TYPE_CHECKING:
    from langchain_multigateway.chat_models._base import GatewayChatModel
    from langchain_multigateway.chat_models._exchange import Exchange
    from langchain_multigateway.chat_models._http import SSEEvent

__all__ = ["ResponsesAssembler"]

_ENDED = ("response.completed", "response.incomplete")


class _Item:
    """What has been sent of one output item so far."""

    __slots__ = ("done", "kind", "position", "sent")

    def __init__(self, kind: str, position: int) -> None:
        self.kind = kind
        self.position = position
        self.sent = ""  # text or arguments already streamed
        self.done = False  # output_item.done seen: a repeat would send its summary or encrypted_content twice


class ResponsesAssembler:
    """Responses stream events to LangChain chunks (see the module docstring)."""

    end_marker = "response.completed"

    def __init__(self, owner: GatewayChatModel, exchange: Exchange) -> None:
        self.owner = owner
        self.exchange = exchange
        self.items: dict[str, _Item] = {}
        self.response: dict[str, Any] = {}
        self.ended = False
        self.calls = 0

    @property
    def answered(self) -> bool:
        return self.ended

    @property
    def complete(self) -> bool:
        return self.ended

    def feed(self, event: SSEEvent) -> Iterator[ChatGenerationChunk]:
        data = event.data.strip()
        if not data or self.ended or data == "[DONE]":
            return
        parsed = json.loads(data)
        if not isinstance(parsed, Mapping):
            msg = f"stream event is not a JSON object: {data[:100]!r}"
            raise TypeError(msg)
        yield from self._event(str(parsed.get("type") or event.event), parsed)

    # ------------------------------------------------------------------ events
    def _event(self, kind: str, event: Mapping[str, Any]) -> Iterator[ChatGenerationChunk]:
        if kind in ("error", "response.failed"):
            self._raise(event)
        if isinstance(event.get("response"), Mapping):
            self.response.update(event["response"])
        if kind in _ENDED:
            self.ended = True
            yield from self._finish_items()
        elif kind == "response.output_item.added":
            yield from self._item_added(event)
        elif kind == "response.output_item.done":
            yield from self._item_done(event)
        elif kind == "response.output_text.delta":
            yield from self._text(event, _delta(event))
        elif kind == "response.refusal.delta":
            item = self._item(event, "message")
            yield self._chunk([{"type": "refusal", "refusal": _delta(event), "index": item.position}])
        elif kind == "response.function_call_arguments.delta":
            yield from self._arguments(event, _delta(event))
        elif kind == "response.reasoning_summary_text.delta":
            item = self._item(event, "reasoning")
            item.sent += _delta(event)
            part = {
                "type": "summary_text",
                "text": _delta(event),
                "index": event.get("summary_index", 0),
            }
            yield self._chunk([{"type": "reasoning", "summary": [part], "index": item.position}])
        elif kind == "response.reasoning_text.delta":
            item = self._item(event, "reasoning")
            item.sent += _delta(event)
            yield self._chunk(
                [
                    {
                        "type": "reasoning",
                        "summary": [],
                        "reasoning": _delta(event),
                        "index": item.position,
                    }
                ]
            )

    def _item(self, event: Mapping[str, Any], kind: str) -> _Item:
        """The output item an event belongs to (by ``item_id``, else ``output_index``)."""
        key = str(event.get("item_id") or (event.get("item") or {}).get("id") or f"#{event.get('output_index', 0)}")
        item = self.items.get(key)
        if item is None:
            position = event.get("output_index")
            item = _Item(kind, position if isinstance(position, int) else len(self.items))
            self.items[key] = item
        return item

    def _item_added(self, event: Mapping[str, Any]) -> Iterator[ChatGenerationChunk]:
        raw = event.get("item") or {}
        kind = str(raw.get("type") or "")
        item = self._item(event, kind)
        if kind == "function_call":
            arguments = str(raw.get("arguments") or "")
            item.sent = arguments
            self.calls += 1
            call_id = raw.get("call_id") or raw.get("id")
            block = {
                "type": "function_call",
                "name": raw.get("name"),
                "call_id": call_id,
                "arguments": arguments,
                "id": raw.get("id"),
                "index": item.position,
            }
            call = tool_call_chunk(name=raw.get("name"), args=arguments, id=call_id, index=item.position)
            yield self._chunk([block], [call])
        elif kind == "reasoning":
            yield self._chunk([{"type": "reasoning", "id": raw.get("id"), "summary": [], "index": item.position}])

    def _text(self, event: Mapping[str, Any], delta: str) -> Iterator[ChatGenerationChunk]:
        item = self._item(event, "message")
        if not delta:
            return
        block: dict[str, Any] = {"type": "text", "text": delta, "index": item.position}
        if not item.sent and event.get("item_id"):
            block["id"] = event["item_id"]
        item.sent += delta
        yield self._chunk([block])

    def _arguments(self, event: Mapping[str, Any], delta: str) -> Iterator[ChatGenerationChunk]:
        item = self._item(event, "function_call")
        if not delta:
            return
        item.sent += delta
        block = {"type": "function_call", "arguments": delta, "index": item.position}
        yield self._chunk([block], [tool_call_chunk(args=delta, index=item.position)])

    def _finish_items(self) -> Iterator[ChatGenerationChunk]:
        """The final response's output items, for what no delta or ``output_item.done`` carried
        (a server that skipped them, or a function call whose argument deltas stopped short)."""
        output = self.response.get("output")
        for position, raw in enumerate(output if isinstance(output, list) else []):
            if isinstance(raw, Mapping) and raw.get("id"):
                yield from self._item_done({"item": raw, "output_index": position})

    def _item_done(self, event: Mapping[str, Any]) -> Iterator[ChatGenerationChunk]:
        """Send what of a finished item no delta carried (a server that sends items whole)."""
        raw = event.get("item") or {}
        kind = str(raw.get("type") or "")
        known = str(raw.get("id") or "") in self.items
        item = self._item(event, kind)
        if item.done:
            return  # a repeated output_item.done (or the final response's copy): already sent
        item.done = True
        if kind == "message":
            text = "".join(p.get("text") or "" for p in raw.get("content") or [] if p.get("type") == "output_text")
            if text.startswith(item.sent) and len(text) > len(item.sent):
                yield from self._text({"item_id": raw.get("id")}, text[len(item.sent) :])
        elif kind == "function_call":
            if not known:
                yield from self._item_added(event)
            arguments = str(raw.get("arguments") or "")
            if arguments.startswith(item.sent) and len(arguments) > len(item.sent):
                yield from self._arguments({"item_id": raw.get("id")}, arguments[len(item.sent) :])
        elif kind == "reasoning":
            whole = reasoning_block(raw)
            extra = {k: whole[k] for k in ("encrypted_content",) if k in whole}  # what no delta carries
            if not item.sent:  # no delta carried its summary or text: send them now
                extra.update({k: v for k, v in whole.items() if k in ("summary", "reasoning") and v})
                if not known:
                    extra["id"] = whole.get("id")
            if extra:  # "summary" keeps it one block with the item's earlier pieces (LangChain's v1 translator)
                yield self._chunk([{"type": "reasoning", "summary": [], **extra, "index": item.position}])

    # ------------------------------------------------------------------ output
    def _chunk(self, content: list[dict[str, Any]], calls: list[ToolCallChunk] | None = None) -> ChatGenerationChunk:
        # model_provider on every chunk: LangChain turns each chunk into v1 blocks (output_version="v1")
        # with the provider's translator, which knows these Responses blocks.
        message = AIMessageChunk(
            content=content,
            tool_call_chunks=calls or [],
            id=self.response.get("id"),
            response_metadata={"model_provider": self.owner.provider_name},
        )
        return ChatGenerationChunk(message=message)

    def _raise(self, event: Mapping[str, Any]) -> None:
        response = event.get("response")
        detail = (response.get("error") if isinstance(response, Mapping) else None) or event.get("error") or event
        message = f"stream error: {detail}"
        provider, model, request_id = self.owner.provider_name, self.exchange.model, self.exchange.request_id
        code = str(detail.get("code") or detail.get("type") or "") if isinstance(detail, Mapping) else ""
        if code in ("invalid_request_error", "invalid_prompt") or "content_filter" in message:
            raise error_from_status(400, message, provider=provider, model=model, request_id=request_id)
        raise ProviderError(message, provider=provider, model=model, request_id=request_id)

    def finish(self) -> ChatGenerationChunk:
        response = self.response
        status = response.get("status")
        meta = self.owner._response_metadata(
            response.get("model"),
            id=response.get("id"),
            status=status,
            finish_reason=_finish_reason(response, calls=self.calls),
            request_id=self.exchange.request_id,
        )
        return ChatGenerationChunk(
            message=AIMessageChunk(
                content=[],
                usage_metadata=usage_from_responses(response.get("usage")),
                response_metadata=meta,
                id=response.get("id"),
                chunk_position="last",
            ),
            generation_info={"finish_reason": meta.get("finish_reason")},
        )


def _finish_reason(response: Mapping[str, Any], *, calls: int) -> str | None:
    """A chat-completions style finish reason for a Responses answer (routers and tracers read it)."""
    status = response.get("status")
    if status == "incomplete":
        reason = (response.get("incomplete_details") or {}).get("reason")
        return "length" if reason == "max_output_tokens" else str(reason or "incomplete")
    if status == "completed":
        return "tool_calls" if calls else "stop"
    return None


def _delta(event: Mapping[str, Any]) -> str:
    """An event's text delta; anything but a string is a malformed event (skipped, not shown as text)."""
    delta = event.get("delta")
    if delta is None:
        return ""
    if not isinstance(delta, str):
        msg = f"{event.get('type')} delta is not a string: {str(delta)[:100]!r}"
        raise TypeError(msg)
    return delta
