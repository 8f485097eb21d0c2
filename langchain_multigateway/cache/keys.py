"""What a cached answer is filed under: the exact key, the request's shape, and the text a semantic lookup embeds.

A key is a SHA-256 of a canonical JSON of what changes the answer: the scope, the
messages (type, name, content, tool calls, tool call ids), the tools, the tool
choice, the response format and the generation parameters. Never the deployment:
an answer cached via one deployment serves the same request routed to another.
Only hashes reach a store, so a scope that happens to be sensitive (a tenant id,
a key's name) is not readable from the cache file, and neither is the prompt in a key.

The **shape** is the part a semantic match must share exactly: scope, tools, tool
choice, response format, generation parameters, the system prompt, every turn
before the embedded ones, and the numbers and names in the embedded text. Two requests
with different shapes are never compared, so a paraphrase under another tenant, other
tools or another system prompt is not a hit.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.messages import BaseMessage

from langchain_multigateway._content import text_parts

__all__ = ["IGNORED_PARAMS", "RequestKeys", "canonical_messages", "request_keys", "salient_terms", "scope_digest"]

IGNORED_PARAMS = frozenset(
    {
        # transport and bookkeeping: they never change what the model answers
        "timeout",
        "request_timeout",
        "max_retries",
        "stream",
        "stream_options",
        "streaming",
        "extra_headers",
        "extra_query",
        "metadata",
        "user",
        "tags",
        "callbacks",
        "run_name",
        "run_id",
        # credentials and endpoints: a key must never carry them (nor depend on which one served)
        "api_key",
        "openai_api_key",
        "base_url",
        "api_base",
        "organization",
        "default_headers",
        "http_client",
        "http_async_client",
        "ls_structured_output_format",
    }
)
"""Call kwargs left out of the key."""


@dataclass(frozen=True, slots=True)
class RequestKeys:
    """A request's exact key, its shape key and the text a semantic lookup embeds.

    ``text`` is empty when the request is not one a semantic lookup answers: its last
    message is not the user's (a tool result, an assistant prefix) or holds no text."""

    exact: str
    shape: str
    text: str


def scope_digest(scope: str) -> str:
    """The scope as stored: a hash, so a tenant's name or key id is not readable in the cache."""
    return hashlib.sha256(b"scope\x00" + scope.encode("utf-8", "surrogatepass")).hexdigest()


def _jsonable(value: Any) -> Any:
    """A JSON-safe, order-stable form of ``value`` (pydantic classes and tools by their schema)."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted(str(v) for v in value)
    if isinstance(value, type) and hasattr(value, "model_json_schema"):
        return {"pydantic": value.__name__, "schema": _jsonable(value.model_json_schema())}
    try:
        from langchain_core.utils.function_calling import convert_to_openai_tool

        return _jsonable(convert_to_openai_tool(value))
    except Exception:
        return f"{type(value).__module__}.{type(value).__qualname__}:{value!r}"


_SENT_EXTRAS = ("__openai_role__", "reasoning_content")
"""``additional_kwargs`` a provider format sends (a system prompt as the developer role; Ollama's
thinking sent back): they change the prompt, so they change the key. Others (a refusal, parsed
output) are the provider's answer, never sent."""


def canonical_messages(messages: Sequence[BaseMessage]) -> list[dict[str, Any]]:
    """What of each message changes the answer (never ids, response metadata or usage)."""
    out: list[dict[str, Any]] = []
    for m in messages:
        item: dict[str, Any] = {"type": m.type, "content": _jsonable(m.content)}
        if m.name:
            item["name"] = m.name
        calls = getattr(m, "tool_calls", None)
        if calls:
            item["tool_calls"] = [
                {"name": c.get("name"), "args": _jsonable(c.get("args")), "id": c.get("id")} for c in calls
            ]
        call_id = getattr(m, "tool_call_id", None)
        if call_id:
            item["tool_call_id"] = call_id
        if getattr(m, "status", "success") != "success":
            item["status"] = m.status  # type: ignore[attr-defined]  # a failed tool: Anthropic is told is_error
        sent = {k: m.additional_kwargs[k] for k in _SENT_EXTRAS if m.additional_kwargs.get(k) is not None}
        if sent:
            item["extras"] = _jsonable(sent)
        role = getattr(m, "role", None)
        if isinstance(role, str):
            item["role"] = role
        out.append(item)
    return out


def _digest(kind: str, payload: Any) -> str:
    text = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(kind.encode() + b"\x00" + text.encode("utf-8", "surrogatepass")).hexdigest()


def _text_of(message: BaseMessage) -> str:
    return " ".join(text_parts(message.content))


def _beyond_text(messages: Sequence[BaseMessage]) -> list[dict[str, Any]]:
    """The embedded turns without their text: every other block (image, audio, file), tool calls, names."""
    out = []
    for item in canonical_messages(messages):
        content = item.pop("content")
        if isinstance(content, list):
            item["blocks"] = [b for b in content if not (isinstance(b, str) or _is_text_block(b))]
        out.append(item)
    return out


def _is_text_block(block: Any) -> bool:
    return isinstance(block, dict) and block.get("type") == "text" and isinstance(block.get("text"), str)


_SENTENCE_END = frozenset(".?!:;\n")
_TOKEN = re.compile(r"\d+(?:[.,]\d+)*|[^\W\d_][\w'-]*")


def salient_terms(text: str) -> list[str]:
    """The numbers and names in ``text`` (capitalised words not opening a sentence; not "I"), sorted, lowercased.

    Embeddings place questions that differ in one number or name very close together
    (crude ones closer than true paraphrases), so these must match exactly for a
    semantic hit: they are part of the shape.
    """
    terms: set[str] = set()
    opening = True
    position = 0
    for match in _TOKEN.finditer(text):
        between = text[position : match.start()]
        opening = opening or any(c in _SENTENCE_END for c in between)
        position = match.end()
        word = match.group()
        if word[0].isdigit():
            terms.add(word.replace(",", ""))
        elif word[0].isupper() and not opening and word != "I" and not word.startswith("I'"):
            terms.add(word.lower())
        opening = False
    return sorted(terms)


def request_keys(
    scope: str,
    messages: Sequence[BaseMessage],
    *,
    params: Mapping[str, Any],
    tools: Sequence[Any] | None = None,
    tool_kwargs: Mapping[str, Any] | None = None,
    response_format: Any = None,
    stop: Sequence[str] | None = None,
    last_turns: int = 1,
    router: str = "",
) -> RequestKeys:
    """The exact key, the shape key and the embedded text of one request in ``scope``.

    ``last_turns``: how many of the last non-system messages the semantic text holds
    (the shape already pins the system prompt). ``router``: the name of the router asked
    (its deployments are not in the key, but which router answers is: two routers sharing
    one store, such as a server's "smart" and "cheap", never serve each other's answers).
    """
    answer_params = {k: v for k, v in params.items() if k not in IGNORED_PARAMS}
    system = [m for m in messages if m.type == "system"]
    turns = [m for m in messages if m.type != "system"]
    embedded, history = turns[-max(1, last_turns) :], turns[: -max(1, last_turns)]
    text = "\n".join(f"{m.type}: {_text_of(m)}" if len(embedded) > 1 else _text_of(m) for m in embedded)
    shape_payload = {
        "scope": scope_digest(scope),
        "router": router,
        # a paraphrase never crosses a change of number or name: "capital of France" is not "of Germany"
        "terms": salient_terms(text),
        "system": canonical_messages(system),
        # earlier turns must match exactly: "tell me more" after two different questions is no paraphrase
        "history": canonical_messages(history),
        # only the embedded turns' text is compared: their images, files and tool calls must match exactly
        # ("what is in this picture?" about another picture is no paraphrase)
        "beyond_text": _beyond_text(embedded),
        "tools": _jsonable(list(tools) if tools else []),
        "tool_kwargs": _jsonable(dict(tool_kwargs or {})),
        "response_format": _jsonable(response_format),
        "params": _jsonable(answer_params),
        "stop": list(stop or []),
    }
    shape = _digest("shape", shape_payload)
    exact = _digest("exact", {"shape": shape, "messages": canonical_messages(messages)})
    semantic = bool(embedded) and embedded[-1].type == "human" and bool(text.strip())
    return RequestKeys(exact=exact, shape=shape, text=text if semantic else "")
