"""OllamaChatModel against Ollama's documented /api/chat wire format.

No Ollama server runs here, so these tests drive the real httpx client and the
real parsing code through ``httpx.MockTransport`` with the bytes Ollama's API
documentation shows (docs/api.md: "Generate a chat completion"), streams as
NDJSON cut at arbitrary byte boundaries.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, SystemMessage, ToolMessage
from pydantic import BaseModel, Field

from langchain_multigateway import (
    GatewayConnectionError,
    GatewayTimeoutError,
    InvalidRequestError,
    ModelNotFoundGatewayError,
    ProviderError,
    RetryPolicy,
)
from langchain_multigateway.chat_models._ollama_format import normalize_host
from langchain_multigateway.chat_models.ollama import OllamaChatModel
from tests.unit._http_mock import PiecewiseBody, ScriptedServer, json_response, split_every

NO_WAIT = RetryPolicy(max_attempts=3, initial_delay=0, jitter=0)

# docs/api.md, "Chat request (No streaming)"
DOCUMENTED_CHAT = {
    "model": "llama3.2",
    "created_at": "2023-12-12T14:13:43.416799Z",
    "message": {"role": "assistant", "content": "Hello! How are you today?"},
    "done_reason": "stop",
    "done": True,
    "total_duration": 5191566416,
    "load_duration": 2154458,
    "prompt_eval_count": 26,
    "prompt_eval_duration": 383809000,
    "eval_count": 298,
    "eval_duration": 4799921000,
}

# docs/api.md, "Chat request (with tools)"
DOCUMENTED_TOOL_CALL = {
    "model": "llama3.2",
    "created_at": "2024-07-22T20:33:28.123648Z",
    "message": {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {"function": {"name": "get_current_weather", "arguments": {"format": "celsius", "location": "Paris, FR"}}}
        ],
    },
    "done_reason": "stop",
    "done": True,
    "total_duration": 885095291,
    "load_duration": 3753500,
    "prompt_eval_count": 122,
    "prompt_eval_duration": 328493000,
    "eval_count": 33,
    "eval_duration": 552222000,
}


def _line(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj).encode() + b"\n"


def _delta(text: str) -> bytes:
    return _line(
        {
            "model": "llama3.2",
            "created_at": "2023-08-04T08:52:19.385406455-07:00",
            "message": {"role": "assistant", "content": text, "images": None},
            "done": False,
        }
    )


# docs/api.md, "Chat Request (Streaming)": deltas, then the final statistics line.
DOCUMENTED_FINAL_LINE = _line(
    {
        "model": "llama3.2",
        "created_at": "2023-08-04T19:22:45.499127Z",
        "message": {"role": "assistant", "content": ""},
        "done_reason": "stop",
        "done": True,
        "total_duration": 4883583458,
        "load_duration": 1334875,
        "prompt_eval_count": 26,
        "prompt_eval_duration": 342546000,
        "eval_count": 282,
        "eval_duration": 4535599000,
    }
)
DOCUMENTED_STREAM = _delta("The") + _delta(" sky") + _delta(" is blue.") + DOCUMENTED_FINAL_LINE


def make(server: ScriptedServer, **kwargs: Any) -> OllamaChatModel:
    params: dict[str, Any] = {"model": "llama3.2", "base_url": "http://ollama.test:11434", "retry_policy": NO_WAIT}
    params.update(kwargs)
    return OllamaChatModel(http_client=server.client(), http_async_client=server.async_client(), **params)


class GetWeather(BaseModel):
    """Get the current weather for a location."""

    location: str = Field(description="City and country")
    format: str = Field(description="celsius or fahrenheit")


# ---------------------------------------------------------------- invoke and request shape


def test_documented_chat_response_invoke() -> None:
    server = ScriptedServer(json_response(200, DOCUMENTED_CHAT))
    msg = make(server).invoke("why is the sky blue?")

    assert msg.content == "Hello! How are you today?"
    assert msg.usage_metadata == {"input_tokens": 26, "output_tokens": 298, "total_tokens": 324}
    meta = msg.response_metadata
    assert meta["model_name"] == "llama3.2"
    assert meta["model_provider"] == "ollama"
    assert meta["done_reason"] == "stop"
    assert meta["finish_reason"] == "stop"
    assert meta["total_duration"] == 5191566416
    assert meta["load_duration"] == 2154458
    assert meta["prompt_eval_duration"] == 383809000
    assert meta["eval_duration"] == 4799921000
    request = server.requests[0]
    assert request.method == "POST"
    assert str(request.url) == "http://ollama.test:11434/api/chat"
    assert "authorization" not in request.headers
    assert server.body() == {
        "model": "llama3.2",
        "messages": [{"role": "user", "content": "why is the sky blue?"}],
        "stream": False,
    }


def test_request_body_carries_options_keep_alive_and_max_tokens_as_num_predict() -> None:
    server = ScriptedServer(json_response(200, DOCUMENTED_CHAT))
    llm = make(
        server,
        temperature=0,
        max_tokens=64,
        num_ctx=8192,
        seed=101,
        top_k=20,
        top_p=0.9,
        repeat_penalty=1.1,
        keep_alive="10m",
        stop=["\n\n"],
        options={"num_batch": 16},
    )
    llm.invoke("Hello!", top_k=5, options={"mirostat": 1})
    body = server.body()
    assert body["keep_alive"] == "10m"
    assert body["options"] == {
        "temperature": 0,
        "num_predict": 64,
        "num_ctx": 8192,
        "seed": 101,
        "top_k": 5,
        "top_p": 0.9,
        "repeat_penalty": 1.1,
        "stop": ["\n\n"],
        "num_batch": 16,
        "mirostat": 1,
    }
    llm.invoke("Hello!", stop=["END"], max_tokens=3)
    assert server.body()["options"]["stop"] == ["END"]
    assert server.body()["options"]["num_predict"] == 3


def test_request_body_messages_images_tool_calls_and_tool_results() -> None:
    png = base64.b64encode(b"\x89PNG fake").decode()
    server = ScriptedServer(json_response(200, DOCUMENTED_CHAT))
    history = [
        SystemMessage("You are terse."),
        HumanMessage(
            content=[
                {"type": "text", "text": "what is in this image?"},
                {"type": "image", "base64": png, "mime_type": "image/png"},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png}"}},
            ]
        ),
        AIMessage(
            content="",
            tool_calls=[{"name": "get_current_weather", "args": {"location": "Paris"}, "id": "call_1"}],
        ),
        ToolMessage("22 degrees", tool_call_id="call_1"),
    ]
    make(server).invoke(history)
    assert server.body()["messages"] == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "what is in this image?", "images": [png, png]},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"function": {"name": "get_current_weather", "arguments": {"location": "Paris"}}}],
        },
        {"role": "tool", "content": "22 degrees", "tool_name": "get_current_weather"},
    ]


def test_remote_image_urls_are_refused_with_a_clear_message() -> None:
    server = ScriptedServer(json_response(200, DOCUMENTED_CHAT))
    with pytest.raises(ValueError, match="base64"):
        make(server).invoke([HumanMessage(content=[{"type": "image", "url": "https://example.com/cat.png"}])])
    assert server.calls == 0


def test_optional_bearer_token_is_sent_when_configured() -> None:
    server = ScriptedServer(json_response(200, DOCUMENTED_CHAT))
    llm = make(server, api_key="ollama-secret", default_headers={"x-team": "a"})
    llm.invoke("hi")
    assert server.requests[0].headers["authorization"] == "Bearer ollama-secret"
    assert server.requests[0].headers["x-team"] == "a"
    assert "ollama-secret" not in repr(llm)


# ---------------------------------------------------------------- streaming


def _check_stream(chunks: list[AIMessageChunk]) -> None:
    assert [c.content for c in chunks[:-1]] == ["The", " sky", " is blue."]
    last = chunks[-1]
    assert last.chunk_position == "last"
    assert last.usage_metadata == {"input_tokens": 26, "output_tokens": 282, "total_tokens": 308}
    assert last.response_metadata["done_reason"] == "stop"
    assert last.response_metadata["total_duration"] == 4883583458
    assert [c for c in chunks if c.usage_metadata] == [last]
    assert [c for c in chunks if c.response_metadata.get("model_name")] == [last]
    full = chunks[0]
    for c in chunks[1:]:
        full += c
    assert full.content == "The sky is blue."
    assert full.usage_metadata is not None
    assert full.usage_metadata["total_tokens"] == 308


def test_documented_ndjson_stream_sync_split_mid_line() -> None:
    server = ScriptedServer(PiecewiseBody(split_every(DOCUMENTED_STREAM, 7)))
    chunks = list(make(server).stream("why is the sky blue?"))
    _check_stream(chunks)
    assert server.body()["stream"] is True


async def test_documented_ndjson_stream_async_split_mid_line() -> None:
    server = ScriptedServer(PiecewiseBody(split_every(DOCUMENTED_STREAM, 11)))
    chunks = [c async for c in make(server).astream("why is the sky blue?")]
    _check_stream(chunks)


async def test_documented_chat_response_ainvoke() -> None:
    server = ScriptedServer(json_response(200, DOCUMENTED_CHAT))
    msg = await make(server).ainvoke("hi")
    assert msg.content == "Hello! How are you today?"
    assert msg.usage_metadata is not None
    assert msg.usage_metadata["input_tokens"] == 26


def test_stream_thinking_goes_to_reasoning_content() -> None:
    thinking = _line(
        {"model": "qwen3", "created_at": "x", "message": {"role": "assistant", "content": "", "thinking": "Hmm."}}
    )
    server = ScriptedServer(PiecewiseBody([thinking, _delta("42"), DOCUMENTED_FINAL_LINE]))
    chunks = list(make(server, reasoning=True).stream("?"))
    assert server.body()["think"] is True
    assert chunks[0].additional_kwargs == {"reasoning_content": "Hmm."}
    assert chunks[1].content == "42"


# ---------------------------------------------------------------- tools


def test_documented_tool_call_response_gets_generated_ids() -> None:
    server = ScriptedServer(json_response(200, DOCUMENTED_TOOL_CALL), json_response(200, DOCUMENTED_TOOL_CALL))
    llm = make(server).bind_tools([GetWeather])
    first = llm.invoke("What is the weather today in Paris?")
    second = llm.invoke("And again?")
    assert isinstance(first, AIMessage)
    assert first.tool_calls[0]["name"] == "get_current_weather"
    assert first.tool_calls[0]["args"] == {"format": "celsius", "location": "Paris, FR"}
    assert first.tool_calls[0]["id"]
    assert first.tool_calls[0]["id"] != second.tool_calls[0]["id"]
    assert first.usage_metadata is not None
    assert first.usage_metadata["input_tokens"] == 122
    tools = server.body()["tools"]
    assert tools[0]["type"] == "function"
    assert tools[0]["function"]["name"] == "GetWeather"
    assert tools[0]["function"]["parameters"]["required"] == ["location", "format"]


def test_streamed_tool_call_arrives_whole_with_an_id() -> None:
    tool_line = _line({**DOCUMENTED_TOOL_CALL, "done": False, "done_reason": None})
    server = ScriptedServer(PiecewiseBody(split_every(tool_line + DOCUMENTED_FINAL_LINE, 13)))
    chunks = list(make(server).bind_tools([GetWeather]).stream("weather?"))
    full = chunks[0]
    for c in chunks[1:]:
        full += c
    assert isinstance(full, AIMessageChunk)
    assert full.tool_calls[0]["name"] == "get_current_weather"
    assert full.tool_calls[0]["args"] == {"format": "celsius", "location": "Paris, FR"}
    assert full.tool_calls[0]["id"]


def test_string_arguments_are_decoded_and_bad_ones_become_invalid_tool_calls() -> None:
    odd = {
        **DOCUMENTED_CHAT,
        "message": {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"id": "call_x", "function": {"name": "a", "arguments": '{"n": 1}'}},
                {"function": {"name": "b", "arguments": "{not json"}},
                {"function": {"name": "c", "arguments": [1, 2]}},
            ],
        },
    }
    msg = make(ScriptedServer(json_response(200, odd))).invoke("x")
    assert isinstance(msg, AIMessage)
    assert msg.tool_calls == [{"name": "a", "args": {"n": 1}, "id": "call_x", "type": "tool_call"}]
    assert [c["name"] for c in msg.invalid_tool_calls] == ["b", "c"]


def test_tool_choice_none_and_named_tool_filter_what_is_sent() -> None:
    server = ScriptedServer(json_response(200, DOCUMENTED_CHAT))

    class Other(BaseModel):
        """Another tool."""

        x: int

    llm = make(server)
    llm.bind_tools([GetWeather, Other], tool_choice="Other").invoke("x")
    assert [t["function"]["name"] for t in server.body()["tools"]] == ["Other"]
    llm.bind_tools([GetWeather, Other], tool_choice="none").invoke("x")
    assert "tools" not in server.body() or server.body()["tools"] == []
    llm.bind_tools([GetWeather, Other], tool_choice="any").invoke("x")
    assert len(server.body()["tools"]) == 2
    with pytest.raises(ValueError, match="names no bound tool"):
        llm.bind_tools([GetWeather], tool_choice="Nope")


# ---------------------------------------------------------------- structured output


class Person(BaseModel):
    age: int
    available: bool


def test_structured_output_json_schema_is_sent_as_format() -> None:
    # docs/api.md, "Chat request (Structured outputs)"
    reply = {**DOCUMENTED_CHAT, "message": {"role": "assistant", "content": '{"age": 22, "available": false}'}}
    server = ScriptedServer(json_response(200, reply))
    result = make(server).with_structured_output(Person).invoke("Ollama is 22 years old and busy saving the world.")
    assert result == Person(age=22, available=False)
    fmt = server.body()["format"]
    assert fmt["type"] == "object"
    assert fmt["properties"] == {"age": {"type": "integer"}, "available": {"type": "boolean"}}
    assert sorted(fmt["required"]) == ["age", "available"]
    assert "tools" not in server.body()


def test_structured_output_json_mode_sends_format_json() -> None:
    reply = {**DOCUMENTED_CHAT, "message": {"role": "assistant", "content": '{"a": 1}'}}
    server = ScriptedServer(json_response(200, reply))
    assert make(server).with_structured_output(None, method="json_mode").invoke("json please") == {"a": 1}
    assert server.body()["format"] == "json"


def test_structured_output_function_calling_sends_only_that_tool() -> None:
    reply = {
        **DOCUMENTED_CHAT,
        "message": {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"function": {"name": "Person", "arguments": {"age": 3, "available": True}}}],
        },
    }
    server = ScriptedServer(json_response(200, reply))
    out = make(server).with_structured_output(Person, method="function_calling", include_raw=True).invoke("x")
    assert isinstance(out, dict)
    assert out["parsed"] == Person(age=3, available=True)
    assert [t["function"]["name"] for t in server.body()["tools"]] == ["Person"]


# ---------------------------------------------------------------- errors and retries


def test_documented_model_not_found_maps_to_model_not_found_and_is_not_retried() -> None:
    server = ScriptedServer(json_response(404, {"error": 'model "llama9" not found, try pulling it first'}))
    with pytest.raises(ModelNotFoundGatewayError, match="try pulling it first") as info:
        make(server, model="llama9").invoke("hi")
    assert info.value.status_code == 404
    assert info.value.model == "llama9"
    assert server.calls == 1


def test_bad_request_maps_to_invalid_request() -> None:
    server = ScriptedServer(json_response(400, {"error": "invalid options"}))
    with pytest.raises(InvalidRequestError, match="invalid options"):
        make(server).invoke("hi")
    assert server.calls == 1


def test_server_errors_are_retried_at_the_transport_then_succeed() -> None:
    server = ScriptedServer(
        json_response(500, {"error": "llama runner process has terminated"}),
        json_response(503, {"error": "server busy"}),
        json_response(200, DOCUMENTED_CHAT),
    )
    assert make(server).invoke("hi").content == "Hello! How are you today?"
    assert server.calls == 3


def test_server_errors_exhaust_the_retry_policy() -> None:
    server = ScriptedServer(json_response(500, {"error": "boom"}))
    with pytest.raises(ProviderError, match="boom"):
        make(server).invoke("hi")
    assert server.calls == 3


def test_rate_limit_carries_retry_after() -> None:
    server = ScriptedServer(json_response(429, {"error": "slow down"}, headers={"retry-after": "7"}))
    with pytest.raises(Exception) as info:
        make(server, retry_policy=RetryPolicy(max_attempts=1)).invoke("hi")
    assert type(info.value).__name__ == "RateLimitError"
    assert getattr(info.value, "retry_after", None) == 7.0


def test_timeouts_map_to_gateway_timeout_and_are_retried() -> None:
    server = ScriptedServer(httpx.ReadTimeout("slow"))
    with pytest.raises(GatewayTimeoutError):
        make(server).invoke("hi")
    assert server.calls == 3


async def test_connect_errors_map_to_connection_error_async_and_recover() -> None:
    server = ScriptedServer(httpx.ConnectError("refused"), json_response(200, DOCUMENTED_CHAT))
    msg = await make(server).ainvoke("hi")
    assert msg.content == "Hello! How are you today?"
    assert server.calls == 2
    server = ScriptedServer(httpx.ConnectError("refused"))
    with pytest.raises(GatewayConnectionError):
        await make(server).ainvoke("hi")


def test_malformed_json_maps_to_provider_error() -> None:
    server = ScriptedServer(httpx.Response(200, content=b"<html>proxy error</html>"))
    with pytest.raises(ProviderError, match="malformed JSON"):
        make(server, retry_policy=RetryPolicy(max_attempts=1)).invoke("hi")
    server = ScriptedServer(json_response(200, {"model": "llama3.2", "done": True}))
    with pytest.raises(ProviderError, match="without a message"):
        make(server, retry_policy=RetryPolicy(max_attempts=1)).invoke("hi")


def test_mid_stream_error_line_raises_after_first_chunk_without_retry() -> None:
    body = _delta("The") + _line({"error": "an unexpected error occurred"})
    server = ScriptedServer(PiecewiseBody([body]))
    seen: list[str] = []
    with pytest.raises(ProviderError, match="unexpected error"):
        for chunk in make(server).stream("hi"):
            seen.append(str(chunk.content))
    assert seen == ["The"]
    assert server.calls == 1


async def test_mid_stream_read_error_async_is_a_connection_error_without_retry() -> None:
    server = ScriptedServer(PiecewiseBody([_delta("The")], error=httpx.ReadError("reset")))
    seen: list[str] = []
    with pytest.raises(GatewayConnectionError):
        async for chunk in make(server).astream("hi"):
            seen.append(str(chunk.content))
    assert seen == ["The"]
    assert server.calls == 1


def test_error_before_the_first_chunk_is_retried() -> None:
    server = ScriptedServer(
        json_response(503, {"error": "loading model"}),
        PiecewiseBody([_line({"error": "out of memory"})]),
        PiecewiseBody([DOCUMENTED_STREAM]),
    )
    chunks = list(make(server).stream("hi"))
    assert "".join(str(c.content) for c in chunks) == "The sky is blue."
    assert server.calls == 3


def test_stream_cut_before_done_line_is_a_provider_error() -> None:
    server = ScriptedServer(PiecewiseBody([_delta("The")]))
    with pytest.raises(ProviderError, match="before Ollama's final"):
        list(make(server, retry_policy=RetryPolicy(max_attempts=1)).stream("hi"))


# ---------------------------------------------------------------- health, host, tokens, clients


TAGS = {"models": [{"name": "llama3.2:latest", "model": "llama3.2:latest", "size": 2019393189}]}


def test_health_check_reads_api_tags() -> None:
    server = ScriptedServer(json_response(200, TAGS))
    status = make(server).health_check()
    assert status.ok
    assert status.provider == "ollama"
    assert server.requests[0].method == "GET"
    assert server.requests[0].url.path == "/api/tags"


def test_health_check_reports_a_model_that_is_not_pulled() -> None:
    status = make(ScriptedServer(json_response(200, TAGS)), model="mistral").health_check()
    assert not status.ok
    assert status.error is not None
    assert "not pulled" in status.error


async def test_ahealth_check_reports_unreachable_server() -> None:
    server = ScriptedServer(httpx.ConnectError("refused"))
    status = await make(server, retry_policy=RetryPolicy(max_attempts=1)).ahealth_check()
    assert not status.ok
    assert status.error is not None
    assert "GatewayConnectionError" in status.error
    ok = await make(ScriptedServer(json_response(200, TAGS))).ahealth_check()
    assert ok.ok
    bad = await make(ScriptedServer(json_response(200, {"nope": 1}))).ahealth_check()
    assert not bad.ok


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (None, "http://localhost:11434"),
        ("", "http://localhost:11434"),
        ("127.0.0.1", "http://127.0.0.1:11434"),
        ("0.0.0.0:11434", "http://127.0.0.1:11434"),
        ("gpu-box:8080", "http://gpu-box:8080"),
        ("http://gpu-box:8080/", "http://gpu-box:8080"),
        ("https://ollama.example.com", "https://ollama.example.com"),
        ("https://proxy.example.com/ollama/", "https://proxy.example.com/ollama"),
        ("[::1]:11434", "http://[::1]:11434"),
    ],
)
def test_ollama_host_spellings(given: str | None, expected: str) -> None:
    assert normalize_host(given) == expected


def test_base_url_comes_from_ollama_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_HOST", "gpu-box")
    llm = OllamaChatModel(model="llama3.2")
    assert llm.host == "http://gpu-box:11434"
    monkeypatch.delenv("OLLAMA_HOST")
    assert OllamaChatModel(model="llama3.2").host == "http://localhost:11434"


def test_lazy_clients_are_created_once_and_reused() -> None:
    llm = OllamaChatModel(model="llama3.2")
    assert llm.client is llm.client
    assert isinstance(llm.client, httpx.Client)
    assert llm.async_client is llm.async_client
    assert isinstance(llm.async_client, httpx.AsyncClient)


def test_token_count_is_an_offline_approximation() -> None:
    llm = OllamaChatModel(model="llama3.2")
    plain = llm.get_num_tokens_from_messages([HumanMessage("why is the sky blue?")])
    with_tools = llm.get_num_tokens_from_messages([HumanMessage("why is the sky blue?")], tools=[GetWeather])
    assert 5 < plain < 30
    assert with_tools > plain + 10


def test_identity_and_profile() -> None:
    llm = OllamaChatModel(model="llama3.2", num_ctx=4096)
    assert llm._llm_type == "multigateway-ollama"
    assert llm.profile is not None
    assert llm.profile.get("max_input_tokens") == 4096
    assert llm._get_ls_params()["ls_provider"] == "ollama"
