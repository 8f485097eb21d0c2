"""OpenAIChatModel behaviours recorded from llama.cpp (Gemma 3 270M) on loopback.

Each test replays its own cassette; record again with
``pytest tests/integration/test_openai_recorded.py --record-mode=rewrite``
while ``../shared/tools/local-llm start`` serves on 127.0.0.1:8088.
"""

from __future__ import annotations

import pytest
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage
from pydantic import BaseModel, Field

from langchain_multigateway import ContextWindowExceededError, OpenAIChatModel
from tests.conftest import LIVE_BASE_URL, RECORDING_API_KEY

pytestmark = pytest.mark.gateway_cassette


class GetWeather(BaseModel):
    """Get the current weather for a city."""

    city: str = Field(description="City name, e.g. Paris")


class Person(BaseModel):
    """A person mentioned in the text."""

    name: str
    age: int


def _model(**kwargs: object) -> OpenAIChatModel:
    params: dict[str, object] = {
        "model": "gemma-3-270m",
        "base_url": LIVE_BASE_URL,
        "api_key": RECORDING_API_KEY,
        "temperature": 0,
        "seed": 7,
        "max_tokens": 160,
        "parallel_tool_calls": False,
    }
    params.update(kwargs)
    return OpenAIChatModel(**params)  # type: ignore[arg-type]


def _assert_weather_call(message: AIMessage) -> None:
    assert message.tool_calls, f"no tool call in {message!r}"
    call = message.tool_calls[0]
    assert call["name"] == "GetWeather"
    assert isinstance(call["args"]["city"], str)
    assert call["id"]
    assert message.response_metadata["finish_reason"] == "tool_calls"
    assert message.usage_metadata is not None
    assert message.usage_metadata["output_tokens"] > 0


def test_recorded_tool_call() -> None:
    reply = _model().bind_tools([GetWeather], tool_choice="required").invoke("What is the weather in Paris?")
    _assert_weather_call(reply)


async def test_recorded_tool_call_async() -> None:
    reply = await _model().bind_tools([GetWeather], tool_choice="required").ainvoke("What is the weather in Paris?")
    _assert_weather_call(reply)


def test_recorded_streamed_tool_call_assembles_from_fragments() -> None:
    llm = _model().bind_tools([GetWeather], tool_choice="required")
    chunks = list(llm.stream("What is the weather in Paris?"))
    assert all(isinstance(c, AIMessageChunk) for c in chunks)
    fragments = [c for c in chunks if c.tool_call_chunks]
    assert fragments, "the server streamed no tool-call fragments"
    whole = chunks[0]
    for chunk in chunks[1:]:
        whole = whole + chunk
    assert isinstance(whole, AIMessageChunk)
    assert whole.chunk_position == "last"
    _assert_weather_call(AIMessage(**whole.model_dump(exclude={"type", "tool_call_chunks", "chunk_position"})))
    # Exactly one chunk carries the usage and the model name.
    assert sum(1 for c in chunks if c.usage_metadata) == 1
    assert sum(1 for c in chunks if c.response_metadata.get("model_name")) == 1


def test_recorded_tool_result_round_trip() -> None:
    llm = _model().bind_tools([GetWeather])
    question = HumanMessage("What is the weather in Paris?")
    call = llm.invoke([question])
    assert isinstance(call, AIMessage)
    assert call.tool_calls
    from langchain_core.messages import ToolMessage

    answer = _model().invoke(
        [question, call, ToolMessage("18 degrees and sunny", tool_call_id=call.tool_calls[0]["id"])]
    )
    assert isinstance(answer.content, str)
    assert answer.content.strip()


def test_recorded_json_schema_structured_output() -> None:
    structured = _model().with_structured_output(Person, method="json_schema")
    person = structured.invoke("Alice is 31 years old. Extract the person.")
    assert isinstance(person, Person)
    assert isinstance(person.age, int)


def test_recorded_function_calling_structured_output_include_raw() -> None:
    structured = _model().with_structured_output(Person, method="function_calling", include_raw=True)
    out = structured.invoke("Alice is 31 years old. Extract the person.")
    assert isinstance(out, dict)
    assert isinstance(out["raw"], AIMessage)
    assert out["parsing_error"] is None
    assert isinstance(out["parsed"], Person)


def test_recorded_context_window_exceeded_maps_to_typed_error() -> None:
    llm = _model(max_retries=0)
    with pytest.raises(ContextWindowExceededError) as caught:
        llm.invoke("hello " * 5000)
    err = caught.value
    assert err.status_code == 400
    assert err.provider == "openai"
    assert "context" in err.message
    assert err.retryable is False


def test_recorded_health_check() -> None:
    status = _model().health_check()
    assert status.ok, status.error
    assert status.provider == "openai"
