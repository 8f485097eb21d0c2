"""Conversion between LangChain messages and the OpenAI chat wire format.

OpenAI's format is the lingua franca here: the OpenAI and Mistral providers
speak it directly, and the router counts tokens on it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    ChatMessage,
    FunctionMessage,
    HumanMessage,
    InvalidToolCall,
    SystemMessage,
    ToolCall,
    ToolMessage,
)
from langchain_core.messages.ai import InputTokenDetails, OutputTokenDetails, UsageMetadata
from langchain_core.output_parsers.openai_tools import make_invalid_tool_call, parse_tool_call
from langchain_core.utils.function_calling import convert_to_openai_tool

from langchain_multigateway.chat_models._input_blocks import INPUT_BLOCK_TYPES, input_block

__all__ = [
    "ToolChoice",
    "content_to_openai",
    "content_with_reasoning",
    "message_to_openai",
    "messages_to_openai",
    "parse_tool_calls",
    "tool_call_to_openai",
    "tool_choice_to_openai",
    "tools_to_openai",
    "usage_from_openai",
]

ToolChoice = str | bool | dict[str, Any] | None

_SAID = ("text", "refusal")  # the blocks of an AI message sent back as its text


def content_to_openai(content: str | list[Any], provider: str | None = "openai") -> str | list[dict[str, Any]]:
    """Message content as OpenAI's string or list of content parts.

    Standard data blocks (image, file, audio, video, text-plain) take ``provider``'s shape
    or are refused (``_input_blocks``); ``provider=None`` keeps them as they are (token counting).
    """
    if isinstance(content, str):
        return content
    parts: list[dict[str, Any]] = []
    for block in content:
        if isinstance(block, str):
            parts.append({"type": "text", "text": block})
            continue
        kind = block.get("type")
        if kind == "text":
            parts.append({"type": "text", "text": block["text"]})
        elif kind == "image_url":
            url = block["image_url"]
            parts.append({"type": "image_url", "image_url": url if isinstance(url, dict) else {"url": url}})
        elif kind in INPUT_BLOCK_TYPES:
            parts.append(input_block(provider, block) if provider else dict(block))
        elif kind in ("tool_use", "tool_call", "reasoning", "thinking"):
            continue  # carried in tool_calls / not sent back
        else:
            parts.append(dict(block))
    return parts


def tool_call_to_openai(call: ToolCall | InvalidToolCall) -> dict[str, Any]:
    """One LangChain tool call as an OpenAI ``tool_calls`` entry."""
    args = call.get("args")
    arguments = args if isinstance(args, str) else json.dumps(args or {}, ensure_ascii=False)
    return {"id": call.get("id"), "type": "function", "function": {"name": call.get("name"), "arguments": arguments}}


def message_to_openai(message: BaseMessage, provider: str | None = "openai") -> dict[str, Any]:
    """One LangChain message as an OpenAI chat message dict (``provider``: see :func:`content_to_openai`)."""
    out: dict[str, Any]
    if isinstance(message, SystemMessage):
        out = {"role": "system", "content": content_to_openai(message.content, provider)}
    elif isinstance(message, HumanMessage):
        out = {"role": "user", "content": content_to_openai(message.content, provider)}
    elif isinstance(message, AIMessage):
        content = content_to_openai(message.content, provider)
        if isinstance(content, list):
            # a refusal (block of a Responses answer) is what the assistant said: sent as its text
            content = "".join(p.get("text") or p.get("refusal") or "" for p in content if p.get("type") in _SAID)
        calls = [tool_call_to_openai(c) for c in message.tool_calls]
        calls += [tool_call_to_openai(c) for c in message.invalid_tool_calls]
        out = {"role": "assistant", "content": content or (None if calls else "")}
        if calls:
            out["tool_calls"] = calls
    elif isinstance(message, ToolMessage):
        content = content_to_openai(message.content, provider)
        if isinstance(content, list):
            # Tool results are text on most OpenAI-compatible servers.
            texts = [p.get("text", "") if p.get("type") == "text" else json.dumps(p) for p in content]
            content = "\n".join(texts)
        out = {"role": "tool", "content": content, "tool_call_id": message.tool_call_id}
    elif isinstance(message, FunctionMessage):
        out = {"role": "function", "content": message.content, "name": message.name}
    elif isinstance(message, ChatMessage):
        out = {"role": message.role, "content": content_to_openai(message.content, provider)}
    else:
        msg = f"Cannot send a {type(message).__name__} to a chat model; use System/Human/AI/Tool messages."
        raise TypeError(msg)
    if message.name and out["role"] in ("user", "assistant", "system"):
        out["name"] = message.name
    return out


def messages_to_openai(messages: Sequence[BaseMessage], provider: str | None = "openai") -> list[dict[str, Any]]:
    """LangChain messages as OpenAI chat messages (``provider``: see :func:`content_to_openai`)."""
    return [message_to_openai(m, provider) for m in messages]


def tools_to_openai(tools: Sequence[Any], *, strict: bool | None = None) -> list[dict[str, Any]]:
    """Any LangChain tool description (BaseTool, pydantic, function, dict) as OpenAI tools."""
    return [convert_to_openai_tool(t, strict=strict) for t in tools]


def tool_choice_to_openai(tool_choice: ToolChoice, tool_names: Sequence[str]) -> str | dict[str, Any] | None:
    """Normalise LangChain's tool_choice spellings to OpenAI's.

    ``"any"`` and ``True`` mean "some tool" (``"required"``; ``True`` with one
    tool names it); a tool's name selects that function.
    """
    if tool_choice is None or tool_choice is False:
        return None
    if tool_choice is True:
        if len(tool_names) == 1:
            return {"type": "function", "function": {"name": tool_names[0]}}
        return "required"
    if isinstance(tool_choice, dict):
        return tool_choice
    if tool_choice in ("auto", "none", "required"):
        return tool_choice
    if tool_choice == "any":
        return "required"
    if tool_choice in tool_names:
        return {"type": "function", "function": {"name": tool_choice}}
    msg = (
        f"tool_choice={tool_choice!r} names no bound tool; use 'auto', 'none', 'required', 'any' "
        f"or one of {list(tool_names)}"
    )
    raise ValueError(msg)


def parse_tool_calls(raw_calls: Sequence[Mapping[str, Any]] | None) -> tuple[list[ToolCall], list[InvalidToolCall]]:
    """OpenAI ``tool_calls`` entries as LangChain tool calls; bad JSON becomes invalid calls."""
    calls: list[ToolCall] = []
    invalid: list[InvalidToolCall] = []
    for raw in raw_calls or []:
        raw_dict = dict(raw)
        fn = raw_dict.get("function") or {}
        if isinstance(fn.get("arguments"), dict):
            # Mistral may send already-decoded arguments.
            raw_dict = {**raw_dict, "function": {**fn, "arguments": json.dumps(fn["arguments"])}}
        try:
            parsed = parse_tool_call(raw_dict, return_id=True)
        except Exception as exc:
            invalid.append(make_invalid_tool_call(raw_dict, str(exc)))
            continue
        if parsed is not None:
            calls.append(parsed)  # type: ignore[arg-type]
    return calls, invalid


def content_with_reasoning(
    text: str, reasoning: Any, tool_calls: Sequence[ToolCall] = ()
) -> str | list[str | dict[Any, Any]]:
    """An answer's content: the text as is, or, when the server sent ``reasoning_content``
    (vLLM, llama.cpp, DeepSeek), standard blocks: reasoning, text, then the tool calls.

    Blocks, because langchain-core reads an ``"openai"`` message's ``content_blocks`` from
    its content (a string gives no reasoning block); the tool calls are repeated as
    ``tool_call`` blocks so ``content_blocks`` still lists them (every provider's request
    builder skips those blocks: they travel in ``tool_calls``).
    """
    if not (reasoning and isinstance(reasoning, str)):
        return text
    blocks: list[str | dict[Any, Any]] = [{"type": "reasoning", "reasoning": reasoning}]
    if text:
        blocks.append({"type": "text", "text": text})
    blocks += [{"type": "tool_call", "id": c.get("id"), "name": c["name"], "args": c["args"]} for c in tool_calls]
    return blocks


def usage_from_openai(usage: Mapping[str, Any] | None) -> UsageMetadata | None:
    """OpenAI (and Mistral) ``usage`` as LangChain usage metadata."""
    if not usage:
        return None
    input_tokens = int(usage.get("prompt_tokens") or 0)
    output_tokens = int(usage.get("completion_tokens") or 0)
    total = int(usage.get("total_tokens") or input_tokens + output_tokens)
    result = UsageMetadata(input_tokens=input_tokens, output_tokens=output_tokens, total_tokens=total)
    prompt_details = usage.get("prompt_tokens_details") or {}
    input_details = InputTokenDetails()
    if prompt_details.get("cached_tokens") is not None:
        input_details["cache_read"] = int(prompt_details["cached_tokens"])
    if prompt_details.get("audio_tokens") is not None:
        input_details["audio"] = int(prompt_details["audio_tokens"])
    if input_details:
        result["input_token_details"] = input_details
    completion_details = usage.get("completion_tokens_details") or {}
    output_details = OutputTokenDetails()
    if completion_details.get("reasoning_tokens") is not None:
        output_details["reasoning"] = int(completion_details["reasoning_tokens"])
    if completion_details.get("audio_tokens") is not None:
        output_details["audio"] = int(completion_details["audio_tokens"])
    if output_details:
        result["output_token_details"] = output_details
    return result


StructuredMethod = Literal["function_calling", "json_schema", "json_mode"]
