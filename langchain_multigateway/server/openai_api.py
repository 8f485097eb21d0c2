"""OpenAI's Chat Completions wire format: request body -> ChatCall, AIMessage -> response.

Accepted: ``model``, ``messages`` (system, developer, user, assistant with
``tool_calls``, tool), ``stream`` and ``stream_options.include_usage``, ``tools``,
``tool_choice``, ``parallel_tool_calls``, ``response_format`` (``text``,
``json_object``, ``json_schema``), ``n`` (1 only), ``stop``, ``temperature``,
``top_p``, ``max_tokens`` / ``max_completion_tokens``, ``seed``, ``user``,
``frequency_penalty``, ``presence_penalty``; ``metadata``, ``store`` and
``service_tier`` are accepted and ignored. Anything else is refused with a 400
naming the parameter, so no option is silently dropped.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from typing import Any

from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    convert_to_messages,
)

from langchain_multigateway.server.call import (
    ChatCall,
    Outcome,
    parameters_problem,
    schema_problem,
    tool_name_problem,
    usage_dict,
)
from langchain_multigateway.server.errors import ApiError

__all__ = ["ChunkWriter", "completion_body", "parse_chat_request"]

_IGNORED = frozenset({"metadata", "store", "service_tier", "stream_options"})
_OPENAI_ONLY = ("seed", "user", "frequency_penalty", "presence_penalty")
_KNOWN = frozenset(
    {
        "model",
        "messages",
        "stream",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "response_format",
        "n",
        "stop",
        "temperature",
        "top_p",
        "max_tokens",
        "max_completion_tokens",
        "logprobs",
        *_OPENAI_ONLY,
        *_IGNORED,
    }
)
_FINISH = {
    "stop": "stop",
    "end_turn": "stop",
    "stop_sequence": "stop",
    "length": "length",
    "max_tokens": "length",
    "tool_calls": "tool_calls",
    "tool_use": "tool_calls",
    "content_filter": "content_filter",
    "refusal": "content_filter",
}


def _bad(message: str, param: str | None = None) -> ApiError:
    return ApiError(400, "invalid_request", message, param=param)


def _number(body: Mapping[str, Any], name: str, low: float, high: float) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise _bad(f"'{name}' must be a number from {low:g} to {high:g} (got {value!r})", name)
    return float(value)


def _positive_int(body: Mapping[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _bad(f"'{name}' must be a positive integer (got {value!r})", name)
    return value


def parse_chat_request(body: Any) -> ChatCall:
    """The call a ``POST /v1/chat/completions`` body asks for; a 400 :class:`ApiError` names what is wrong."""
    if not isinstance(body, dict):
        raise _bad("the request body must be a JSON object")
    unknown = sorted(k for k in body if k not in _KNOWN)
    if unknown:
        raise _bad(f"unsupported parameter(s): {', '.join(unknown)}", unknown[0])
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _bad("'model' is required: the name of a router or model this gateway serves (GET /v1/models)", "model")
    if body.get("n") not in (None, 1):
        raise _bad(f"only n=1 is supported (got n={body['n']!r}); send separate requests for more choices", "n")
    if body.get("logprobs"):
        raise _bad("logprobs are not supported by this gateway", "logprobs")
    call = ChatCall(model=model, messages=_messages(body.get("messages")))
    call.stream = bool(body.get("stream"))
    options = body.get("stream_options")
    call.include_usage = call.stream and isinstance(options, dict) and bool(options.get("include_usage"))
    _sampling(body, call)
    _tools(body, call)
    call.structured = _response_format(body.get("response_format"))
    return call


def _messages(raw: Any) -> list[BaseMessage]:
    if not isinstance(raw, list) or not raw:
        raise _bad("'messages' must be a non-empty list of {role, content} objects", "messages")
    for i, item in enumerate(raw):
        if not isinstance(item, dict) or item.get("role") not in ("system", "developer", "user", "assistant", "tool"):
            raise _bad(
                f"messages[{i}] must be an object whose role is system, developer, user, assistant or tool",
                f"messages[{i}]",
            )
        if item["role"] == "tool" and not isinstance(item.get("tool_call_id"), str):
            raise _bad(f"messages[{i}] (role tool) needs 'tool_call_id'", f"messages[{i}].tool_call_id")
        _check_content(item.get("content"), f"messages[{i}].content")
        if item.get("tool_calls") is not None:
            _check_tool_calls(item["tool_calls"], f"messages[{i}].tool_calls")
    try:
        return [_plain(item) or convert_to_messages([item])[0] for item in raw]
    except Exception as exc:  # any shape LangChain cannot read is the client's 400, never a 500
        raise _bad(f"'messages' could not be read: {exc}", "messages") from None


_PLAIN: dict[str, type[BaseMessage]] = {"user": HumanMessage, "system": SystemMessage, "assistant": AIMessage}


def _plain(item: dict[str, Any]) -> BaseMessage | None:
    """The message a bare ``{role, content: text}`` turn is (as LangChain reads it, without its dispatch),
    or None for any other shape, which LangChain's reader takes."""
    content = item["content"] if len(item) == 2 and "content" in item else None
    kind = _PLAIN.get(item["role"])
    if kind is None or not isinstance(content, str):
        return None
    return kind(content=content)


def _check_content(content: Any, where: str) -> None:
    """A message's content: a string, null, or a list of text / image_url / input_audio / file parts."""
    if content is None or isinstance(content, str):
        return
    if not isinstance(content, list):
        raise _bad(f"{where} must be a string or a list of content parts", where)
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        fields = _PART_FIELDS.get(kind) if isinstance(kind, str) else None
        if fields is None or not isinstance(kind, str):
            raise _bad(f"{where}[{j}].type must be one of {', '.join(_PART_FIELDS)} (got {kind!r})", f"{where}[{j}]")
        name, shape = fields
        value = part.get(name)
        if not isinstance(value, shape) or (isinstance(value, dict) and not _part_ok(kind, value)):
            raise _bad(f"{where}[{j}] ({kind}) needs '{name}'{_PART_HINTS[kind]}", f"{where}[{j}].{name}")


_PART_FIELDS: dict[str, tuple[str, type]] = {
    "text": ("text", str),
    "image_url": ("image_url", dict),
    "input_audio": ("input_audio", dict),
    "file": ("file", dict),
}
_PART_HINTS = {
    "text": " (a string)",
    "image_url": ": {url: 'https://…' or 'data:image/…;base64,…'}",
    "input_audio": ": {data: base64, format: 'wav' or 'mp3'}",
    "file": ": {file_id} or {file_data, filename}",
}


def _part_ok(kind: str, value: dict[str, Any]) -> bool:
    if kind == "image_url":
        return isinstance(value.get("url"), str)
    if kind == "input_audio":
        return isinstance(value.get("data"), str) and isinstance(value.get("format"), str)
    return isinstance(value.get("file_id"), str) or isinstance(value.get("file_data"), str)


def _check_tool_calls(calls: Any, where: str) -> None:
    """An assistant turn's tool calls: [{id, type: function, function: {name, arguments: JSON text}}]."""
    if not isinstance(calls, list):
        raise _bad(f"{where} must be a list of tool calls", where)
    for j, tc in enumerate(calls):
        function = tc.get("function") if isinstance(tc, dict) else None
        if (
            not isinstance(function, dict)
            or not isinstance(tc.get("id"), str)
            or not isinstance(function.get("name"), str)
            or not isinstance(function.get("arguments"), str)
        ):
            raise _bad(
                f"{where}[{j}] must be {{id, type: 'function', function: {{name, arguments: JSON text}}}}",
                f"{where}[{j}]",
            )


def _sampling(body: Mapping[str, Any], call: ChatCall) -> None:
    params: dict[str, Any] = {}
    temperature = _number(body, "temperature", 0, 2)
    if temperature is not None:
        params["temperature"] = temperature
    top_p = _number(body, "top_p", 0, 1)
    if top_p is not None:
        params["top_p"] = top_p
    max_tokens = _positive_int(body, "max_completion_tokens") or _positive_int(body, "max_tokens")
    if max_tokens is not None:
        params["max_tokens"] = max_tokens
    call.params = params
    stop = body.get("stop")
    if isinstance(stop, str):
        call.stop = [stop]
    elif isinstance(stop, list) and all(isinstance(s, str) for s in stop) and len(stop) <= 4:
        call.stop = list(stop) or None
    elif stop is not None:
        raise _bad("'stop' must be a string or a list of up to 4 strings", "stop")
    for name in _OPENAI_ONLY:
        if body.get(name) is not None:
            call.openai_params[name] = body[name]


def _tools(body: Mapping[str, Any], call: ChatCall) -> None:
    tools = body.get("tools")
    if tools is None:
        if body.get("tool_choice") not in (None, "none", "auto"):
            raise _bad("'tool_choice' needs 'tools'", "tool_choice")
        return
    if not isinstance(tools, list) or not all(
        isinstance(t, dict) and t.get("type") == "function" and isinstance(t.get("function"), dict) for t in tools
    ):
        raise _bad("'tools' must be a list of {type: 'function', function: {name, parameters}} objects", "tools")
    names = []
    for i, tool in enumerate(tools):
        name = tool["function"].get("name")
        problem = tool_name_problem(name)
        if problem:
            raise _bad(f"tools[{i}].function.name: {problem}", f"tools[{i}].function.name")
        parameters = tool["function"].get("parameters")
        problem = parameters_problem(parameters) if parameters is not None else None
        if problem:
            raise _bad(f"tools[{i}].function.parameters: {problem}", f"tools[{i}].function.parameters")
        names.append(name)
    call.tools = tools
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name") if choice.get("type") == "function" else None
        if name not in names:
            raise _bad(f"'tool_choice' must name one of the tools: {names}", "tool_choice")
        call.tool_choice = name
    elif choice in ("auto", "none", "required"):
        call.tool_choice = choice
    elif choice is not None:
        raise _bad("'tool_choice' must be 'auto', 'none', 'required' or {type: 'function', ...}", "tool_choice")
    if isinstance(body.get("parallel_tool_calls"), bool):
        call.tool_kwargs["parallel_tool_calls"] = body["parallel_tool_calls"]


def _response_format(raw: Any) -> dict[str, Any] | None:
    if raw is None:
        return None
    kind = raw.get("type") if isinstance(raw, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return {"schema": None, "method": "json_mode"}
    if kind == "json_schema":
        spec = raw.get("json_schema")
        if (
            not isinstance(spec, dict)
            or not isinstance(spec.get("name"), str)
            or not isinstance(spec.get("schema"), dict)
        ):
            raise _bad("response_format.json_schema needs 'name' and 'schema'", "response_format")
        problem = schema_problem(spec["schema"])
        if problem:
            raise _bad(f"response_format.json_schema.schema: {problem}", "response_format")
        schema = {**spec["schema"], "title": spec["name"]}
        if isinstance(spec.get("description"), str):
            schema["description"] = spec["description"]
        return {"schema": schema, "method": "json_schema", "strict": spec.get("strict")}
    raise _bad("response_format.type must be 'text', 'json_object' or 'json_schema'", "response_format")


# ---------------------------------------------------------------------- responses
def _finish_reason(message: AIMessage | AIMessageChunk, has_tools: bool) -> str:
    if has_tools:
        return "tool_calls"
    meta = message.response_metadata
    reason = meta.get("finish_reason") or meta.get("stop_reason") or "stop"
    return _FINISH.get(str(reason), "stop")


def _usage(usage: Any) -> dict[str, Any]:
    counts = usage_dict(usage)
    return {
        "prompt_tokens": counts["input"],
        "completion_tokens": counts["output"],
        "total_tokens": counts["total"],
        "prompt_tokens_details": {"cached_tokens": counts["cached"]},
        "completion_tokens_details": {"reasoning_tokens": counts["reasoning"]},
    }


def structured_text(message: AIMessage) -> str:
    """A structured answer's JSON text, whether the deployment answered in text or a tool call."""
    if message.tool_calls and not message.text.strip():
        return json.dumps(message.tool_calls[0]["args"])
    return message.text


def completion_body(call: ChatCall, message: AIMessage, outcome: Outcome) -> dict[str, Any]:
    """A ``chat.completion`` object for ``message``."""
    out: dict[str, Any] = {"role": "assistant", "content": None, "refusal": None}
    tool_calls = [] if call.structured is not None else message.tool_calls
    if call.structured is not None:
        out["content"] = structured_text(message)
    elif message.text or not tool_calls:
        out["content"] = message.text
    if tool_calls:
        out["tool_calls"] = [
            {
                "id": tc.get("id") or f"call_{uuid.uuid4().hex[:24]}",
                "type": "function",
                "function": {"name": tc["name"], "arguments": json.dumps(tc["args"])},
            }
            for tc in tool_calls
        ]
    return {
        "id": _completion_id(message),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": call.model,
        "choices": [
            {"index": 0, "message": out, "logprobs": None, "finish_reason": _finish_reason(message, bool(tool_calls))}
        ],
        "usage": _usage(outcome.usage),
        "system_fingerprint": None,
    }


def _completion_id(message: AIMessage | AIMessageChunk) -> str:
    own = message.id
    return own if own and own.startswith("chatcmpl") else f"chatcmpl-{uuid.uuid4().hex}"


class ChunkWriter:
    """Turns a routed stream's chunks into ``chat.completion.chunk`` objects."""

    def __init__(self, call: ChatCall) -> None:
        self.call = call
        self.id = f"chatcmpl-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.saw_tools = False
        self.last: AIMessageChunk | None = None

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.call.model,
            "system_fingerprint": None,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }

    def first(self) -> dict[str, Any]:
        return self._chunk({"role": "assistant", "content": ""})

    def feed(self, chunk: AIMessageChunk) -> dict[str, Any] | None:
        """The chunk object for one routed chunk, or None when it carries nothing to send."""
        self.last = chunk
        delta: dict[str, Any] = {}
        text = str(chunk.text)
        calls = chunk.tool_call_chunks
        if self.call.structured is not None and calls:
            # A deployment that answers structured output with a tool call: its arguments are the JSON.
            text += "".join(c.get("args") or "" for c in calls)
            calls = []
        if text:
            delta["content"] = text
        if calls:
            self.saw_tools = True
            delta["tool_calls"] = [_tool_delta(c) for c in calls]
        return self._chunk(delta) if delta else None

    def end(self, outcome: Outcome) -> list[dict[str, Any]]:
        """The finishing chunk, then the usage chunk when the client asked for it."""
        reason = _finish_reason(self.last, self.saw_tools) if self.last is not None else "stop"
        out = [self._chunk({}, reason)]
        if self.call.include_usage:
            usage_chunk = self._chunk({})
            usage_chunk["choices"] = []
            usage_chunk["usage"] = _usage(outcome.usage)
            out.append(usage_chunk)
        return out


def _tool_delta(chunk: Mapping[str, Any]) -> dict[str, Any]:
    delta: dict[str, Any] = {"index": chunk.get("index") or 0}
    function: dict[str, Any] = {"arguments": chunk.get("args") or ""}
    if chunk.get("id"):
        delta["id"] = chunk["id"]
        delta["type"] = "function"
    if chunk.get("name"):
        function["name"] = chunk["name"]
    delta["function"] = function
    return delta
