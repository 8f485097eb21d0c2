"""AnthropicChatModel behaviours recorded from a real Messages API server on loopback.

llama.cpp's server (Gemma 3 270M, ``../shared/tools/local-llm start``) speaks Anthropic's
Messages API at ``/v1/messages``: JSON answers and server-sent events (``message_start``
with usage, ``content_block_delta``, ``message_delta``), ``tool_use`` blocks with
``stop_reason: "tool_use"``, ``cache_read_input_tokens``, ``x-api-key`` auth, and HTTP 400
for a prompt past the context. Each test replays its own cassette; record again with
``MULTIGATEWAY_LIVE_BASE_URL=http://127.0.0.1:PORT/v1 pytest tests/integration/test_anthropic_recorded.py
--gateway-record-mode=once``. Hosted-only behaviour (thinking, signatures, cache writes) is in
tests/unit/test_anthropic_wire_format.py and test_anthropic_thinking_stream.py.
"""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, SystemMessage, ToolMessage
from pydantic import BaseModel, Field

from langchain_multigateway import ContextWindowExceededError
from langchain_multigateway.chat_models.anthropic import AnthropicChatModel
from tests.conftest import LIVE_BASE_URL, RECORDING_API_KEY

pytestmark = pytest.mark.gateway_cassette


class GetWeather(BaseModel):
    """Get the current weather for a city."""

    city: str = Field(description="City name, e.g. Paris")


class Person(BaseModel):
    """A person mentioned in the text."""

    name: str
    age: int


def _model(**kwargs: Any) -> AnthropicChatModel:
    params: dict[str, Any] = {
        "model": "gemma-3-270m",
        "base_url": LIVE_BASE_URL,
        "api_key": RECORDING_API_KEY,
        "temperature": 0,
        "max_tokens": 120,
        # Recorded on two CPU cores shared with other servers: generous limits.
        "timeout": 1800,
        "first_token_timeout": 900,
        "stream_idle_timeout": 900,
    }
    params.update(kwargs)
    return AnthropicChatModel(**params)


def _whole(chunks: list[AIMessageChunk]) -> AIMessageChunk:
    whole = chunks[0]
    for chunk in chunks[1:]:
        whole += chunk
    return whole


def _assert_weather_call(message: AIMessage) -> None:
    assert message.tool_calls, f"no tool call in {message!r}"
    call = message.tool_calls[0]
    assert call["name"] == "GetWeather"
    assert isinstance(call["args"]["city"], str)
    assert call["id"]
    assert message.response_metadata["stop_reason"] == "tool_use"
    assert message.response_metadata["model_provider"] == "anthropic"
    assert message.usage_metadata is not None
    assert message.usage_metadata["output_tokens"] > 0


def test_recorded_tool_use_forced_by_name() -> None:
    reply = _model().bind_tools([GetWeather], tool_choice="GetWeather").invoke("What is the weather in Paris?")
    _assert_weather_call(reply)


async def test_recorded_tool_use_any_async() -> None:
    reply = await _model().bind_tools([GetWeather], tool_choice="any").ainvoke("What is the weather in Paris?")
    _assert_weather_call(reply)


def test_recorded_streamed_tool_use_assembles_input_json_deltas() -> None:
    chunks = list(_model().bind_tools([GetWeather], tool_choice="any").stream("What is the weather in Paris?"))
    assert any(c.tool_call_chunks and c.tool_call_chunks[0].get("name") == "GetWeather" for c in chunks)
    assert sum(1 for c in chunks if c.tool_call_chunks) > 1, "input arrived in one piece, not as deltas"
    whole = _whole(chunks)
    assert whole.chunk_position == "last"
    _assert_weather_call(AIMessage(**whole.model_dump(exclude={"type", "tool_call_chunks", "chunk_position"})))
    assert sum(1 for c in chunks if c.usage_metadata) == 1
    assert sum(1 for c in chunks if c.response_metadata.get("model_name")) == 1


def test_recorded_tool_result_round_trip() -> None:
    question = HumanMessage("What is the weather in Paris?")
    call = _model().bind_tools([GetWeather], tool_choice="any").invoke([question])
    assert isinstance(call, AIMessage)
    assert call.tool_calls
    answer = (
        _model()
        .bind_tools([GetWeather])
        .invoke([question, call, ToolMessage("18 degrees and sunny", tool_call_id=call.tool_calls[0]["id"])])
    )
    assert isinstance(answer, AIMessage)
    assert answer.content or answer.tool_calls
    assert answer.response_metadata["stop_reason"] in ("end_turn", "max_tokens", "tool_use")


@pytest.mark.parametrize("method", ["function_calling", "json_schema"])
def test_recorded_structured_output_through_a_forced_tool(method: str) -> None:
    structured = _model().with_structured_output(Person, method=method, include_raw=True)  # type: ignore[arg-type]
    out = structured.invoke("Alice is 31 years old. Extract the person.")
    assert isinstance(out, dict)
    assert out["parsing_error"] is None
    assert isinstance(out["parsed"], Person)
    raw = out["raw"]
    assert isinstance(raw, AIMessage)
    assert raw.tool_calls[0]["name"] == "Person"


def test_recorded_json_mode_without_schema_returns_an_object() -> None:
    structured = _model().with_structured_output(None, method="json_mode")
    out = structured.invoke("Give Alice's age (31) as JSON.")
    assert isinstance(out, dict)


def test_recorded_stream_with_usage_and_cache_read() -> None:
    llm = _model()
    messages = [SystemMessage("You are a weather assistant for travellers. " * 40), HumanMessage("Hello")]
    llm.invoke(messages)  # fills the server's prompt cache
    chunks = list(llm.stream(messages))
    assert len(chunks) > 2
    with_usage = [c for c in chunks if c.usage_metadata]
    assert len(with_usage) == 1
    assert with_usage[0] is chunks[-1]
    whole = _whole(chunks)
    assert isinstance(whole.content, str)
    assert whole.content
    usage = whole.usage_metadata
    assert usage is not None
    details = usage.get("input_token_details", {})
    # The second call reads the shared prefix from the server's prompt cache.
    assert details.get("cache_read", 0) > 100
    assert usage["input_tokens"] >= details.get("cache_read", 0)
    assert whole.response_metadata["stop_reason"] in ("end_turn", "max_tokens")


def test_recorded_context_window_exceeded_maps_to_typed_error() -> None:
    with pytest.raises(ContextWindowExceededError) as caught:
        _model(max_retries=0).invoke("hello " * 5000)
    err = caught.value
    assert err.status_code == 400
    assert err.provider == "anthropic"
    assert err.retryable is False


def test_recorded_health_check() -> None:
    status = _model().health_check()
    assert status.ok, status.error
    assert status.provider == "anthropic"
