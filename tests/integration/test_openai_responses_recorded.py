"""OpenAIChatModel in Responses mode against llama.cpp's real ``/v1/responses``, replayed.

Recorded from ``../shared/tools/local-llm start`` (Gemma 3 270M, the default template):
tool calls (``function_call`` items, ``response.function_call_arguments.delta`` events),
a tool result sent back as a ``function_call_output`` item, structured output requested
as ``text.format``, streamed usage from ``response.completed``, and ``previous_response_id``.
What this server does differently from OpenAI is said where a test depends on it.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, ToolMessage
from pydantic import BaseModel, Field

from langchain_multigateway import OpenAIChatModel
from langchain_multigateway.errors import InvalidRequestError
from tests.conftest import RECORDING_API_KEY

pytestmark = pytest.mark.vcr


class GetWeather(BaseModel):
    """Get the current weather in a city."""

    city: str = Field(description="City name, e.g. Paris")


def _model(base_url: str, **kwargs: Any) -> OpenAIChatModel:
    params: dict[str, Any] = {
        "model": "gemma-3-270m",
        "base_url": base_url,
        "api_key": RECORDING_API_KEY,
        "use_responses_api": True,
        "temperature": 0,
        "max_tokens": 120,
        "first_token_timeout": 300,
        "stream_idle_timeout": 300,
    }
    params.update(kwargs)
    return OpenAIChatModel(**params)


def _merged(chunks: list[AIMessageChunk]) -> AIMessageChunk:
    full = chunks[0]
    for chunk in chunks[1:]:
        full = full + chunk
    return full


def _sent(vcr: Any, index: int = 0) -> dict[str, Any]:
    """The body of a request in this test's cassette (what was really sent while recording)."""
    request = vcr.requests[index]
    assert request.uri.endswith("/v1/responses")
    body = request.body.decode() if isinstance(request.body, bytes) else request.body
    return dict(json.loads(body))


def _tools(base_url: str) -> Any:
    # llama.cpp serves a named tool_choice as "auto": force the one tool with "required".
    return _model(base_url).bind_tools([GetWeather], tool_choice="any", parallel_tool_calls=False)


def test_tool_call_is_parsed_from_a_function_call_item(live_base_url: str, vcr: Any) -> None:
    message = _tools(live_base_url).invoke("What is the weather in Paris?")
    [call] = message.tool_calls
    assert call["name"] == "GetWeather"
    assert isinstance(call["args"]["city"], str)
    assert str(call["id"]).startswith("call_")
    assert message.response_metadata["finish_reason"] == "tool_calls"
    assert str(message.response_metadata["id"]).startswith("resp_")
    [block] = message.content_blocks
    assert block["type"] == "tool_call"
    assert block["id"] == call["id"]  # type: ignore[typeddict-item]
    body = _sent(vcr)
    assert body["tools"][0]["name"] == "GetWeather"  # Responses spelling: no "function" wrapper
    assert body["tool_choice"] == "required"
    assert body["max_output_tokens"] == 120


async def test_streamed_tool_call_merges_from_argument_deltas(live_base_url: str) -> None:
    chunks = [c async for c in _tools(live_base_url).astream("What is the weather in Paris?")]
    assert sum(1 for c in chunks if c.tool_call_chunks) > 2  # arguments arrived in pieces
    full = _merged(chunks)
    [call] = full.tool_calls
    assert call["name"] == "GetWeather"
    assert isinstance(call["args"]["city"], str)
    assert [b["type"] for b in full.content_blocks] == ["tool_call"]
    assert full.usage_metadata is not None
    assert full.usage_metadata["input_tokens"] > 0
    assert sum(1 for c in chunks if c.usage_metadata) == 1


def test_tool_result_goes_back_as_function_call_output(live_base_url: str, vcr: Any) -> None:
    call = {"name": "GetWeather", "args": {"city": "Paris"}, "id": "call_weather_1"}
    history = [
        HumanMessage("What is the weather in Paris?"),
        AIMessage("", tool_calls=[call]),
        ToolMessage("Sunny, 24 C", tool_call_id="call_weather_1"),
    ]
    answer = _model(live_base_url, max_tokens=40).invoke(history)
    assert answer.response_metadata["status"] == "completed"
    assert answer.text.strip()
    sent = _sent(vcr)["input"]
    assert [item["type"] for item in sent] == ["message", "function_call", "function_call_output"]
    assert sent[2] == {"type": "function_call_output", "call_id": "call_weather_1", "output": "Sunny, 24 C"}


def test_structured_output_is_asked_as_text_format(live_base_url: str, vcr: Any) -> None:
    """llama.cpp's /v1/responses ignores ``text.format`` (its chat route honours
    ``response_format``): the answer is free text, so with include_raw the parsing error is
    reported beside the raw answer instead of raised."""
    result = _model(live_base_url, max_tokens=40).with_structured_output(GetWeather, include_raw=True).invoke("Paris")
    assert isinstance(result, dict)
    assert isinstance(result["raw"], AIMessage)
    assert result["raw"].text
    assert result["parsed"] is None
    assert result["parsing_error"] is not None
    text_format = _sent(vcr)["text"]["format"]
    assert text_format["type"] == "json_schema"
    assert text_format["name"] == "GetWeather"
    assert text_format["schema"]["required"] == ["city"]


def test_stream_usage_comes_once_from_response_completed(live_base_url: str, vcr: Any) -> None:
    chunks = list(_model(live_base_url, max_tokens=24).stream("Write one word."))
    assert sum(1 for c in chunks if c.usage_metadata) == 1
    last = chunks[-1]
    assert last.chunk_position == "last"
    assert last.usage_metadata is not None
    assert last.usage_metadata["input_tokens"] > 0
    assert last.usage_metadata["output_tokens"] > 0
    assert "cache_read" in last.usage_metadata.get("input_token_details", {})  # llama.cpp reports cached_tokens
    assert last.response_metadata["model_name"]
    assert sum(1 for c in chunks if c.response_metadata.get("model_name")) == 1
    assert _merged(chunks).text.strip()
    assert _sent(vcr)["stream"] is True


def test_previous_response_id_sends_only_new_input_and_a_refusal_is_typed(live_base_url: str, vcr: Any) -> None:
    """llama.cpp keeps no conversations: it refuses ``previous_response_id`` with a 400,
    which arrives as InvalidRequestError with its message (not retried, not an answer)."""
    earlier = AIMessage("Hello!", response_metadata={"id": "resp_earlier_turn"})
    history = [HumanMessage("Hi"), earlier, HumanMessage("How are you?")]
    with pytest.raises(InvalidRequestError, match="previous_response_id"):
        _model(live_base_url, max_tokens=8, use_previous_response_id=True).invoke(history)
    body = _sent(vcr)
    assert body["previous_response_id"] == "resp_earlier_turn"
    assert body["input"] == [{"type": "message", "role": "user", "content": "How are you?"}]
    assert len(vcr.requests) == 1
