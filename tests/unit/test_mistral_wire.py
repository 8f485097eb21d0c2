"""What MistralChatModel sends and how it reads Mistral-only answer shapes.

Requests go through the real mistralai SDK to a loopback server. The answers
here are hand-written for what the recorded llama.cpp server cannot produce:
Mistral's hosted API sends whole tool calls in one stream delta, usage in the
last stream chunk, and content as a list of text / thinking chunks (Magistral).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from pydantic import BaseModel

from langchain_multigateway import RetryPolicy
from langchain_multigateway.chat_models.mistral import MistralChatModel
from langchain_multigateway.tokens import count_message_tokens
from tests.loopback import Reply, Script, serve, sse


class GetWeather(BaseModel):
    """Get the weather in a city."""

    city: str


def completion(message: dict[str, Any], finish_reason: str = "stop") -> Reply:
    return Reply(
        200,
        {
            "id": "cmpl-9",
            "object": "chat.completion",
            "model": "magistral-small-2509",
            "created": 1,
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
            "choices": [{"index": 0, "finish_reason": finish_reason, "message": {"role": "assistant", **message}}],
        },
    )


@pytest.fixture(scope="module")
def loopback() -> Iterator[tuple[str, Script]]:
    with serve() as (base_url, script):
        yield base_url.removesuffix("/v1"), script  # the SDK adds /v1 itself


@pytest.fixture
def url(loopback: tuple[str, Script]) -> str:
    return loopback[0]


@pytest.fixture
def script(loopback: tuple[str, Script]) -> Script:
    return loopback[1]


def make(url: str, **kwargs: Any) -> MistralChatModel:
    params: dict[str, Any] = {
        "server_url": url,
        "api_key": "k",
        "retry_policy": RetryPolicy(max_attempts=1),
        "model": "magistral-small-2509",
    }
    params.update(kwargs)
    return MistralChatModel(**params)


def sent(script: Script) -> dict[str, Any]:
    body = script.requests[-1]["body"]
    assert isinstance(body, dict)
    return body


def test_request_fields(url: str, script: Script) -> None:
    script.set(completion({"content": "ok"}))
    model = make(
        url,
        temperature=0.2,
        max_tokens=50,
        top_p=0.9,
        random_seed=3,
        safe_prompt=True,
        stop=["END"],
        default_headers={"x-team": "gw"},
        model_kwargs={"presence_penalty": 0.5},
        parallel_tool_calls=False,
    )
    model.invoke([SystemMessage("be brief"), HumanMessage("hi", name="bob")])
    body = sent(script)
    assert body["model"] == "magistral-small-2509"
    assert body["temperature"] == 0.2
    assert body["max_tokens"] == 50
    assert body["top_p"] == 0.9
    assert body["random_seed"] == 3
    assert body["safe_prompt"] is True
    assert body["stop"] == ["END"]
    assert body["presence_penalty"] == 0.5
    assert body["messages"] == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
    assert "parallel_tool_calls" not in body  # only with tools
    assert "tools" not in body
    assert script.requests[-1]["headers"]["x-team"] == "gw"
    # invoke-time overrides, LangChain's "seed" spelling included
    model.invoke("hi", seed=11, stop=["X"], model="other")
    body = sent(script)
    assert body["random_seed"] == 11
    assert body["stop"] == ["X"]
    assert body["model"] == "other"


def test_endpoint_alias_and_no_sdk_retries_config(url: str) -> None:
    model = MistralChatModel(endpoint=url + "/v1", api_key="k")
    assert model.server_url == url
    assert MistralChatModel(base_url=url + "/", api_key="k").server_url == url
    retry_config = model.client.sdk_configuration.retry_config
    assert getattr(retry_config, "strategy", None) == "none"


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("any", "required"),
        ("required", "required"),
        ("auto", "auto"),
        ("none", "none"),
        ("GetWeather", {"type": "function", "function": {"name": "GetWeather"}}),
    ],
)
def test_tool_choice_on_the_wire(url: str, script: Script, choice: str, expected: Any) -> None:
    script.set(completion({"content": "ok"}))
    make(url, parallel_tool_calls=False).bind_tools([GetWeather], tool_choice=choice).invoke("weather?")
    body = sent(script)
    assert body["tool_choice"] == expected
    assert body["parallel_tool_calls"] is False
    assert body["tools"][0]["function"]["name"] == "GetWeather"


def test_whole_tool_call_with_dict_arguments(url: str, script: Script) -> None:
    call = {"id": "abc123XYZ", "type": "function", "function": {"name": "GetWeather", "arguments": {"city": "Lyon"}}}
    script.set(completion({"content": "", "tool_calls": [call]}, "tool_calls"))
    msg = make(url).bind_tools([GetWeather]).invoke("weather in Lyon?")
    assert isinstance(msg, AIMessage)
    assert msg.tool_calls == [{"name": "GetWeather", "args": {"city": "Lyon"}, "id": "abc123XYZ", "type": "tool_call"}]
    assert msg.response_metadata["finish_reason"] == "tool_calls"


def test_tool_call_history_round_trip(url: str, script: Script) -> None:
    script.set(completion({"content": "It is sunny."}))
    history = [
        HumanMessage("weather in Lyon?"),
        AIMessage("", tool_calls=[{"name": "GetWeather", "args": {"city": "Lyon"}, "id": "abc123XYZ"}]),
        ToolMessage("sunny", tool_call_id="abc123XYZ", name="GetWeather"),
    ]
    assert make(url).invoke(history).content == "It is sunny."
    messages = sent(script)["messages"]
    assert messages[1]["tool_calls"][0]["function"] == {"name": "GetWeather", "arguments": '{"city": "Lyon"}'}
    assert messages[2] == {"role": "tool", "content": "sunny", "tool_call_id": "abc123XYZ"}


def test_thinking_chunks_become_reasoning(url: str, script: Script) -> None:
    content = [
        {"type": "thinking", "thinking": [{"type": "text", "text": "User greets. "}]},
        {"type": "text", "text": "Hello!"},
    ]
    script.set(completion({"content": content}))
    msg = make(url).invoke("hi")
    assert msg.content == "Hello!"
    assert msg.additional_kwargs["reasoning_content"] == "User greets. "
    assert msg.usage_metadata == {"input_tokens": 10, "output_tokens": 5, "total_tokens": 15}
    meta = msg.response_metadata
    assert meta["model_name"] == "magistral-small-2509"
    assert meta["model_provider"] == "mistral"
    assert meta["id"] == "cmpl-9"


def _event(delta: dict[str, Any], finish: str | None = None, usage: dict[str, Any] | None = None) -> dict[str, Any]:
    event: dict[str, Any] = {
        "id": "s-7",
        "object": "chat.completion.chunk",
        "model": "mistral-small-2503",
        "created": 1,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    if usage:
        event["usage"] = usage
    return event


HOSTED_TOOL_STREAM = sse(
    _event({"role": "assistant", "content": ""}),
    _event(
        {"tool_calls": [{"id": "Wq1", "function": {"name": "GetWeather", "arguments": '{"city": "Nice"}'}}]},
        "tool_calls",
        {"prompt_tokens": 60, "completion_tokens": 12, "total_tokens": 72},
    ),
)


def test_stream_hosted_whole_tool_call_and_usage(url: str, script: Script) -> None:
    script.set(HOSTED_TOOL_STREAM)
    chunks = list(make(url).bind_tools([GetWeather], tool_choice="any").stream("weather in Nice?"))
    full: AIMessageChunk | None = None
    for chunk in chunks:
        assert isinstance(chunk, AIMessageChunk)
        full = chunk if full is None else full + chunk
    assert full is not None
    assert full.tool_calls == [{"name": "GetWeather", "args": {"city": "Nice"}, "id": "Wq1", "type": "tool_call"}]
    assert full.usage_metadata == {"input_tokens": 60, "output_tokens": 12, "total_tokens": 72}
    assert sum(1 for c in chunks if c.usage_metadata) == 1
    assert getattr(chunks[-1], "chunk_position", None) == "last"
    assert full.response_metadata["finish_reason"] == "tool_calls"
    assert full.response_metadata["model_name"] == "mistral-small-2503"
    assert sent(script)["stream"] is True


async def test_astream_reasoning_and_text(url: str, script: Script) -> None:
    script.set(
        sse(
            _event({"content": [{"type": "thinking", "thinking": [{"type": "text", "text": "hmm"}]}]}),
            _event({"content": "Bon"}),
            _event({"content": "jour"}, "stop", {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}),
        )
    )
    full: AIMessageChunk | None = None
    async for chunk in make(url).astream("salut"):
        full = chunk if full is None else full + chunk
    assert full is not None
    assert full.content == "Bonjour"
    assert full.additional_kwargs["reasoning_content"] == "hmm"
    assert full.usage_metadata is not None
    assert full.usage_metadata["total_tokens"] == 5
    assert "usage_estimated" not in full.response_metadata


def test_stream_without_server_usage_reports_a_marked_estimate(url: str, script: Script) -> None:
    # What an OpenAI-compatible server (llama.cpp) sends the mistralai SDK: no usage in the stream.
    script.set(sse(_event({"content": "hello "}), _event({"content": "world"}, "stop")))
    chunks = list(make(url, model="mistral-small-latest").stream("hello world"))
    assert sum(1 for c in chunks if c.usage_metadata) == 1
    last = chunks[-1]
    assert last.response_metadata["usage_estimated"] is True
    assert last.usage_metadata is not None
    assert last.usage_metadata["output_tokens"] == 2  # "hello world" in cl100k
    # the prompt "hello world" as one user message: framing 3+3, role 1, content 2
    assert last.usage_metadata["input_tokens"] == 9
    assert last.usage_metadata["total_tokens"] == 11


def test_structured_output_json_schema_request(url: str, script: Script) -> None:
    script.set(completion({"content": '{"city": "Paris"}'}))
    result = make(url).with_structured_output(GetWeather).invoke("where?")
    assert result == GetWeather(city="Paris")
    fmt = sent(script)["response_format"]
    assert fmt["type"] == "json_schema"
    assert fmt["json_schema"]["name"] == "GetWeather"
    assert fmt["json_schema"]["schema"]["properties"] == {"city": {"type": "string"}}


def test_structured_output_function_calling_forces_the_tool(url: str, script: Script) -> None:
    call = {"id": "t1", "function": {"name": "GetWeather", "arguments": '{"city": "Brest"}'}}
    script.set(completion({"content": "", "tool_calls": [call]}, "tool_calls"))
    result = make(url).with_structured_output(GetWeather, method="function_calling").invoke("where?")
    assert result == GetWeather(city="Brest")
    assert sent(script)["tool_choice"] == "required"


def test_structured_output_json_mode_request(url: str, script: Script) -> None:
    script.set(completion({"content": '{"a": 1}'}))
    assert make(url).with_structured_output(None, method="json_mode").invoke("json please") == {"a": 1}
    assert sent(script)["response_format"] == {"type": "json_object"}


def test_num_tokens_is_the_cl100k_approximation() -> None:
    model = MistralChatModel(api_key="k")
    messages: list[BaseMessage] = [HumanMessage("Hello there, how are you today?")]
    expected = count_message_tokens([{"role": "user", "content": "Hello there, how are you today?"}], "cl100k_base")
    assert model.get_num_tokens_from_messages(messages) == expected
    with_tools = model.get_num_tokens_from_messages(messages, tools=[GetWeather])
    assert with_tools > expected + len(json.dumps(GetWeather.model_json_schema())) // 8
