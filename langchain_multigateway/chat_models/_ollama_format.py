"""Conversion between LangChain messages and Ollama's native ``/api/chat`` format."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    ChatMessage,
    HumanMessage,
    InvalidToolCall,
    SystemMessage,
    ToolCall,
    ToolMessage,
)
from langchain_core.messages.ai import UsageMetadata

from langchain_multigateway.chat_models._input_blocks import INPUT_BLOCK_TYPES, ollama_input

__all__ = [
    "OPTION_FIELDS",
    "DEFAULT_OLLAMA_HOST",
    "messages_to_ollama",
    "normalize_host",
    "parse_ollama_tool_calls",
    "usage_from_ollama",
]

# Model fields sent in Ollama's "options" object, under the same names.
OPTION_FIELDS = (
    "num_ctx",
    "seed",
    "top_p",
    "top_k",
    "min_p",
    "repeat_penalty",
    "repeat_last_n",
    "presence_penalty",
    "frequency_penalty",
    "mirostat",
    "mirostat_eta",
    "mirostat_tau",
    "num_gpu",
    "num_thread",
)

DEFAULT_OLLAMA_HOST = "http://localhost:11434"
DEFAULT_OLLAMA_PORT = 11434
DURATION_KEYS = ("total_duration", "load_duration", "prompt_eval_duration", "eval_duration")


def normalize_host(host: str | None) -> str:
    """``OLLAMA_HOST`` spellings (``host``, ``host:port``, ``http://host:port/``) as a base URL.

    A host without a scheme gets ``http://`` and, without a port, Ollama's
    11434; ``0.0.0.0`` (a bind-all address servers listen on) becomes
    ``127.0.0.1``, where a client can reach it.
    """
    if not host or not host.strip():
        return DEFAULT_OLLAMA_HOST
    raw = host.strip()
    has_scheme = "://" in raw
    parts = urlsplit(raw if has_scheme else f"http://{raw}")
    hostname = parts.hostname or "localhost"
    if hostname in ("0.0.0.0", "::"):
        hostname = "127.0.0.1"
    if ":" in hostname:
        hostname = f"[{hostname}]"
    port = parts.port
    if port is None and not has_scheme:
        port = DEFAULT_OLLAMA_PORT
    netloc = hostname if port is None else f"{hostname}:{port}"
    path = parts.path.rstrip("/")
    return f"{parts.scheme}://{netloc}{path}"


def _image_to_base64(block: Mapping[str, Any]) -> str:
    """Ollama takes raw base64 only; accept data URLs and LangChain image blocks."""
    kind = block.get("type")
    url: Any = None
    if kind == "image_url":
        image_url = block.get("image_url")
        url = image_url.get("url") if isinstance(image_url, Mapping) else image_url
    elif kind == "image":
        data = block.get("base64") or block.get("data")
        if isinstance(data, str) and block.get("source_type", "base64") == "base64":
            return data
        source = block.get("source")
        if isinstance(source, Mapping) and source.get("type") == "base64":
            return str(source["data"])
        url = block.get("url")
    if isinstance(url, str) and url.startswith("data:") and ";base64," in url:
        return url.split(";base64,", 1)[1]
    msg = (
        "Ollama takes images as base64 data (a LangChain image block with 'base64', or a data: URL); "
        f"download remote images first. Got {dict(block)!r:.120}"
    )
    raise ValueError(msg)


def _content_and_images(content: str | list[Any]) -> tuple[str, list[str]]:
    if isinstance(content, str):
        return content, []
    texts: list[str] = []
    images: list[str] = []
    for block in content:
        if isinstance(block, str):
            texts.append(block)
        elif block.get("type") == "text":
            texts.append(str(block.get("text", "")))
        elif block.get("type") in INPUT_BLOCK_TYPES and not isinstance(block.get("source"), Mapping):
            text, image = ollama_input(block)  # text-plain inlined, base64 images; the rest: a typed refusal
            texts.extend([text] if text is not None else [])
            images.extend([image] if image is not None else [])
        elif block.get("type") in ("image", "image_url"):
            images.append(_image_to_base64(block))
        elif block.get("type") in ("tool_use", "tool_call", "reasoning", "thinking", "function_call"):
            continue
        elif block.get("type") == "refusal":  # an OpenAI answer's refusal: what the assistant said
            texts.append(str(block.get("refusal") or ""))
        elif str(block.get("type")).endswith("_call"):
            continue  # an OpenAI built-in tool call (web_search_call, ...): run by OpenAI, its result is in the text
        else:
            msg = f"Ollama cannot take content blocks of type {block.get('type')!r}"
            raise ValueError(msg)
    return "".join(texts), images


def _arguments(args: Any) -> Any:
    if isinstance(args, str):
        try:
            return json.loads(args) if args.strip() else {}
        except json.JSONDecodeError:
            return args
    return args or {}


def messages_to_ollama(messages: Sequence[BaseMessage]) -> list[dict[str, Any]]:
    """LangChain messages as Ollama chat messages (images as base64, tool results by tool name)."""
    out: list[dict[str, Any]] = []
    tool_names: dict[str, str] = {}
    for message in messages:
        entry: dict[str, Any]
        if isinstance(message, SystemMessage):
            text, _ = _content_and_images(message.content)
            entry = {"role": "system", "content": text}
        elif isinstance(message, HumanMessage):
            text, images = _content_and_images(message.content)
            entry = {"role": "user", "content": text}
            if images:
                entry["images"] = images
        elif isinstance(message, AIMessage):
            text, _ = _content_and_images(message.content)
            entry = {"role": "assistant", "content": text}
            calls = []
            for call in [*message.tool_calls, *message.invalid_tool_calls]:
                if call.get("id") and call.get("name"):
                    tool_names[str(call["id"])] = str(call["name"])
                calls.append({"function": {"name": call.get("name"), "arguments": _arguments(call.get("args"))}})
            if calls:
                entry["tool_calls"] = calls
            thinking = message.additional_kwargs.get("reasoning_content")
            if isinstance(thinking, str) and thinking:
                entry["thinking"] = thinking
        elif isinstance(message, ToolMessage):
            if isinstance(message.content, str):
                text = message.content
            else:
                text = "\n".join(
                    b if isinstance(b, str) else str(b.get("text")) if b.get("type") == "text" else json.dumps(b)
                    for b in message.content
                )
            entry = {"role": "tool", "content": text}
            name = message.name or tool_names.get(message.tool_call_id)
            if name:
                entry["tool_name"] = name
        elif isinstance(message, ChatMessage):
            text, images = _content_and_images(message.content)
            entry = {"role": message.role, "content": text}
            if images:
                entry["images"] = images
        else:
            msg = f"Cannot send a {type(message).__name__} to Ollama; use System/Human/AI/Tool messages."
            raise TypeError(msg)
        out.append(entry)
    return out


def new_tool_call_id() -> str:
    """Ollama sends no tool-call ids; LangChain needs them to pair results with calls."""
    return f"call_{uuid.uuid4().hex[:24]}"


def parse_ollama_tool_calls(
    raw_calls: Sequence[Mapping[str, Any]] | None,
) -> tuple[list[ToolCall], list[InvalidToolCall]]:
    """Ollama ``tool_calls`` (arguments as objects, usually no ids) as LangChain tool calls."""
    calls: list[ToolCall] = []
    invalid: list[InvalidToolCall] = []
    for raw in raw_calls or []:
        fn = raw.get("function") or {}
        name = fn.get("name")
        call_id = str(raw.get("id") or new_tool_call_id())
        args = fn.get("arguments")
        if isinstance(args, str):
            try:
                args = json.loads(args) if args.strip() else {}
            except json.JSONDecodeError as exc:
                invalid.append(
                    InvalidToolCall(
                        name=name, args=fn.get("arguments"), id=call_id, error=str(exc), type="invalid_tool_call"
                    )
                )
                continue
        if args is None:
            args = {}
        if not isinstance(args, dict) or not isinstance(name, str):
            invalid.append(
                InvalidToolCall(
                    name=name if isinstance(name, str) else None,
                    args=json.dumps(args),
                    id=call_id,
                    error="tool call arguments are not a JSON object" if isinstance(name, str) else "no tool name",
                    type="invalid_tool_call",
                )
            )
            continue
        calls.append(ToolCall(name=name, args=args, id=call_id, type="tool_call"))
    return calls, invalid


def usage_from_ollama(data: Mapping[str, Any]) -> UsageMetadata | None:
    """``prompt_eval_count`` / ``eval_count`` as usage; None when the server sent neither."""
    if data.get("prompt_eval_count") is None and data.get("eval_count") is None:
        return None
    input_tokens = int(data.get("prompt_eval_count") or 0)
    output_tokens = int(data.get("eval_count") or 0)
    return UsageMetadata(
        input_tokens=input_tokens, output_tokens=output_tokens, total_tokens=input_tokens + output_tokens
    )


def ollama_metadata(data: Mapping[str, Any]) -> dict[str, Any]:
    """Ollama's timings (nanoseconds), done_reason and created_at, for response_metadata."""
    meta: dict[str, Any] = {key: data[key] for key in DURATION_KEYS if data.get(key) is not None}
    if data.get("done_reason"):
        meta["done_reason"] = data["done_reason"]
        meta["finish_reason"] = data["done_reason"]
    if data.get("created_at"):
        meta["created_at"] = data["created_at"]
    return meta
