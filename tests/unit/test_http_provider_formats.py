"""Edge cases of the Ollama / Anthropic message conversion and the shared httpx plumbing."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from langchain_core.messages import AIMessage, ChatMessage, FunctionMessage, HumanMessage, SystemMessage, ToolMessage

from langchain_multigateway import GatewayConnectionError, InvalidRequestError, ProviderError, RateLimitError
from langchain_multigateway.chat_models._anthropic_format import (
    messages_to_anthropic,
    tool_choice_to_anthropic,
    usage_from_anthropic,
)
from langchain_multigateway.chat_models._http import SSEEvent, iter_sse, request_id_of, translate_httpx_error
from langchain_multigateway.chat_models._ollama_format import (
    messages_to_ollama,
    parse_ollama_tool_calls,
    usage_from_ollama,
)

# ---------------------------------------------------------------- Anthropic conversion


def test_anthropic_system_blocks_with_cache_control_stay_blocks() -> None:
    cached = {"type": "text", "text": "Long policy...", "cache_control": {"type": "ephemeral"}}
    system, turns = messages_to_anthropic([SystemMessage(content=[cached]), HumanMessage("hi")])
    assert system == [cached]
    assert turns == [{"role": "user", "content": "hi"}]


def test_anthropic_content_edge_cases() -> None:
    source = {"type": "base64", "media_type": "image/gif", "data": "R0lG"}
    image_with_cache = {"type": "image", "url": "https://e.com/a.png", "cache_control": {"type": "ephemeral"}}
    _, turns = messages_to_anthropic(
        [
            HumanMessage(content=["plain string part", "", {"type": "image", "source": source}, image_with_cache]),
            AIMessage(
                content=[
                    {"type": "text", "text": "calling"},
                    {"type": "tool_use", "id": "t1", "name": "f", "input": {}},
                    {"type": "redacted_thinking", "data": "xyz", "index": 0},
                ],
                tool_calls=[{"name": "f", "args": {}, "id": "t1"}],
                invalid_tool_calls=[
                    {"name": "g", "args": "{bad", "id": "t2", "error": "bad json", "type": "invalid_tool_call"}
                ],
            ),
            ToolMessage(content=[{"type": "text", "text": "result"}], tool_call_id="t1"),
            ChatMessage(role="user", content="via ChatMessage"),
        ]
    )
    assert turns[0]["content"] == [
        {"type": "text", "text": "plain string part"},
        {"type": "image", "source": source},
        {
            "type": "image",
            "source": {"type": "url", "url": "https://e.com/a.png"},
            "cache_control": {"type": "ephemeral"},
        },
    ]
    assert turns[1]["content"] == [
        {"type": "text", "text": "calling"},
        {"type": "redacted_thinking", "data": "xyz"},
        {"type": "tool_use", "id": "t1", "name": "f", "input": {}},
        {"type": "tool_use", "id": "t2", "name": "g", "input": {}},
    ]
    assert turns[2]["content"] == [
        {"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "text", "text": "result"}]},
        {"type": "text", "text": "via ChatMessage"},
    ]


def test_anthropic_refuses_what_it_cannot_send() -> None:
    with pytest.raises(TypeError, match="FunctionMessage"):
        messages_to_anthropic([FunctionMessage(content="x", name="f")])
    # A file id is sent as the Files API's source (issue 15: standard input blocks); audio is refused by name.
    _, turns = messages_to_anthropic([HumanMessage(content=[{"type": "image", "source_type": "id", "id": "file_1"}])])
    assert turns[0]["content"][0] == {"type": "image", "source": {"type": "file", "file_id": "file_1"}}
    with pytest.raises(ValueError, match="an 'audio' content block given as base64 cannot be sent to anthropic"):
        messages_to_anthropic([HumanMessage(content=[{"type": "audio", "base64": "AAAA", "mime_type": "audio/wav"}])])


def test_anthropic_tool_choice_and_usage_edges() -> None:
    assert tool_choice_to_anthropic(None, ["a"]) is None
    assert tool_choice_to_anthropic(False, ["a"]) is None
    assert tool_choice_to_anthropic(True, ["a", "b"]) == {"type": "any"}
    assert tool_choice_to_anthropic(None, ["a"], parallel_tool_calls=False) == {
        "type": "auto",
        "disable_parallel_tool_use": True,
    }
    assert tool_choice_to_anthropic("none", ["a"], parallel_tool_calls=False) == {"type": "none"}
    assert usage_from_anthropic(None) is None
    assert usage_from_anthropic({"input_tokens": 3, "output_tokens": 4}) == {
        "input_tokens": 3,
        "output_tokens": 4,
        "total_tokens": 7,
    }


# ---------------------------------------------------------------- Ollama conversion


def test_ollama_conversion_edges() -> None:
    out = messages_to_ollama(
        [
            SystemMessage(content=[{"type": "text", "text": "sys"}]),
            HumanMessage(content=["raw ", {"type": "image", "source": {"type": "base64", "data": "QUJD"}}]),
            AIMessage(
                content=[{"type": "text", "text": "ok"}, {"type": "tool_call", "id": "1", "name": "f", "args": {}}],
                tool_calls=[{"name": "f", "args": {}, "id": "1"}],
                invalid_tool_calls=[
                    {"name": "g", "args": '{"a": 1}', "id": "2", "error": None, "type": "invalid_tool_call"}
                ],
                additional_kwargs={"reasoning_content": "thought"},
            ),
            ToolMessage(content=[{"type": "text", "text": "r1"}, {"type": "json", "json": {"x": 1}}], tool_call_id="1"),
            ToolMessage(content="r2", tool_call_id="2", name="explicit"),
            ChatMessage(role="user", content=[{"type": "image_url", "image_url": "data:image/png;base64,WFla"}]),
        ]
    )
    assert out[0] == {"role": "system", "content": "sys"}
    assert out[1] == {"role": "user", "content": "raw ", "images": ["QUJD"]}
    assert out[2]["tool_calls"][1] == {"function": {"name": "g", "arguments": {"a": 1}}}
    assert out[2]["thinking"] == "thought"
    assert out[3] == {"role": "tool", "content": 'r1\n{"type": "json", "json": {"x": 1}}', "tool_name": "f"}
    assert out[4] == {"role": "tool", "content": "r2", "tool_name": "explicit"}
    assert out[5] == {"role": "user", "content": "", "images": ["WFla"]}


def test_ollama_refuses_what_it_cannot_send() -> None:
    with pytest.raises(TypeError, match="FunctionMessage"):
        messages_to_ollama([FunctionMessage(content="x", name="f")])
    with pytest.raises(ValueError, match="'audio' content block given as base64 cannot be sent to ollama"):
        messages_to_ollama([HumanMessage(content=[{"type": "audio", "base64": "AAA"}])])


def test_ollama_tool_call_and_usage_edges() -> None:
    calls, invalid = parse_ollama_tool_calls(
        [{"function": {"name": "f", "arguments": ""}}, {"function": {"name": "g"}}, {"function": {"arguments": {}}}]
    )
    assert [(c["name"], c["args"]) for c in calls] == [("f", {}), ("g", {})]
    assert invalid[0]["error"] == "no tool name"
    assert usage_from_ollama({"model": "x"}) is None
    assert usage_from_ollama({"eval_count": 5}) == {"input_tokens": 0, "output_tokens": 5, "total_tokens": 5}


# ---------------------------------------------------------------- shared httpx plumbing


def test_translate_httpx_error_classes() -> None:
    def cls(exc: BaseException) -> type[Exception]:
        return type(translate_httpx_error(exc, provider="p", model="m"))

    already = RateLimitError("x")
    assert translate_httpx_error(already, provider="p", model="m") is already
    assert cls(httpx.WriteError("w")) is GatewayConnectionError
    assert cls(httpx.UnsupportedProtocol("ftp")) is InvalidRequestError
    assert cls(json.JSONDecodeError("bad", "doc", 0)) is ProviderError
    other = translate_httpx_error(RuntimeError("odd"), provider="p", model="m")
    assert isinstance(other, ProviderError)
    assert not other.retryable


def test_sse_parser_flushes_a_trailing_event_without_blank_line() -> None:
    events = list(iter_sse(iter(["event: a", "data: 1", "data: 2", "", "id: 7", "retry: 10", "data: tail"])))
    assert events == [SSEEvent("a", "1\n2"), SSEEvent("", "tail")]


def test_request_id_sources() -> None:
    assert request_id_of({"x-request-id": "r1"}) == "r1"
    assert request_id_of({}, {"request_id": "r2"}) == "r2"
    assert request_id_of({}, "text") is None


def _model(status: int, body: Any) -> Any:
    from langchain_multigateway.chat_models.anthropic import AnthropicChatModel

    client = httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(status, json=body)))
    return AnthropicChatModel(api_key="k", http_client=client, max_retries=0)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"error": "plain string error"}, "plain string error"),
        ({"message": "top-level message"}, "top-level message"),
        ([1, 2], "HTTP 418"),
    ],
)
def test_error_message_shapes(body: Any, expected: str) -> None:
    with pytest.raises(InvalidRequestError, match=expected):
        _model(418, body).invoke("hi")
