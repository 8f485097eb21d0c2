"""AnthropicChatModel against the Messages API's documented wire format.

No Anthropic endpoint is reachable here, so these tests drive the real httpx
client and the real SSE / JSON parsing through ``httpx.MockTransport`` with the
bytes Anthropic's documentation shows (Messages API, "Streaming Messages",
"Errors"), event streams cut at arbitrary byte boundaries.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, SystemMessage, ToolMessage
from pydantic import BaseModel, Field

from langchain_multigateway import (
    AuthenticationError,
    ContextWindowExceededError,
    GatewayConnectionError,
    GatewayTimeoutError,
    InvalidRequestError,
    ModelNotFoundGatewayError,
    PermissionDeniedError,
    ProviderError,
    RateLimitError,
    RetryPolicy,
)
from langchain_multigateway.chat_models.anthropic import AnthropicChatModel
from tests.unit._http_mock import PiecewiseBody, ScriptedServer, json_response, split_every

NO_WAIT = RetryPolicy(max_attempts=3, initial_delay=0, jitter=0)
KEY = "sk-ant-unit-test-secret"
MODEL = "claude-haiku-4-5"

# Messages API: a response object, with prompt-caching usage fields.
DOCUMENTED_MESSAGE = {
    "id": "msg_013Zva2CMHLNnXjNJJKqJ2EF",
    "type": "message",
    "role": "assistant",
    "model": "claude-haiku-4-5-20251001",
    "content": [{"type": "text", "text": "Hi! My name is Claude."}],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 25,
        "cache_creation_input_tokens": 2051,
        "cache_read_input_tokens": 1800,
        "output_tokens": 503,
    },
}

DOCUMENTED_TOOL_USE = {
    "id": "msg_01Aq9w938a90dw8q",
    "type": "message",
    "role": "assistant",
    "model": "claude-haiku-4-5-20251001",
    "content": [
        {"type": "text", "text": "I'll check the weather."},
        {
            "type": "tool_use",
            "id": "toolu_01A09q90qw90lq917835lq9",
            "name": "get_weather",
            "input": {"location": "San Francisco, CA", "unit": "celsius"},
        },
    ],
    "stop_reason": "tool_use",
    "stop_sequence": None,
    "usage": {"input_tokens": 472, "output_tokens": 89},
}


def sse(*events: tuple[str, dict[str, Any]]) -> bytes:
    return b"".join(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode() for name, data in events)


MESSAGE_START = (
    "message_start",
    {
        "type": "message_start",
        "message": {
            "id": "msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY",
            "type": "message",
            "role": "assistant",
            "content": [],
            "model": "claude-haiku-4-5-20251001",
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {
                "input_tokens": 25,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 100,
                "output_tokens": 1,
            },
        },
    },
)
PING = ("ping", {"type": "ping"})
MESSAGE_STOP = ("message_stop", {"type": "message_stop"})


def text_delta(text: str, index: int = 0) -> tuple[str, dict[str, Any]]:
    return (
        "content_block_delta",
        {"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": text}},
    )


def json_delta(partial: str, index: int) -> tuple[str, dict[str, Any]]:
    return (
        "content_block_delta",
        {"type": "content_block_delta", "index": index, "delta": {"type": "input_json_delta", "partial_json": partial}},
    )


def block_start(index: int, block: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return ("content_block_start", {"type": "content_block_start", "index": index, "content_block": block})


def block_stop(index: int) -> tuple[str, dict[str, Any]]:
    return ("content_block_stop", {"type": "content_block_stop", "index": index})


def message_delta(stop_reason: str, output_tokens: int) -> tuple[str, dict[str, Any]]:
    return (
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": None},
            "usage": {"output_tokens": output_tokens},
        },
    )


# "Streaming Messages", basic request: text deltas, a ping, cumulative output usage.
DOCUMENTED_TEXT_STREAM = sse(
    MESSAGE_START,
    block_start(0, {"type": "text", "text": ""}),
    PING,
    text_delta("Hello"),
    text_delta("!"),
    block_stop(0),
    message_delta("end_turn", 15),
    MESSAGE_STOP,
)

# "Streaming Messages", tool use: a text block, then a tool_use block whose input
# arrives as input_json_delta fragments.
DOCUMENTED_TOOL_STREAM = sse(
    MESSAGE_START,
    block_start(0, {"type": "text", "text": ""}),
    PING,
    text_delta("Okay, let's check the weather."),
    block_stop(0),
    block_start(1, {"type": "tool_use", "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "name": "get_weather", "input": {}}),
    json_delta("", 1),
    json_delta('{"location":', 1),
    json_delta(' "San Francisco, CA"', 1),
    json_delta(', "unit": "fahrenheit"}', 1),
    block_stop(1),
    message_delta("tool_use", 89),
    MESSAGE_STOP,
)

OVERLOADED = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}


def make(server: ScriptedServer, **kwargs: Any) -> AnthropicChatModel:
    params: dict[str, Any] = {"model": MODEL, "api_key": KEY, "retry_policy": NO_WAIT}
    params.update(kwargs)
    return AnthropicChatModel(http_client=server.client(), http_async_client=server.async_client(), **params)


class GetWeather(BaseModel):
    """Get the current weather in a given location."""

    location: str = Field(description="The city and state, e.g. San Francisco, CA")
    unit: str = Field(default="celsius", description="celsius or fahrenheit")


def chain(chunks: list[AIMessageChunk]) -> AIMessageChunk:
    full = chunks[0]
    for c in chunks[1:]:
        full += c
    return full


# ---------------------------------------------------------------- invoke, headers, body


def test_documented_message_invoke_headers_and_total_input_usage() -> None:
    server = ScriptedServer(json_response(200, DOCUMENTED_MESSAGE))
    msg = make(server).invoke("Hello, Claude")
    assert msg.content == "Hi! My name is Claude."
    assert msg.id == "msg_013Zva2CMHLNnXjNJJKqJ2EF"
    # input_tokens is the total input: 25 uncached + 1800 read + 2051 written.
    assert msg.usage_metadata == {
        "input_tokens": 3876,
        "output_tokens": 503,
        "total_tokens": 4379,
        "input_token_details": {"cache_read": 1800, "cache_creation": 2051},
    }
    meta = msg.response_metadata
    assert meta["model_name"] == "claude-haiku-4-5-20251001"
    assert meta["model_provider"] == "anthropic"
    assert meta["stop_reason"] == meta["finish_reason"] == "end_turn"
    request = server.requests[0]
    assert str(request.url) == "https://api.anthropic.com/v1/messages"
    assert request.headers["x-api-key"] == KEY
    assert request.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in request.headers
    assert server.body() == {
        "model": MODEL,
        "max_tokens": 1024,
        "messages": [{"role": "user", "content": "Hello, Claude"}],
    }


def test_request_body_hoists_system_merges_turns_and_sends_tool_results() -> None:
    server = ScriptedServer(json_response(200, DOCUMENTED_MESSAGE))
    history = [
        SystemMessage("You are a weather bot."),
        HumanMessage("Weather in SF?"),
        HumanMessage(
            content=[
                {"type": "text", "text": "And this picture?"},
                {"type": "image", "base64": "iVBORw0KGgo=", "mime_type": "image/png"},
                {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQ"}},
                {"type": "image", "url": "https://example.com/cloud.png"},
            ]
        ),
        AIMessage(
            content="Let me check.",
            tool_calls=[{"name": "get_weather", "args": {"location": "SF"}, "id": "toolu_1"}],
        ),
        ToolMessage("15 degrees", tool_call_id="toolu_1"),
        ToolMessage("tool crashed", tool_call_id="toolu_2", status="error"),
        SystemMessage("Be brief."),
        HumanMessage("Thanks"),
    ]
    make(server, temperature=0.2, top_k=5, stop=["###"], max_tokens=300).invoke(history)
    body = server.body()
    assert body["system"] == "You are a weather bot.\n\nBe brief."
    assert body["max_tokens"] == 300
    assert body["temperature"] == 0.2
    assert body["top_k"] == 5
    assert body["stop_sequences"] == ["###"]
    assert body["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Weather in SF?"},
                {"type": "text", "text": "And this picture?"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
                {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/4AAQ"}},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/cloud.png"}},
            ],
        },
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me check."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"location": "SF"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "15 degrees"},
                {"type": "tool_result", "tool_use_id": "toolu_2", "content": "tool crashed", "is_error": True},
                {"type": "text", "text": "Thanks"},
            ],
        },
    ]


def test_base_url_env_betas_and_secret_not_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "https://proxy.example.com/v1/")
    server = ScriptedServer(json_response(200, DOCUMENTED_MESSAGE))
    llm = make(server, betas=["prompt-caching-2024-07-31", "x"], model_kwargs={"metadata": {"user_id": "u1"}})
    llm.invoke("hi", stop=["END"])
    assert str(server.requests[0].url) == "https://proxy.example.com/v1/messages"
    assert server.requests[0].headers["anthropic-beta"] == "prompt-caching-2024-07-31,x"
    assert server.body()["metadata"] == {"user_id": "u1"}
    assert server.body()["stop_sequences"] == ["END"]
    assert KEY not in repr(llm)
    assert KEY not in str(llm.model_dump())


def test_missing_api_key_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    # pydantic wraps the MissingAPIKeyError (a ValueError) raised by the validator
    with pytest.raises(ValueError, match="ANTHROPIC_API_KEY"):
        AnthropicChatModel(model=MODEL)


async def test_documented_message_ainvoke() -> None:
    server = ScriptedServer(json_response(200, DOCUMENTED_MESSAGE))
    msg = await make(server).ainvoke("hi")
    assert msg.content == "Hi! My name is Claude."
    assert server.calls == 1


# ---------------------------------------------------------------- streaming


def _check_text_stream(chunks: list[AIMessageChunk]) -> None:
    assert [c.content for c in chunks[:-1]] == ["Hello", "!"]
    last = chunks[-1]
    assert last.chunk_position == "last"
    assert last.usage_metadata == {
        "input_tokens": 125,
        "output_tokens": 15,
        "total_tokens": 140,
        "input_token_details": {"cache_read": 100, "cache_creation": 0},
    }
    assert last.response_metadata["stop_reason"] == "end_turn"
    assert last.response_metadata["model_name"] == "claude-haiku-4-5-20251001"
    assert [c for c in chunks if c.usage_metadata] == [last]
    assert [c for c in chunks if c.response_metadata.get("model_name")] == [last]
    full = chain(chunks)
    assert full.content == "Hello!"
    assert full.id == "msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY"


def test_documented_sse_text_stream_sync_split_mid_event() -> None:
    server = ScriptedServer(PiecewiseBody(split_every(DOCUMENTED_TEXT_STREAM, 9)))
    chunks = list(make(server).stream("Hello"))
    _check_text_stream(chunks)
    assert server.body()["stream"] is True


async def test_documented_sse_text_stream_async_split_mid_event() -> None:
    server = ScriptedServer(PiecewiseBody(split_every(DOCUMENTED_TEXT_STREAM, 17)))
    chunks = [c async for c in make(server).astream("Hello")]
    _check_text_stream(chunks)


def test_sse_crlf_line_endings_and_comments_parse() -> None:
    body = DOCUMENTED_TEXT_STREAM.replace(b"\n", b"\r\n")
    server = ScriptedServer(PiecewiseBody([b": keep-alive comment\r\n\r\n", *split_every(body, 5)]))
    _check_text_stream(list(make(server).stream("Hello")))


# ---------------------------------------------------------------- tools


def test_documented_tool_use_response_and_tools_body() -> None:
    server = ScriptedServer(json_response(200, DOCUMENTED_TOOL_USE))
    msg = make(server).bind_tools([GetWeather], tool_choice="any", parallel_tool_calls=False).invoke("Weather?")
    assert isinstance(msg, AIMessage)
    # Text and tool_use blocks as sent (langchain-anthropic's shape): content_blocks shows the call.
    assert msg.text == "I'll check the weather."
    assert [b["type"] for b in msg.content] == ["text", "tool_use"]  # type: ignore[index]
    assert [b["type"] for b in msg.content_blocks] == ["text", "tool_call"]
    assert msg.tool_calls == [
        {
            "name": "get_weather",
            "args": {"location": "San Francisco, CA", "unit": "celsius"},
            "id": "toolu_01A09q90qw90lq917835lq9",
            "type": "tool_call",
        }
    ]
    body = server.body()
    assert body["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    tool = body["tools"][0]
    assert tool["name"] == "GetWeather"
    assert tool["description"] == "Get the current weather in a given location."
    assert tool["input_schema"]["required"] == ["location"]


def test_documented_tool_stream_assembles_input_json_deltas() -> None:
    server = ScriptedServer(PiecewiseBody(split_every(DOCUMENTED_TOOL_STREAM, 23)))
    chunks = list(make(server).bind_tools([GetWeather]).stream("Weather?"))
    full = chain(chunks)
    assert full.text == "Okay, let's check the weather."
    assert [b["type"] for b in full.content_blocks] == ["text", "tool_call"]
    assert full.tool_calls == [
        {
            "name": "get_weather",
            "args": {"location": "San Francisco, CA", "unit": "fahrenheit"},
            "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6",
            "type": "tool_call",
        }
    ]
    assert chunks[-1].response_metadata["stop_reason"] == "tool_use"
    assert chunks[-1].usage_metadata is not None
    assert chunks[-1].usage_metadata["output_tokens"] == 89
    fragments = [tc["args"] for c in chunks for tc in c.tool_call_chunks]
    # the tool_use start carries name and id with empty args; each non-empty delta follows as it came
    assert fragments == ["", '{"location":', ' "San Francisco, CA"', ', "unit": "fahrenheit"}']


async def test_documented_tool_stream_async() -> None:
    server = ScriptedServer(PiecewiseBody(split_every(DOCUMENTED_TOOL_STREAM, 31)))
    chunks = [c async for c in make(server).bind_tools([GetWeather]).astream("Weather?")]
    assert chain(chunks).tool_calls[0]["args"] == {"location": "San Francisco, CA", "unit": "fahrenheit"}


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", {"type": "auto"}),
        ("any", {"type": "any"}),
        ("required", {"type": "any"}),
        ("none", {"type": "none"}),
        ("GetWeather", {"type": "tool", "name": "GetWeather"}),
        (True, {"type": "tool", "name": "GetWeather"}),
        ({"type": "function", "function": {"name": "GetWeather"}}, {"type": "tool", "name": "GetWeather"}),
        ({"type": "tool", "name": "GetWeather"}, {"type": "tool", "name": "GetWeather"}),
    ],
)
def test_tool_choice_spellings(choice: Any, expected: dict[str, Any]) -> None:
    server = ScriptedServer(json_response(200, DOCUMENTED_TOOL_USE))
    make(server).bind_tools([GetWeather], tool_choice=choice).invoke("x")
    assert server.body()["tool_choice"] == expected


def test_tool_choice_unknown_name_and_anthropic_native_tools() -> None:
    server = ScriptedServer(json_response(200, DOCUMENTED_TOOL_USE))
    with pytest.raises(ValueError, match="names no bound tool"):
        make(server).bind_tools([GetWeather], tool_choice="Nope")
    native = {"name": "raw", "description": "d", "input_schema": {"type": "object", "properties": {}}}
    server_tool = {"type": "web_search_20250305", "name": "web_search", "max_uses": 2}
    make(server).bind_tools([native, server_tool]).invoke("x")
    assert server.body()["tools"] == [native, server_tool]
    assert "tool_choice" not in server.body()


# ---------------------------------------------------------------- structured output


class Joke(BaseModel):
    setup: str
    punchline: str


def _forced_reply(name: str, args: dict[str, Any]) -> dict[str, Any]:
    return {
        **DOCUMENTED_TOOL_USE,
        "content": [{"type": "tool_use", "id": "toolu_9", "name": name, "input": args}],
    }


@pytest.mark.parametrize("method", ["function_calling", "json_schema", "json_mode"])
def test_structured_output_goes_through_a_forced_tool(method: str) -> None:
    server = ScriptedServer(json_response(200, _forced_reply("Joke", {"setup": "Why?", "punchline": "Because."})))
    out = make(server).with_structured_output(Joke, method=method).invoke("A joke")  # type: ignore[arg-type]
    assert out == Joke(setup="Why?", punchline="Because.")
    body = server.body()
    assert body["tool_choice"] == {"type": "tool", "name": "Joke"}
    assert [t["name"] for t in body["tools"]] == ["Joke"]


def test_structured_output_json_mode_without_schema_and_include_raw() -> None:
    server = ScriptedServer(json_response(200, _forced_reply("json_output", {"answer": 42})))
    out = make(server).with_structured_output(None, method="json_mode", include_raw=True).invoke("x")
    assert isinstance(out, dict)
    assert out["parsed"] == {"answer": 42}
    assert out["parsing_error"] is None
    assert isinstance(out["raw"], AIMessage)
    assert server.body()["tool_choice"] == {"type": "tool", "name": "json_output"}


# ---------------------------------------------------------------- errors and retries


def _error(kind: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_011CSHoEeqs5C35K2UUqR7Fy"}


@pytest.mark.parametrize(
    ("status", "kind", "message", "cls"),
    [
        (400, "invalid_request_error", "messages: roles must alternate", InvalidRequestError),
        (
            400,
            "invalid_request_error",
            "prompt is too long: 210000 tokens > 200000 maximum",
            ContextWindowExceededError,
        ),
        (401, "authentication_error", "invalid x-api-key", AuthenticationError),
        (403, "permission_error", "Your API key does not have permission", PermissionDeniedError),
        (404, "not_found_error", "model: claude-nope", ModelNotFoundGatewayError),
    ],
)
def test_documented_client_errors_map_and_are_not_retried(
    status: int, kind: str, message: str, cls: type[Exception]
) -> None:
    server = ScriptedServer(json_response(status, _error(kind, message), headers={"request-id": "req_header_1"}))
    with pytest.raises(cls) as info:
        make(server).invoke("hi")
    err = info.value
    assert message in str(err)
    assert getattr(err, "status_code", None) == status
    assert getattr(err, "request_id", None) == "req_header_1"
    assert getattr(err, "retryable", None) is False
    assert server.calls == 1


def test_request_id_falls_back_to_the_error_body() -> None:
    server = ScriptedServer(json_response(404, _error("not_found_error", "no such model")))
    with pytest.raises(ModelNotFoundGatewayError) as info:
        make(server).invoke("hi")
    assert info.value.request_id == "req_011CSHoEeqs5C35K2UUqR7Fy"


def test_529_overloaded_is_a_retryable_provider_error_counted_at_the_transport() -> None:
    server = ScriptedServer(json_response(529, OVERLOADED))
    with pytest.raises(ProviderError, match="Overloaded") as info:
        make(server).invoke("hi")
    assert info.value.status_code == 529
    assert info.value.retryable
    assert server.calls == 3


def test_overloaded_then_success_recovers() -> None:
    server = ScriptedServer(
        json_response(529, OVERLOADED),
        json_response(500, _error("api_error", "x")),
        json_response(200, DOCUMENTED_MESSAGE),
    )
    assert make(server).invoke("hi").content == "Hi! My name is Claude."
    assert server.calls == 3


def test_429_carries_retry_after_and_request_id() -> None:
    server = ScriptedServer(
        json_response(
            429,
            _error("rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit"),
            headers={"retry-after": "12", "request-id": "req_rl"},
        )
    )
    with pytest.raises(RateLimitError) as info:
        make(server, retry_policy=RetryPolicy(max_attempts=1)).invoke("hi")
    assert info.value.retry_after == 12.0
    assert info.value.request_id == "req_rl"


def test_429_with_short_retry_after_is_retried() -> None:
    server = ScriptedServer(
        json_response(429, _error("rate_limit_error", "slow"), headers={"retry-after": "0"}),
        json_response(200, DOCUMENTED_MESSAGE),
    )
    assert make(server).invoke("hi").content == "Hi! My name is Claude."
    assert server.calls == 2


def test_timeout_and_connection_errors_map() -> None:
    server = ScriptedServer(httpx.ConnectTimeout("timed out"))
    with pytest.raises(GatewayTimeoutError):
        make(server).invoke("hi")
    assert server.calls == 3
    server = ScriptedServer(httpx.RemoteProtocolError("peer closed connection"))
    with pytest.raises(GatewayConnectionError):
        make(server).invoke("hi")
    assert server.calls == 3


def test_malformed_bodies_are_provider_errors() -> None:
    one_try = RetryPolicy(max_attempts=1)
    with pytest.raises(ProviderError, match="malformed JSON"):
        make(ScriptedServer(httpx.Response(200, content=b"{oops")), retry_policy=one_try).invoke("hi")
    with pytest.raises(ProviderError, match="content blocks"):
        make(ScriptedServer(json_response(200, {"id": "x"})), retry_policy=one_try).invoke("hi")
    with pytest.raises(ProviderError):
        make(ScriptedServer(httpx.Response(502, content=b"<html>Bad gateway</html>")), retry_policy=one_try).invoke(
            "hi"
        )


def test_mid_stream_overloaded_error_event_raises_without_retry() -> None:
    body = sse(MESSAGE_START, block_start(0, {"type": "text", "text": ""}), text_delta("Hel"), ("error", OVERLOADED))
    server = ScriptedServer(PiecewiseBody(split_every(body, 40)))
    seen: list[str] = []
    with pytest.raises(ProviderError, match="overloaded_error") as info:
        for chunk in make(server).stream("hi"):
            seen.append(str(chunk.content))
    assert seen == ["Hel"]
    assert info.value.status_code == 529
    assert server.calls == 1


async def test_error_event_before_first_chunk_is_retried_async() -> None:
    server = ScriptedServer(
        PiecewiseBody([sse(MESSAGE_START, ("error", OVERLOADED))]),
        PiecewiseBody([DOCUMENTED_TEXT_STREAM]),
    )
    chunks = [c async for c in make(server).astream("hi")]
    assert chain(chunks).content == "Hello!"
    assert server.calls == 2


async def test_stream_http_error_status_maps_async() -> None:
    server = ScriptedServer(json_response(401, _error("authentication_error", "invalid x-api-key")))
    with pytest.raises(AuthenticationError):
        async for _ in make(server).astream("hi"):
            pass
    assert server.calls == 1


def test_mid_stream_read_error_is_a_connection_error_without_retry() -> None:
    body = sse(MESSAGE_START, block_start(0, {"type": "text", "text": ""}), text_delta("Hel"))
    server = ScriptedServer(PiecewiseBody([body], error=httpx.ReadError("connection reset")))
    with pytest.raises(GatewayConnectionError):
        list(make(server).stream("hi"))
    assert server.calls == 1


def test_stream_without_message_stop_is_a_provider_error() -> None:
    body = sse(MESSAGE_START, block_start(0, {"type": "text", "text": ""}), text_delta("Hel"))
    server = ScriptedServer(PiecewiseBody([body]))
    with pytest.raises(ProviderError, match="message_stop"):
        list(make(server, retry_policy=RetryPolicy(max_attempts=1)).stream("hi"))


# ---------------------------------------------------------------- health, tokens, identity


def test_health_check_gets_v1_models() -> None:
    server = ScriptedServer(json_response(200, {"data": [{"id": MODEL, "type": "model"}], "has_more": True}))
    status = make(server).health_check()
    assert status.ok
    assert server.requests[0].method == "GET"
    assert server.requests[0].url.path == "/v1/models"
    assert server.requests[0].headers["x-api-key"] == KEY


async def test_ahealth_check_reports_bad_key() -> None:
    server = ScriptedServer(json_response(401, _error("authentication_error", "invalid x-api-key")))
    status = await make(server).ahealth_check()
    assert not status.ok
    assert status.error is not None
    assert "AuthenticationError" in status.error
    assert KEY not in status.error
    ok = await make(ScriptedServer(json_response(200, {"data": []}))).ahealth_check()
    assert ok.ok


def test_hosted_only_documented_thinking_blocks_are_kept_in_content_and_sent_back() -> None:
    reply = {
        **DOCUMENTED_MESSAGE,
        "content": [
            {"type": "thinking", "thinking": "Let me think.", "signature": "sig=="},
            {"type": "text", "text": "42"},
        ],
    }
    server = ScriptedServer(json_response(200, reply))
    llm = make(server, thinking={"type": "enabled", "budget_tokens": 1024})
    msg = llm.invoke("?")
    assert isinstance(msg.content, list)
    assert msg.content[0] == {"type": "thinking", "thinking": "Let me think.", "signature": "sig=="}
    assert server.body()["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    llm.invoke([HumanMessage("?"), msg, HumanMessage("why?")])
    assert server.body()["messages"][1]["content"][0]["type"] == "thinking"


def test_hosted_only_documented_thinking_deltas_stream_as_thinking_blocks() -> None:
    # Not reasoning_content in additional_kwargs: the block (with its index) is what a
    # tool loop must send back; see test_anthropic_thinking_stream.py for the whole loop.
    body = sse(
        MESSAGE_START,
        block_start(0, {"type": "thinking", "thinking": ""}),
        (
            "content_block_delta",
            {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "Hmm"}},
        ),
        block_stop(0),
        message_delta("end_turn", 3),
        MESSAGE_STOP,
    )
    chunks = list(make(ScriptedServer(PiecewiseBody([body]))).stream("?"))
    assert chain(chunks).content == [{"type": "thinking", "thinking": "Hmm", "index": 0}]
    assert all(not c.additional_kwargs for c in chunks)


# Messages API usage with prompt caching by time to live: cache_creation_input_tokens is the
# total written, cache_creation splits it into 5-minute and 1-hour writes (priced 1.25x and 2x).
TTL_USAGE = {
    "input_tokens": 50,
    "cache_creation_input_tokens": 1500,
    "cache_read_input_tokens": 2000,
    "cache_creation": {"ephemeral_5m_input_tokens": 500, "ephemeral_1h_input_tokens": 1000},
    "output_tokens": 30,
}


def test_hosted_only_documented_cache_writes_split_by_ttl() -> None:
    server = ScriptedServer(json_response(200, {**DOCUMENTED_MESSAGE, "usage": TTL_USAGE}))
    usage = make(server).invoke("?").usage_metadata
    assert usage == {
        "input_tokens": 50 + 2000 + 1500,
        "output_tokens": 30,
        "total_tokens": 3580,
        "input_token_details": {
            "cache_read": 2000,
            # langchain-anthropic's convention: the split replaces the generic count, so the
            # details never count a write twice.
            "cache_creation": 0,
            "ephemeral_5m_input_tokens": 500,
            "ephemeral_1h_input_tokens": 1000,
        },
    }


def test_hosted_only_documented_cache_writes_split_by_ttl_when_streamed() -> None:
    start = {**MESSAGE_START[1], "message": {**MESSAGE_START[1]["message"], "usage": {**TTL_USAGE, "output_tokens": 1}}}
    body = sse(("message_start", start), text_delta("Hi"), message_delta("end_turn", 30), MESSAGE_STOP)
    whole = chain(list(make(ScriptedServer(PiecewiseBody([body]))).stream("?")))
    assert whole.usage_metadata is not None
    assert whole.usage_metadata["input_tokens"] == 3550
    assert whole.usage_metadata["output_tokens"] == 30
    details = whole.usage_metadata.get("input_token_details", {})
    assert details.get("ephemeral_1h_input_tokens") == 1000
    assert details.get("ephemeral_5m_input_tokens") == 500
    assert details.get("cache_creation") == 0


def test_usage_without_the_ttl_split_keeps_the_generic_cache_creation() -> None:
    usage = {"input_tokens": 5, "cache_creation_input_tokens": 40, "cache_read_input_tokens": 0, "output_tokens": 2}
    server = ScriptedServer(json_response(200, {**DOCUMENTED_MESSAGE, "usage": usage}))
    result = make(server).invoke("?").usage_metadata
    assert result is not None
    assert result["input_tokens"] == 45
    assert result.get("input_token_details") == {"cache_read": 0, "cache_creation": 40}


def test_token_count_approximation_and_identity() -> None:
    llm = AnthropicChatModel(model=MODEL, api_key=KEY)
    n = llm.get_num_tokens_from_messages([SystemMessage("Be brief."), HumanMessage("Hello, Claude")])
    assert 5 < n < 40
    assert llm.get_num_tokens_from_messages([HumanMessage("Hello")], tools=[GetWeather]) > n
    assert llm._llm_type == "multigateway-anthropic"
    assert llm.profile is not None
    assert llm.profile.get("tool_calling") is True
    assert llm.client is llm.client
    assert llm.async_client is llm.async_client


def test_capabilities_say_structured_output_is_a_forced_tool_and_no_response_format_is_sent() -> None:
    """The Messages API takes no response_format: the public capabilities hook says so, so a
    router never sends one, and with_structured_output serves every method by a forced tool."""
    from tests.loopback import Reply, serve

    class Joke(BaseModel):
        setup: str
        punchline: str

    call = {"type": "tool_use", "id": "toolu_1", "name": "Joke", "input": {"setup": "a", "punchline": "b"}}
    answer = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": MODEL,
        "content": [call],
        "stop_reason": "tool_use",
        "usage": {"input_tokens": 3, "output_tokens": 3},
    }
    with serve(Reply(body=answer)) as (url, script):
        llm = AnthropicChatModel(model=MODEL, api_key=KEY, base_url=url)
        assert llm.capabilities.structured_output_methods == ("function_calling",)
        assert llm.capabilities.tool_choice is True
        assert llm.with_structured_output(Joke, method="json_schema").invoke("joke") == Joke(setup="a", punchline="b")
    body = script.requests[0]["body"]
    assert "response_format" not in body
    assert body["tool_choice"] == {"type": "tool", "name": "Joke"}


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        (None, {"type": "auto", "disable_parallel_tool_use": True}),
        ("any", {"type": "any", "disable_parallel_tool_use": True}),
        ("GetWeather", {"type": "tool", "name": "GetWeather", "disable_parallel_tool_use": True}),
        ("none", {"type": "none"}),
    ],
)
def test_parallel_tool_calls_false_field_sends_disable_parallel_tool_use(
    choice: str | None, expected: dict[str, Any]
) -> None:
    server = ScriptedServer(json_response(200, DOCUMENTED_TOOL_USE))
    make(server, parallel_tool_calls=False).bind_tools([GetWeather], tool_choice=choice).invoke("?")
    assert server.body()["tool_choice"] == expected
    assert "parallel_tool_calls" not in server.body()


def test_parallel_tool_calls_call_kwarg_is_translated_and_never_sent_as_is() -> None:
    server = ScriptedServer(json_response(200, DOCUMENTED_MESSAGE), json_response(200, DOCUMENTED_TOOL_USE))
    make(server).invoke("?", parallel_tool_calls=False)  # no tools: nothing to disable, nothing sent
    assert "parallel_tool_calls" not in server.body()
    assert "tool_choice" not in server.body()
    make(server).bind_tools([GetWeather]).invoke("?", parallel_tool_calls=False)
    assert server.body()["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}
    assert "parallel_tool_calls" not in server.body()


def test_a_bare_json_schema_becomes_a_named_tool() -> None:
    # with_structured_output(SomeModel.schema()) hands bind_tools a JSON schema, not a tool.
    from langchain_multigateway.chat_models._anthropic_format import tools_to_anthropic

    schema = {
        "title": "Joke",
        "description": "Joke to tell user.",
        "type": "object",
        "properties": {"setup": {"type": "string"}, "punchline": {"type": "string"}},
        "required": ["setup", "punchline"],
    }
    (tool,) = tools_to_anthropic([schema])
    assert tool["name"] == "Joke"
    assert tool["input_schema"]["required"] == ["setup", "punchline"]
    server_tool = {"type": "web_search_20250305", "name": "web_search", "max_uses": 2}
    assert tools_to_anthropic([server_tool]) == [server_tool]
