"""A cached answer as stored (plain JSON, never pickled objects) and as handed back: a message or chunks.

Only what the caller reads is kept: the text, tool calls, the served model's name and
provider, the finish reason, and the usage the original call was billed (for the
record; a hit itself costs nothing). Provider headers, request ids and anything else in
``response_metadata`` are dropped, so no credential or tenant detail can ride along.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from langchain_core.messages import AIMessage, AIMessageChunk
from langchain_core.messages.ai import UsageMetadata
from langchain_core.messages.tool import tool_call_chunk
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult

__all__ = ["CorruptEntryError", "Hit", "answer_chunks", "answer_result", "dump_answer", "load_answer"]

_KEPT_METADATA = ("model_name", "model_provider", "finish_reason", "stop_reason", "deployment")
_CHUNK_CHARS = 24
"""Characters per streamed chunk of a cached answer (a few words, like a provider's deltas)."""
ZERO_USAGE: UsageMetadata = {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0}


class CorruptEntryError(ValueError):
    """A stored entry that cannot be read back (treated as a miss, and deleted)."""


def dump_answer(message: AIMessage) -> str:
    """The JSON stored for ``message``."""
    meta = {k: message.response_metadata[k] for k in _KEPT_METADATA if message.response_metadata.get(k) is not None}
    data = {
        "content": message.content,
        "tool_calls": [{"name": c["name"], "args": c["args"], "id": c.get("id")} for c in message.tool_calls],
        "metadata": meta,
        "usage": dict(message.usage_metadata) if message.usage_metadata else None,
    }
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def load_answer(text: str | bytes) -> dict[str, Any]:
    """The stored answer, checked; :class:`CorruptEntryError` when it is not one."""
    try:
        data = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CorruptEntryError(f"unreadable cache entry: {exc}") from None
    if not isinstance(data, dict):
        raise CorruptEntryError("cache entry is not an object")
    content, calls, meta = data.get("content"), data.get("tool_calls"), data.get("metadata")
    if not isinstance(content, (str, list)) or not isinstance(calls, list) or not isinstance(meta, dict):
        raise CorruptEntryError("cache entry lacks content, tool_calls or metadata")
    if isinstance(content, list) and not all(isinstance(block, (str, dict)) for block in content):
        raise CorruptEntryError("cache entry content holds a block that is neither text nor an object")
    for call in calls:
        if (
            not isinstance(call, dict)
            or not isinstance(call.get("name"), str)
            or not isinstance(call.get("args"), dict)
            or not isinstance(call.get("id"), (str, type(None)))
        ):
            raise CorruptEntryError("cache entry has a malformed tool call")
    if not isinstance(data.get("usage"), (dict, type(None))):
        raise CorruptEntryError("cache entry usage is not an object")
    try:  # whatever else a planted or damaged row holds must fail here, as a miss, never in the caller's call
        answer_result(data, "exact", 1.0)
    except Exception as exc:
        raise CorruptEntryError(f"cache entry is not a message: {type(exc).__name__}") from None
    return data


@dataclass(frozen=True, slots=True)
class Hit:
    """A cached answer found for a call: the stored data, the layer that found it and the similarity."""

    data: dict[str, Any]
    layer: str
    similarity: float

    def result(self) -> ChatResult:
        return answer_result(self.data, self.layer, self.similarity)

    def chunks(self) -> Iterator[ChatGenerationChunk]:
        return answer_chunks(self.data, self.layer, self.similarity)


def _metadata(data: dict[str, Any], layer: str, similarity: float) -> dict[str, Any]:
    meta = dict(data["metadata"])
    served_by = meta.pop("deployment", None)
    meta.update(
        {
            "cache": layer,
            "cache_similarity": round(similarity, 6),
            "cached": True,
            "cached_from": served_by,
            "attempts": 0,
            "latency_ms": 0.0,
        }
    )
    if data.get("usage"):
        meta["cached_usage"] = data["usage"]
    return meta


def answer_result(data: dict[str, Any], layer: str, similarity: float) -> ChatResult:
    """A cached answer as the result of a call: zero usage, ``response_metadata["cache"]`` = ``layer``."""
    message = AIMessage(
        content=data["content"],
        tool_calls=[
            {"name": c["name"], "args": c["args"], "id": c.get("id"), "type": "tool_call"} for c in data["tool_calls"]
        ],
        response_metadata=_metadata(data, layer, similarity),
        usage_metadata=ZERO_USAGE,
    )
    return ChatResult(generations=[ChatGeneration(message=message)])


def answer_chunks(data: dict[str, Any], layer: str, similarity: float) -> Iterator[ChatGenerationChunk]:
    """A cached answer streamed back: the text in pieces, each tool call whole, then a last chunk with metadata."""
    content = data["content"]
    if isinstance(content, str):
        for start in range(0, len(content), _CHUNK_CHARS):
            yield ChatGenerationChunk(message=AIMessageChunk(content=content[start : start + _CHUNK_CHARS]))
    elif content:
        yield ChatGenerationChunk(message=AIMessageChunk(content=content))
    for index, call in enumerate(data["tool_calls"]):
        piece = tool_call_chunk(name=call["name"], args=json.dumps(call["args"]), id=call.get("id"), index=index)
        yield ChatGenerationChunk(message=AIMessageChunk(content="", tool_call_chunks=[piece]))
    last = AIMessageChunk(
        content="",
        response_metadata=_metadata(data, layer, similarity),
        usage_metadata=ZERO_USAGE,
        chunk_position="last",
    )
    yield ChatGenerationChunk(message=last)
