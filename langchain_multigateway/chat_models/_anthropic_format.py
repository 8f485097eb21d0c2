"""Conversion between LangChain messages and Anthropic's Messages API format."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

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
from langchain_core.messages.ai import InputTokenDetails, UsageMetadata
from langchain_core.utils.function_calling import convert_to_openai_tool

from langchain_multigateway.chat_models._input_blocks import INPUT_BLOCK_TYPES, input_block
from langchain_multigateway.chat_models._openai_format import ToolChoice

__all__ = [
    "ERROR_TYPE_STATUS",
    "messages_to_anthropic",
    "tool_choice_to_anthropic",
    "tools_to_anthropic",
    "usage_from_anthropic",
]

# Anthropic's error types and the HTTP status each comes with (for errors sent
# inside a 200 stream, which carry only the type).
ERROR_TYPE_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}

_ASSISTANT_ONLY_BLOCKS = ("thinking", "redacted_thinking", "server_tool_use")


def _image_block(block: Mapping[str, Any]) -> dict[str, Any]:
    """LangChain / OpenAI image blocks as an Anthropic ``image`` block."""
    if isinstance(block.get("source"), Mapping):
        return {"type": "image", "source": dict(block["source"])}
    url: Any = None
    if block.get("type") == "image_url":
        image_url = block.get("image_url")
        url = image_url.get("url") if isinstance(image_url, Mapping) else image_url
    else:
        data = block.get("base64") or block.get("data")
        if isinstance(data, str) and block.get("source_type", "base64") == "base64":
            media = block.get("mime_type") or block.get("media_type") or "image/png"
            return {"type": "image", "source": {"type": "base64", "media_type": media, "data": data}}
        url = block.get("url")
    if isinstance(url, str) and url.startswith("data:") and ";base64," in url:
        header, data = url.split(";base64,", 1)
        return {"type": "image", "source": {"type": "base64", "media_type": header[5:] or "image/png", "data": data}}
    if isinstance(url, str) and url:
        return {"type": "image", "source": {"type": "url", "url": url}}
    msg = f"Unsupported image block: expected base64 data or a URL, got keys {sorted(block)}"
    raise ValueError(msg)


def _content_blocks(content: str | list[Any], *, assistant: bool = False) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks: list[dict[str, Any]] = []
    for block in content:
        if isinstance(block, str):
            if block:
                blocks.append({"type": "text", "text": block})
            continue
        kind = block.get("type")
        if kind == "text":
            if block.get("text"):
                blocks.append({k: v for k, v in block.items() if k in ("type", "text", "cache_control", "citations")})
        elif kind in INPUT_BLOCK_TYPES and not isinstance(block.get("source"), Mapping):
            blocks.append(input_block("anthropic", block))  # standard data blocks, or a typed refusal
        elif kind in ("image", "image_url"):
            image = _image_block(block)
            if block.get("cache_control"):
                image["cache_control"] = block["cache_control"]
            blocks.append(image)
        elif kind == "reasoning":
            if assistant and (thinking := _signed_thinking(block)) is not None:
                blocks.append(thinking)
        elif kind in ("tool_use", "tool_call", "tool_call_chunk", "function_call"):
            continue  # tool calls come from message.tool_calls
        elif kind == "refusal":  # an OpenAI answer's refusal: what the assistant said, as text
            if block.get("refusal"):
                blocks.append({"type": "text", "text": str(block["refusal"])})
        elif isinstance(kind, str) and kind.endswith("_call"):
            continue  # an OpenAI built-in tool call (web_search_call, ...): run by OpenAI, its result is in the text
        elif kind in _ASSISTANT_ONLY_BLOCKS:
            if assistant:  # thinking must go back unchanged with its signature
                blocks.append({k: v for k, v in block.items() if k != "index"})
        else:
            blocks.append({k: v for k, v in block.items() if k != "index"})
    return blocks


def _signed_thinking(block: Mapping[str, Any]) -> dict[str, Any] | None:
    """A standard ``reasoning`` block (``output_version="v1"``) as the thinking block it came from.

    Anthropic accepts earlier thinking back only with its signature (it checks it), so a
    reasoning block that carries one goes back as ``thinking``; one without (another
    provider's reasoning, a summary) cannot be sent and is left out.
    """
    extras = block.get("extras")
    signature = extras.get("signature") if isinstance(extras, Mapping) else None
    if not isinstance(signature, str) or not signature:
        return None
    return {"type": "thinking", "thinking": str(block.get("reasoning") or ""), "signature": signature}


def _tool_result(message: ToolMessage) -> dict[str, Any]:
    raw = message.content
    content: str | list[dict[str, Any]] = raw if isinstance(raw, str) else _content_blocks(raw)
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": message.tool_call_id, "content": content}
    if message.status == "error":
        block["is_error"] = True
    return block


def _tool_use(call: ToolCall | InvalidToolCall) -> dict[str, Any]:
    args = call.get("args")
    if isinstance(args, str):
        try:
            args = json.loads(args) if args.strip() else {}
        except json.JSONDecodeError:
            args = {}
    return {"type": "tool_use", "id": call.get("id"), "name": call.get("name"), "input": args or {}}


def messages_to_anthropic(
    messages: Sequence[BaseMessage],
) -> tuple[str | list[dict[str, Any]] | None, list[dict[str, Any]]]:
    """LangChain messages as Anthropic's ``(system, messages)``.

    System messages are hoisted into the top-level ``system``; tool results
    become ``tool_result`` blocks in user turns; assistant tool calls become
    ``tool_use`` blocks; consecutive turns of the same role are merged, as the
    API requires alternating roles.
    """
    system_blocks: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for message in messages:
        role: str
        blocks: list[dict[str, Any]]
        if isinstance(message, SystemMessage):
            system_blocks.extend(_content_blocks(message.content))
            continue
        if isinstance(message, HumanMessage):
            role, blocks = "user", _content_blocks(message.content)
        elif isinstance(message, AIMessage):
            role = "assistant"
            blocks = _content_blocks(message.content, assistant=True)
            blocks += [_tool_use(c) for c in message.tool_calls]
            blocks += [_tool_use(c) for c in message.invalid_tool_calls]
        elif isinstance(message, ToolMessage):
            role, blocks = "user", [_tool_result(message)]
        elif isinstance(message, ChatMessage) and message.role in ("user", "assistant"):
            role, blocks = message.role, _content_blocks(message.content)
        else:
            msg = f"Cannot send a {type(message).__name__} to Anthropic; use System/Human/AI/Tool messages."
            raise TypeError(msg)
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    for turn in turns:
        # Tool results must open a user turn; plain one-text turns go as strings.
        if turn["role"] == "user":
            turn["content"].sort(key=lambda b: b.get("type") != "tool_result")
        content = turn["content"]
        if len(content) == 1 and content[0].get("type") == "text" and set(content[0]) == {"type", "text"}:
            turn["content"] = content[0]["text"]
    system: str | list[dict[str, Any]] | None = None
    if system_blocks:
        if all(set(b) == {"type", "text"} for b in system_blocks):
            system = "\n\n".join(b["text"] for b in system_blocks)
        else:
            system = system_blocks
    return system, turns


def tools_to_anthropic(tools: Sequence[Any]) -> list[dict[str, Any]]:
    """Any LangChain tool description as Anthropic tools (``name``, ``description``, ``input_schema``)."""
    out: list[dict[str, Any]] = []
    for tool in tools:
        # Already Anthropic-shaped, or a server tool ({"type": "web_search_20250305", "name": ...});
        # a bare JSON schema ({"type": "object", "title": ...}) is converted like any other tool.
        if isinstance(tool, Mapping) and (
            "input_schema" in tool or tool.get("type") not in (None, "function", "object")
        ):
            out.append(dict(tool))
            continue
        fn = convert_to_openai_tool(tool)["function"]
        spec: dict[str, Any] = {
            "name": fn["name"],
            "input_schema": fn.get("parameters") or {"type": "object", "properties": {}},
        }
        if fn.get("description"):
            spec["description"] = fn["description"]
        out.append(spec)
    return out


def tool_choice_to_anthropic(
    tool_choice: ToolChoice, tool_names: Sequence[str], *, parallel_tool_calls: bool | None = None
) -> dict[str, Any] | None:
    """LangChain's tool_choice spellings as Anthropic's ``{"type": "auto"|"any"|"tool"|"none"}``."""
    choice: dict[str, Any] | None
    if tool_choice is None or tool_choice is False:
        choice = None
    elif tool_choice is True:
        choice = {"type": "tool", "name": tool_names[0]} if len(tool_names) == 1 else {"type": "any"}
    elif isinstance(tool_choice, dict):
        if tool_choice.get("type") == "function":  # OpenAI's spelling
            choice = {"type": "tool", "name": tool_choice["function"]["name"]}
        else:
            choice = dict(tool_choice)
    elif tool_choice in ("auto", "none", "any"):
        choice = {"type": tool_choice}
    elif tool_choice == "required":
        choice = {"type": "any"}
    elif tool_choice in tool_names:
        choice = {"type": "tool", "name": tool_choice}
    else:
        msg = f"tool_choice={tool_choice!r} names no bound tool; use 'auto', 'any', 'none' or one of {list(tool_names)}"
        raise ValueError(msg)
    if parallel_tool_calls is False:
        choice = choice or {"type": "auto"}
        if choice["type"] != "none":
            choice["disable_parallel_tool_use"] = True
    return choice


def usage_from_anthropic(usage: Mapping[str, Any] | None) -> UsageMetadata | None:
    """Anthropic usage as LangChain's: ``input_tokens`` is the total input, cache reads and writes included.

    Cache writes split by time to live (``cache_creation.ephemeral_5m_input_tokens`` /
    ``ephemeral_1h_input_tokens``, priced differently) are kept under those names in
    ``input_token_details``, and the generic ``cache_creation`` is then 0 so that the details
    never count a write twice (langchain-anthropic's convention).
    """
    if not usage:
        return None
    base = _tokens(usage.get("input_tokens"))
    cache_read = usage.get("cache_read_input_tokens")
    cache_creation = usage.get("cache_creation_input_tokens")
    details = InputTokenDetails()
    if cache_read is not None:
        details["cache_read"] = _tokens(cache_read)
    if cache_creation is not None:
        details["cache_creation"] = _tokens(cache_creation)
    by_ttl = usage.get("cache_creation")
    split = 0
    if isinstance(by_ttl, Mapping):
        for key in ("ephemeral_5m_input_tokens", "ephemeral_1h_input_tokens"):
            if by_ttl.get(key) is not None:
                details[key] = _tokens(by_ttl[key])  # type: ignore[typeddict-unknown-key]
                split += _tokens(by_ttl[key])
        if split:
            details["cache_creation"] = 0
    input_tokens = base + details.get("cache_read", 0) + (split or details.get("cache_creation", 0))
    output_tokens = _tokens(usage.get("output_tokens"))
    result = UsageMetadata(
        input_tokens=input_tokens, output_tokens=output_tokens, total_tokens=input_tokens + output_tokens
    )
    if details:
        result["input_token_details"] = details
    return result


def _tokens(value: Any) -> int:
    # A count of the wrong type raises here, so a malformed answer is reported, not zeroed.
    return int(value or 0)


def text_of(blocks: Sequence[Mapping[str, Any]]) -> str:
    """The text blocks of a response, joined."""
    return "".join(str(b.get("text", "")) for b in blocks if b.get("type") == "text")
