"""What Ollama's OpenAI-compatible endpoint shares with llama.cpp, recorded as OpenAIChatModel traffic.

No Ollama server can run here (OllamaChatModel's native ``/api/chat`` is tested against its
documented wire format in tests/unit/test_ollama_wire_format.py, and live in
tests/integration/test_ollama_live.py when ``OLLAMA_HOST`` is set). Ollama also serves
``/v1/chat/completions``, and a user pointing ``OpenAIChatModel`` at
``http://localhost:11434/v1`` sends exactly what these tests send. Each request stays
inside the request fields Ollama's OpenAI-compatibility page lists (model, messages,
max_tokens, seed, stream, stream_options.include_usage, temperature, tools,
response_format): no ``tool_choice``, no ``parallel_tool_calls``. The answers were recorded
from llama.cpp's server (Gemma 3 270M, the model Ollama names ``gemma3:270m``) on loopback,
which speaks the same subset; they prove our side of that shared protocol, not Ollama's.
Record again with ``MULTIGATEWAY_LIVE_BASE_URL=http://127.0.0.1:PORT/v1 pytest
tests/integration/test_openai_ollama_compat_recorded.py --gateway-record-mode=once``.
"""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, ToolMessage
from pydantic import BaseModel, Field

from langchain_multigateway import OpenAIChatModel
from tests.conftest import LIVE_BASE_URL, RECORDING_API_KEY

pytestmark = pytest.mark.gateway_cassette

# Ollama's request fields for /v1/chat/completions (docs.ollama.com/api/openai-compatibility).
OLLAMA_REQUEST_FIELDS = {
    "model",
    "messages",
    "frequency_penalty",
    "presence_penalty",
    "response_format",
    "seed",
    "stop",
    "stream",
    "stream_options",
    "temperature",
    "top_p",
    "max_tokens",
    "tools",
}


class GetWeather(BaseModel):
    """Get the current weather for a city."""

    city: str = Field(description="City name, e.g. Paris")


class Person(BaseModel):
    """A person mentioned in the text."""

    name: str
    age: int


def _model(**kwargs: Any) -> OpenAIChatModel:
    params: dict[str, Any] = {
        "model": "gemma3:270m",
        "base_url": LIVE_BASE_URL,
        "api_key": RECORDING_API_KEY,  # Ollama ignores the key; the SDK needs one
        "temperature": 0,
        "seed": 7,
        "max_tokens": 120,
        # Recorded on two CPU cores shared with other servers: generous limits.
        "timeout": 1800,
        "first_token_timeout": 900,
        "stream_idle_timeout": 900,
    }
    params.update(kwargs)
    return OpenAIChatModel(**params)


def _sent_fields(llm: OpenAIChatModel, messages: list[Any], *, stream: bool, **kwargs: Any) -> set[str]:
    from langchain_core.messages import convert_to_messages

    return set(llm._build_request(convert_to_messages(messages), None, stream=stream, **kwargs))


def test_ollama_compatible_chat_recorded() -> None:
    llm = _model()
    assert _sent_fields(llm, ["Say hello."], stream=False) <= OLLAMA_REQUEST_FIELDS
    reply = llm.invoke("Say hello.")
    assert isinstance(reply, AIMessage)
    assert isinstance(reply.content, str)
    assert reply.content.strip()
    assert reply.response_metadata["finish_reason"] in ("stop", "length")
    assert reply.response_metadata["model_provider"] == "openai"
    assert reply.usage_metadata is not None
    assert reply.usage_metadata["input_tokens"] > 0
    assert reply.usage_metadata["output_tokens"] > 0


def test_ollama_compatible_stream_with_usage_recorded() -> None:
    llm = _model()
    fields = _sent_fields(llm, ["Count to three."], stream=True)
    assert fields <= OLLAMA_REQUEST_FIELDS
    assert "stream_options" in fields  # include_usage: the usage chunk Ollama sends too
    chunks = list(llm.stream("Count to three."))
    assert len(chunks) > 2
    assert all(isinstance(c, AIMessageChunk) for c in chunks)
    assert sum(1 for c in chunks if c.usage_metadata) == 1
    whole = chunks[0]
    for chunk in chunks[1:]:
        whole += chunk
    assert whole.chunk_position == "last"
    assert isinstance(whole.content, str)
    assert whole.content.strip()
    assert whole.usage_metadata is not None
    assert whole.usage_metadata["output_tokens"] > 0


def test_ollama_compatible_tool_call_without_tool_choice_recorded() -> None:
    llm = _model().bind_tools([GetWeather])
    assert set(llm.kwargs) <= OLLAMA_REQUEST_FIELDS  # tools only: no tool_choice, no parallel_tool_calls
    reply = llm.invoke("What is the weather in Paris? Use the tool.")
    assert isinstance(reply, AIMessage)
    assert reply.tool_calls, f"no tool call in {reply!r}"
    call = reply.tool_calls[0]
    assert call["name"] == "GetWeather"
    assert isinstance(call["args"]["city"], str)
    assert call["id"]
    assert reply.response_metadata["finish_reason"] == "tool_calls"


def test_ollama_compatible_streamed_tool_call_and_result_round_trip_recorded() -> None:
    llm = _model().bind_tools([GetWeather])
    question = HumanMessage("What is the weather in Paris? Use the tool.")
    chunks = list(llm.stream([question]))
    assert any(c.tool_call_chunks for c in chunks)
    whole = chunks[0]
    for chunk in chunks[1:]:
        whole += chunk
    assert isinstance(whole, AIMessageChunk)
    assert whole.tool_calls
    assert whole.tool_calls[0]["name"] == "GetWeather"
    call = AIMessage(content=whole.content, tool_calls=whole.tool_calls)
    result = ToolMessage("18 degrees and sunny", tool_call_id=whole.tool_calls[0]["id"])
    answer = _model().invoke([question, call, result])
    assert isinstance(answer, AIMessage)
    assert answer.content or answer.tool_calls


def test_ollama_compatible_json_schema_structured_output_recorded() -> None:
    llm = _model()
    structured = llm.with_structured_output(Person, method="json_schema")
    person = structured.invoke("Alice is 31 years old. Extract the person.")
    assert isinstance(person, Person)
    assert isinstance(person.age, int)
