"""Conversion between LangChain messages and OpenAI's Responses API (``POST /responses``).

Requests: LangChain messages become Responses *input items* (messages, ``function_call``
and ``function_call_output`` items, reasoning items sent back), and the chat-completions
shaped call parameters the rest of the gateway uses (``tools``, ``tool_choice``,
``response_format``, ``max_tokens``) are rewritten once, here, into the Responses spelling.

Answers: output items become an ``AIMessage`` whose content is a list of blocks that
langchain-core's ``"openai"`` block translator reads (``text``, ``reasoning`` with a
``summary``, ``function_call``), so ``content_blocks`` and ``output_version="v1"`` give
standard text, reasoning and tool-call blocks; ``tool_calls`` and ``usage_metadata`` are
filled as for chat completions.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, ChatMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.messages.ai import InputTokenDetails, OutputTokenDetails, UsageMetadata

from langchain_multigateway.chat_models._openai_format import content_to_openai, parse_tool_calls
from langchain_multigateway.errors import InvalidRequestError

__all__ = [
    "RESPONSES_ONLY_MODELS",
    "messages_after_response",
    "messages_to_responses",
    "needs_responses_api",
    "output_to_message_parts",
    "responses_body",
    "usage_from_responses",
]

logger = logging.getLogger("langchain_multigateway.chat_models")

RESPONSES_ONLY_MODELS = ("o1-pro", "o3-pro", "computer-use-preview")
"""Model-name prefixes OpenAI serves only on ``/responses``; :func:`needs_responses_api` adds
every ``gpt-5…-pro`` model and any name with ``codex`` or ``deep-research`` in it.

Why: the pro models (``o1-pro``, ``o3-pro``, ``gpt-5-pro``, ``gpt-5.2-pro``…) think for
minutes and OpenAI offers them only through the Responses API; the codex models
(``codex-mini-latest``, ``gpt-5-codex``, ``gpt-5.1-codex-max``…), the deep-research models and
``computer-use-preview`` are not offered on ``/chat/completions`` at all (a request there is
an error, not an answer).
"""

# Chat-completions parameters the Responses API does not have: refused (a user set them) …
_NOT_IN_RESPONSES = ("seed", "frequency_penalty", "presence_penalty", "logit_bias", "n", "logprobs")
# … or dropped with a warning: LangChain code passes ``stop`` to any chat model (ReAct
# prompts, ``bind(stop=...)``) and the Responses API has no stop sequences to honour it.
_DROPPED = ("stop",)


def needs_responses_api(model: str) -> bool:
    """Whether ``model`` is served only by the Responses API (see ``RESPONSES_ONLY_MODELS``)."""
    name = model.lower().rsplit("/", 1)[-1]
    if "codex" in name or "deep-research" in name or name.startswith(RESPONSES_ONLY_MODELS):
        return True
    return name.startswith("gpt-5") and re.search(r"-pro(-|$)", name) is not None


# ---------------------------------------------------------------------- requests
def messages_after_response(messages: Sequence[BaseMessage], response_id: str) -> list[BaseMessage]:
    """The messages after the AI message that answered as ``response_id``: with
    ``previous_response_id`` the server already holds everything up to it.

    Raises InvalidRequestError when no AI message carries that id (sending the whole
    history on top of the stored one would repeat it to the model).
    """
    for position in range(len(messages) - 1, -1, -1):
        message = messages[position]
        if isinstance(message, AIMessage) and response_id_of(message) == response_id:
            return list(messages[position + 1 :])
    msg = (
        f"previous_response_id={response_id!r} answers none of the messages given: pass the history "
        "that includes that AI message (or leave previous_response_id out to send the whole conversation)"
    )
    raise InvalidRequestError(msg, provider="openai", retryable=False)


def response_id_of(message: AIMessage) -> str | None:
    """The Responses API id (``resp_…``) an AI message was answered under, if any."""
    rid = message.response_metadata.get("id")
    return rid if isinstance(rid, str) and rid.startswith("resp_") else None


def _content_part(part: Mapping[str, Any], role: str) -> dict[str, Any]:
    """One chat-completions content part as a Responses input content part."""
    kind = part.get("type")
    if kind == "text":
        return {"type": "output_text" if role == "assistant" else "input_text", "text": part["text"]}
    if kind == "image_url":
        image = part["image_url"]
        url = image.get("url") if isinstance(image, Mapping) else image
        out = {"type": "input_image", "image_url": url}
        if isinstance(image, Mapping) and image.get("detail"):
            out["detail"] = image["detail"]
        else:
            out["detail"] = "auto"
        return out
    if kind == "file":
        file = dict(part.get("file") or {})
        return {"type": "input_file", **{k: v for k, v in file.items() if k in ("file_data", "file_id", "filename")}}
    if kind in ("input_text", "input_image", "input_file", "output_text"):
        return dict(part)  # already in the Responses spelling
    msg = (
        f"a {kind!r} content block cannot be sent to OpenAI's Responses API (it takes text, images "
        "and files); convert it to text or use chat completions (use_responses_api=False)"
    )
    raise InvalidRequestError(msg, provider="openai", retryable=False)


def _input_content(content: str | list[Any], role: str) -> str | list[dict[str, Any]]:
    converted = content_to_openai(content)
    if isinstance(converted, str):
        return converted
    return [_content_part(part, role) for part in converted]


def _reasoning_items(message: AIMessage) -> Iterator[dict[str, Any]]:
    """Reasoning items of an earlier Responses answer, sent back as the API asks (by id).

    Two spellings arrive: this module's own (``summary`` parts, and ``reasoning`` for an
    open model's raw reasoning text) and LangChain's v1 blocks (one block per summary
    part, its text in ``reasoning``, ``encrypted_content`` under ``extras``), which are
    joined back into one item per id.
    """
    if not isinstance(message.content, list):
        return
    items: dict[str, dict[str, Any]] = {}
    for block in message.content:
        if not (isinstance(block, Mapping) and block.get("type") == "reasoning"):
            continue
        rid = block.get("id")
        if not (isinstance(rid, str) and rid.startswith("rs_")):
            continue  # reasoning of another provider: not an item this API knows
        item = items.setdefault(rid, {"type": "reasoning", "id": rid, "summary": []})
        text = block.get("reasoning")
        if "summary" in block:
            item["summary"] += [
                {"type": "summary_text", "text": part.get("text", "")}
                for part in block.get("summary") or []
                if isinstance(part, Mapping)
            ]
            if isinstance(text, str) and text:  # an open model's own reasoning text
                item["content"] = [{"type": "reasoning_text", "text": text}]
        elif isinstance(text, str) and text:  # a v1 block: one summary part
            item["summary"].append({"type": "summary_text", "text": text})
        extras = block.get("extras")
        encrypted = block.get("encrypted_content") or (
            extras.get("encrypted_content") if isinstance(extras, Mapping) else None
        )
        if encrypted:
            item["encrypted_content"] = encrypted
    yield from items.values()


def _assistant_text(content: str | list[Any]) -> str:
    if isinstance(content, str):
        return content
    # a refusal block is what the assistant said: sent back as its text
    texts = [
        b if isinstance(b, str) else b.get("text") or b.get("refusal") or ""
        for b in content
        if isinstance(b, str) or _is_text(b)
    ]
    return "".join(texts)


def _is_text(block: Any) -> bool:
    return isinstance(block, Mapping) and block.get("type") in ("text", "output_text", "refusal")


def _message_items(message: BaseMessage) -> Iterator[dict[str, Any]]:
    """One LangChain message as Responses input items (an AI message may give several)."""
    if isinstance(message, SystemMessage):
        role = "developer" if message.additional_kwargs.get("__openai_role__") == "developer" else "system"
        yield {"type": "message", "role": role, "content": _input_content(message.content, role)}
    elif isinstance(message, HumanMessage):
        yield {"type": "message", "role": "user", "content": _input_content(message.content, "user")}
    elif isinstance(message, AIMessage):
        yield from _reasoning_items(message)
        text = _assistant_text(message.content)
        if text:
            yield {"type": "message", "role": "assistant", "content": text}
        for call in [*message.tool_calls, *message.invalid_tool_calls]:
            args = call.get("args")
            arguments = args if isinstance(args, str) else json.dumps(args or {}, ensure_ascii=False)
            yield {"type": "function_call", "call_id": call.get("id"), "name": call.get("name"), "arguments": arguments}
    elif isinstance(message, ToolMessage):
        content = content_to_openai(message.content)
        if isinstance(content, list):
            content = "\n".join(p.get("text", "") if p.get("type") == "text" else json.dumps(p) for p in content)
        yield {"type": "function_call_output", "call_id": message.tool_call_id, "output": content}
    elif isinstance(message, ChatMessage) and message.role in ("system", "developer", "user", "assistant"):
        role = message.role
        yield {"type": "message", "role": role, "content": _input_content(message.content, role)}
    else:
        msg = (
            f"Cannot send a {type(message).__name__} to OpenAI's Responses API; "
            "use System/Human/AI/Tool messages (or a ChatMessage with role system, developer, user or assistant)."
        )
        raise TypeError(msg)


def messages_to_responses(messages: Sequence[BaseMessage]) -> list[dict[str, Any]]:
    """LangChain messages as Responses ``input`` items."""
    return [item for message in messages for item in _message_items(message)]


def _tool(tool: Mapping[str, Any]) -> dict[str, Any]:
    """A chat-completions tool (``{"type": "function", "function": {...}}``) as a Responses tool."""
    if tool.get("type") == "function" and isinstance(tool.get("function"), Mapping):
        fn = tool["function"]
        out = {"type": "function", "name": fn["name"], "parameters": fn.get("parameters") or {"type": "object"}}
        for key in ("description", "strict"):
            if fn.get(key) is not None:
                out[key] = fn[key]
        return out
    return dict(tool)  # already a Responses tool (function or built-in, e.g. web_search)


def _tool_choice(choice: Any) -> Any:
    if isinstance(choice, Mapping) and choice.get("type") == "function" and isinstance(choice.get("function"), Mapping):
        return {"type": "function", "name": choice["function"]["name"]}
    return choice


def _text_format(response_format: Mapping[str, Any]) -> dict[str, Any]:
    """A chat-completions ``response_format`` as the Responses ``text.format``."""
    kind = response_format.get("type")
    if kind == "json_schema":
        spec = response_format.get("json_schema") or {}
        out = {"type": "json_schema", "name": spec.get("name") or "response", "schema": spec.get("schema") or {}}
        if spec.get("strict") is not None:
            out["strict"] = spec["strict"]
        if spec.get("description"):
            out["description"] = spec["description"]
        return out
    return dict(response_format)  # {"type": "json_object"} / {"type": "text"} are spelled alike


def responses_body(params: dict[str, Any], messages: Sequence[BaseMessage], *, stream: bool) -> dict[str, Any]:
    """The ``/responses`` body for a call's parameters (chat-completions spelling) and messages.

    ``previous_response_id`` sends only the messages after that answer; ``reasoning_effort``
    becomes ``reasoning.effort``; ``max_tokens`` / ``max_completion_tokens`` become
    ``max_output_tokens``; ``stop`` is dropped with a warning (no such parameter here).
    """
    body = {k: v for k, v in params.items() if v is not None}
    refused = [name for name in _NOT_IN_RESPONSES if name in body]
    if refused:
        msg = (
            f"OpenAI's Responses API has no {', '.join(refused)} parameter: unset it on the model or "
            "call, or use chat completions (use_responses_api=False)"
        )
        raise InvalidRequestError(msg, provider="openai", model=str(body.get("model")), retryable=False)
    for name in _DROPPED:
        if body.pop(name, None) is not None:
            logger.warning("OpenAI Responses API: %r is not a parameter of this API and was not sent", name)
    body.pop("stream_options", None)  # usage always comes in response.completed
    for legacy in ("max_completion_tokens", "max_tokens"):
        if legacy in body:
            body.setdefault("max_output_tokens", body.pop(legacy))
            body.pop(legacy, None)
    if "reasoning_effort" in body:
        body["reasoning"] = {**(body.get("reasoning") or {}), "effort": body.pop("reasoning_effort")}
    if body.get("tools"):
        body["tools"] = [_tool(t) for t in body["tools"]]
    if "tool_choice" in body:
        body["tool_choice"] = _tool_choice(body["tool_choice"])
    response_format = body.pop("response_format", None)
    if isinstance(response_format, Mapping):
        body["text"] = {**(body.get("text") or {}), "format": _text_format(response_format)}
    previous = body.get("previous_response_id")
    if previous:
        messages = messages_after_response(messages, str(previous))
    body["input"] = messages_to_responses(messages)
    if stream:
        body["stream"] = True
    return body


# ---------------------------------------------------------------------- answers
def usage_from_responses(usage: Mapping[str, Any] | None) -> UsageMetadata | None:
    """Responses ``usage`` (input/output tokens and their details) as LangChain usage metadata."""
    if not usage:
        return None
    input_tokens = int(usage.get("input_tokens") or 0)
    output_tokens = int(usage.get("output_tokens") or 0)
    total = int(usage.get("total_tokens") or input_tokens + output_tokens)
    result = UsageMetadata(input_tokens=input_tokens, output_tokens=output_tokens, total_tokens=total)
    cached = (usage.get("input_tokens_details") or {}).get("cached_tokens")
    if cached is not None:
        result["input_token_details"] = InputTokenDetails(cache_read=int(cached))
    reasoning = (usage.get("output_tokens_details") or {}).get("reasoning_tokens")
    if reasoning is not None:
        result["output_token_details"] = OutputTokenDetails(reasoning=int(reasoning))
    return result


def reasoning_block(item: Mapping[str, Any]) -> dict[str, Any]:
    """A reasoning output item as a content block (summaries kept as parts; raw reasoning text joined)."""
    block: dict[str, Any] = {"type": "reasoning", "id": item.get("id")}
    block["summary"] = [
        {"type": "summary_text", "text": part.get("text", "")}
        for part in item.get("summary") or []
        if isinstance(part, Mapping)
    ]
    raw = [part.get("text", "") for part in item.get("content") or [] if isinstance(part, Mapping)]
    if raw:  # open-weight models (gpt-oss via vLLM / llama.cpp) return their reasoning text itself
        block["reasoning"] = "".join(raw)
    if item.get("encrypted_content"):
        block["encrypted_content"] = item["encrypted_content"]
    return block


def output_to_message_parts(output: Sequence[Mapping[str, Any]]) -> tuple[list[dict[str, Any]], list[Any], list[Any]]:
    """Responses output items as (content blocks, tool calls, invalid tool calls)."""
    content: list[dict[str, Any]] = []
    raw_calls: list[dict[str, Any]] = []
    for item in output:
        kind = item.get("type")
        if kind == "message":
            for part in item.get("content") or []:
                if part.get("type") == "output_text":
                    block = {"type": "text", "text": part.get("text") or "", "id": item.get("id")}
                    if part.get("annotations"):
                        block["annotations"] = list(part["annotations"])
                    content.append(block)
                elif part.get("type") == "refusal":
                    content.append({"type": "refusal", "refusal": part.get("refusal") or "", "id": item.get("id")})
        elif kind == "reasoning":
            content.append(reasoning_block(item))
        elif kind == "function_call":
            call_id = item.get("call_id") or item.get("id")
            content.append(
                {
                    "type": "function_call",
                    "call_id": call_id,
                    "name": item.get("name"),
                    "arguments": item.get("arguments") or "",
                    "id": item.get("id"),
                }
            )
            raw_calls.append(
                {
                    "id": call_id,
                    "type": "function",
                    "function": {"name": item.get("name"), "arguments": item.get("arguments") or "{}"},
                }
            )
        elif kind:
            content.append(dict(item))  # built-in tool calls (web_search_call, …) kept as the server sent them
    calls, invalid = parse_tool_calls(raw_calls)
    return content, calls, invalid
