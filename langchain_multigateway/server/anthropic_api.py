"""Anthropic's Messages wire format: request body -> ChatCall, AIMessage -> message / SSE events.

Accepted: ``model``, ``max_tokens`` (required, as Anthropic requires it), ``messages``
(text, image, ``tool_use`` and ``tool_result`` blocks), ``system`` (a string or text
blocks), ``tools`` (``name``, ``description``, ``input_schema``), ``tool_choice``
(auto, any, tool, none), ``stop_sequences``, ``temperature``, ``top_p``, ``stream``;
``metadata`` is accepted and ignored. Anything else is refused with a 400.

A stream is ``message_start``, then per content block ``content_block_start`` /
``content_block_delta`` (``text_delta`` or ``input_json_delta``) /
``content_block_stop``, then ``message_delta`` (stop reason and usage) and
``message_stop`` — the events Anthropic documents, in that order.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from typing import Any

from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage, SystemMessage, ToolMessage

from langchain_multigateway.server.call import (
    ChatCall,
    Outcome,
    parameters_problem,
    tool_name_problem,
    usage_dict,
)
from langchain_multigateway.server.errors import ApiError

__all__ = ["EventWriter", "message_body", "parse_messages_request"]

_KNOWN = frozenset(
    {
        "model",
        "max_tokens",
        "messages",
        "system",
        "tools",
        "tool_choice",
        "stop_sequences",
        "temperature",
        "top_p",
        "stream",
        "metadata",
    }
)
_STOP = {
    "stop": "end_turn",
    "end_turn": "end_turn",
    "stop_sequence": "stop_sequence",
    "length": "max_tokens",
    "max_tokens": "max_tokens",
    "tool_calls": "tool_use",
    "tool_use": "tool_use",
}


def _bad(message: str) -> ApiError:
    return ApiError(400, "invalid_request", message)


def parse_messages_request(body: Any) -> ChatCall:
    """The call a ``POST /v1/messages`` body asks for; a 400 :class:`ApiError` names what is wrong."""
    if not isinstance(body, dict):
        raise _bad("the request body must be a JSON object")
    unknown = sorted(k for k in body if k not in _KNOWN)
    if unknown:
        raise _bad(f"unsupported parameter(s): {', '.join(unknown)}")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _bad("model: required, the name of a router or model this gateway serves (GET /v1/models)")
    max_tokens = body.get("max_tokens")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise _bad(f"max_tokens: required, a positive integer (got {max_tokens!r})")
    messages = _system(body.get("system")) + _turns(body.get("messages"))
    call = ChatCall(model=model, messages=messages, stream=bool(body.get("stream")))
    call.params["max_tokens"] = max_tokens
    for name, high in (("temperature", 1.0), ("top_p", 1.0)):
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= high:
            raise _bad(f"{name}: expected a number from 0 to {high:g} (got {value!r})")
        call.params[name] = float(value)
    stops = body.get("stop_sequences")
    if stops is not None:
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            raise _bad("stop_sequences: expected a list of strings")
        call.stop = list(stops) or None
    _tools(body, call)
    return call


def _system(raw: Any) -> list[BaseMessage]:
    if raw is None:
        return []
    if isinstance(raw, str):
        return [SystemMessage(raw)] if raw else []
    if isinstance(raw, list) and all(isinstance(b, dict) and b.get("type") == "text" for b in raw):
        return [SystemMessage("\n\n".join(str(b.get("text", "")) for b in raw))]
    raise _bad("system: expected a string or a list of text blocks")


def _turns(raw: Any) -> list[BaseMessage]:
    if not isinstance(raw, list) or not raw:
        raise _bad("messages: expected a non-empty list of {role, content} objects")
    out: list[BaseMessage] = []
    for i, turn in enumerate(raw):
        if not isinstance(turn, dict) or turn.get("role") not in ("user", "assistant"):
            raise _bad(f"messages.{i}: expected an object whose role is user or assistant")
        content = turn.get("content")
        if isinstance(content, str):
            blocks: list[Any] = [{"type": "text", "text": content}]
        elif isinstance(content, list) and all(isinstance(b, dict) for b in content):
            blocks = content
        else:
            raise _bad(f"messages.{i}.content: expected a string or a list of content blocks")
        out.extend(_assistant(blocks, i) if turn["role"] == "assistant" else _user(blocks, i))
    return out


def _user(blocks: list[dict[str, Any]], i: int) -> list[BaseMessage]:
    results: list[BaseMessage] = []
    parts: list[dict[str, Any]] = []
    for j, block in enumerate(blocks):
        kind = block.get("type")
        if kind == "tool_result":
            if not isinstance(block.get("tool_use_id"), str):
                raise _bad(f"messages.{i}.content.{j}.tool_use_id: required")
            results.append(
                ToolMessage(
                    content=_text_of(block.get("content"), f"messages.{i}.content.{j}.content"),
                    tool_call_id=block["tool_use_id"],
                    status="error" if block.get("is_error") else "success",
                )
            )
        elif kind == "text":
            parts.append({"type": "text", "text": str(block.get("text", ""))})
        elif kind == "image":
            parts.append(_image(block.get("source"), f"messages.{i}.content.{j}.source"))
        else:
            raise _bad(f"messages.{i}.content.{j}.type: expected text, image or tool_result (got {kind!r})")
    out = results
    if parts:
        only_text = all(p["type"] == "text" for p in parts)
        content: Any = "\n".join(p["text"] for p in parts) if only_text else parts
        out.append(HumanMessage(content=content))
    return out


def _assistant(blocks: list[dict[str, Any]], i: int) -> list[BaseMessage]:
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for j, block in enumerate(blocks):
        kind = block.get("type")
        if kind == "text":
            texts.append(str(block.get("text", "")))
        elif kind == "tool_use":
            if not isinstance(block.get("id"), str) or not isinstance(block.get("name"), str):
                raise _bad(f"messages.{i}.content.{j}: a tool_use block needs id and name")
            calls.append({"id": block["id"], "name": block["name"], "args": block.get("input") or {}})
        else:
            raise _bad(f"messages.{i}.content.{j}.type: expected text or tool_use in an assistant turn")
    return [AIMessage(content="".join(texts), tool_calls=calls)]


def _text_of(content: Any, where: str) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(b, dict) and b.get("type") == "text" for b in content):
        return "\n".join(str(b.get("text", "")) for b in content)
    raise _bad(f"{where}: expected a string or text blocks")


def _image(source: Any, where: str) -> dict[str, Any]:
    if isinstance(source, dict) and source.get("type") == "base64" and isinstance(source.get("data"), str):
        url = f"data:{source.get('media_type') or 'image/png'};base64,{source['data']}"
    elif isinstance(source, dict) and source.get("type") == "url" and isinstance(source.get("url"), str):
        url = source["url"]
    else:
        raise _bad(f"{where}: expected {{type: base64, media_type, data}} or {{type: url, url}}")
    return {"type": "image_url", "image_url": {"url": url}}


def _tools(body: Mapping[str, Any], call: ChatCall) -> None:
    tools = body.get("tools")
    choice = body.get("tool_choice")
    if choice is not None and not isinstance(choice, dict):
        raise _bad("tool_choice: expected {type: auto | any | none | tool}")
    if tools is None:
        if choice is not None and choice.get("type") not in ("auto", "none"):
            raise _bad("tool_choice: needs tools")
        return
    if not isinstance(tools, list) or not all(
        isinstance(t, dict) and isinstance(t.get("name"), str) and isinstance(t.get("input_schema"), dict)
        for t in tools
    ):
        raise _bad("tools: expected a list of {name, description, input_schema} objects")
    for i, t in enumerate(tools):
        problem = tool_name_problem(t["name"]) or parameters_problem(t["input_schema"])
        if problem:
            raise _bad(f"tools.{i}: {problem}")
    call.tools = [
        {
            "type": "function",
            "function": {"name": t["name"], "description": t.get("description", ""), "parameters": t["input_schema"]},
        }
        for t in tools
    ]
    if choice is None:
        return
    kind = choice.get("type") if isinstance(choice, dict) else None
    names = [t["name"] for t in tools]
    if kind == "auto":
        call.tool_choice = "auto"
    elif kind == "any":
        call.tool_choice = "required"
    elif kind == "none":
        call.tool_choice = "none"
    elif kind == "tool" and choice.get("name") in names:
        call.tool_choice = str(choice["name"])
    else:
        raise _bad(f"tool_choice: expected {{type: auto | any | none}} or {{type: tool, name: one of {names}}}")
    if isinstance(choice, dict) and choice.get("disable_parallel_tool_use") is True:
        call.tool_kwargs["parallel_tool_calls"] = False


# ---------------------------------------------------------------------- responses
def _stop_reason(message: AIMessage | AIMessageChunk | None, used_tools: bool) -> str:
    if used_tools:
        return "tool_use"
    if message is None:
        return "end_turn"
    meta = message.response_metadata
    reason = meta.get("stop_reason") or meta.get("finish_reason") or "stop"
    return _STOP.get(str(reason), "end_turn")


def _usage(usage: Any) -> dict[str, int]:
    counts = usage_dict(usage)
    out = {"input_tokens": counts["input"] - counts["cached"], "output_tokens": counts["output"]}
    if counts["cached"]:
        out["cache_read_input_tokens"] = counts["cached"]
    return out


def _message_id() -> str:
    return f"msg_{uuid.uuid4().hex[:24]}"


def message_body(call: ChatCall, message: AIMessage, outcome: Outcome) -> dict[str, Any]:
    """A ``message`` object for ``message``."""
    content: list[dict[str, Any]] = []
    if message.text:
        content.append({"type": "text", "text": message.text})
    for tc in message.tool_calls:
        content.append(
            {
                "type": "tool_use",
                "id": tc.get("id") or f"toolu_{uuid.uuid4().hex[:24]}",
                "name": tc["name"],
                "input": tc["args"],
            }
        )
    return {
        "id": _message_id(),
        "type": "message",
        "role": "assistant",
        "model": call.model,
        "content": content,
        "stop_reason": _stop_reason(message, bool(message.tool_calls)),
        "stop_sequence": None,
        "usage": _usage(outcome.usage),
    }


class EventWriter:
    """Turns a routed stream's chunks into Anthropic's SSE events, as ``(event, data)`` pairs."""

    def __init__(self, call: ChatCall) -> None:
        self.call = call
        self.open: tuple[str, Any] | None = None  # ("text", None) or ("tool", tool-call index)
        self.index = -1
        self.used_tools = False
        self.last: AIMessageChunk | None = None

    def start(self) -> list[tuple[str, dict[str, Any]]]:
        message: dict[str, Any] = {
            "id": _message_id(),
            "type": "message",
            "role": "assistant",
            "model": self.call.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }
        return [("message_start", {"type": "message_start", "message": message})]

    def _close(self) -> list[tuple[str, dict[str, Any]]]:
        if self.open is None:
            return []
        self.open = None
        return [("content_block_stop", {"type": "content_block_stop", "index": self.index})]

    def _begin(self, kind: tuple[str, Any], block: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        events = self._close()
        self.index += 1
        self.open = kind
        events.append(
            ("content_block_start", {"type": "content_block_start", "index": self.index, "content_block": block})
        )
        return events

    def _delta(self, delta: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        return ("content_block_delta", {"type": "content_block_delta", "index": self.index, "delta": delta})

    def feed(self, chunk: AIMessageChunk) -> list[tuple[str, dict[str, Any]]]:
        self.last = chunk
        events: list[tuple[str, dict[str, Any]]] = []
        text = chunk.text
        if text:
            if self.open != ("text", None):
                events += self._begin(("text", None), {"type": "text", "text": ""})
            events.append(self._delta({"type": "text_delta", "text": text}))
        for part in chunk.tool_call_chunks:
            key = ("tool", part.get("index") if part.get("index") is not None else part.get("id"))
            if self.open != key:
                self.used_tools = True
                block = {
                    "type": "tool_use",
                    "id": part.get("id") or f"toolu_{uuid.uuid4().hex[:24]}",
                    "name": part.get("name") or "",
                    "input": {},
                }
                events += self._begin(key, block)
            if part.get("args"):
                events.append(self._delta({"type": "input_json_delta", "partial_json": part["args"]}))
        return events

    def end(self, outcome: Outcome) -> list[tuple[str, dict[str, Any]]]:
        events = self._close()
        usage = _usage(outcome.usage)
        delta = {"stop_reason": _stop_reason(self.last, self.used_tools), "stop_sequence": None}
        events.append(("message_delta", {"type": "message_delta", "delta": delta, "usage": usage}))
        events.append(("message_stop", {"type": "message_stop"}))
        return events


def error_event(body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The ``error`` event for a failure after the stream started."""
    return ("error", body)


def sse(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"
