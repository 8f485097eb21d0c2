"""Reasoning from OpenAI-compatible servers, against their documented chat-completions wire format.

DeepSeek's API reference (``deepseek-reasoner``), vLLM's reasoning outputs and llama.cpp
send the model's reasoning beside the answer: ``message.reasoning_content`` and, streamed,
``delta.reasoning_content`` (newer vLLM and OpenRouter spell it ``reasoning``). These
payloads are served by a real loopback HTTP server; llama.cpp's own output is recorded in
``tests/integration/test_openai_responses_reasoning.py``.
"""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage

from langchain_multigateway import OpenAIChatModel
from langchain_multigateway.chat_models._openai_format import message_to_openai
from tests.loopback import Reply, serve

SECRET = "sk-reasoning-wire-secret-0123456789"


def _answer(message: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "chatcmpl-r1",
        "object": "chat.completion",
        "model": "deepseek-reasoner",
        "choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": "stop"}],
        "usage": {
            "prompt_tokens": 10,
            "completion_tokens": 30,
            "total_tokens": 40,
            "completion_tokens_details": {"reasoning_tokens": 20},
        },
    }


def _delta(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-r2",
        "object": "chat.completion.chunk",
        "model": "deepseek-reasoner",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


# DeepSeek's documented stream: reasoning deltas first, then the answer, usage last.
DOCUMENTED_STREAM: list[Any] = [
    _delta({"role": "assistant", "content": None, "reasoning_content": ""}),
    _delta({"content": None, "reasoning_content": "9.11 vs 9.8: "}),
    _delta({"content": None, "reasoning_content": "compare tenths."}),
    _delta({"content": "9.8 is ", "reasoning_content": None}),
    _delta({"content": "larger."}),
    _delta({"content": ""}, "stop"),
    {
        "id": "chatcmpl-r2",
        "object": "chat.completion.chunk",
        "model": "deepseek-reasoner",
        "choices": [],
        "usage": {"prompt_tokens": 10, "completion_tokens": 30, "total_tokens": 40},
    },
    "[DONE]",
]

TOOL_STREAM: list[Any] = [
    _delta({"reasoning_content": "I need the weather."}),
    _delta(
        {
            "tool_calls": [
                {"index": 0, "id": "call_w", "type": "function", "function": {"name": "get_weather", "arguments": ""}}
            ]
        }
    ),
    _delta({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]}),
    _delta({"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}),
    _delta({}, "tool_calls"),
    "[DONE]",
]


def _model(url: str, **kwargs: Any) -> OpenAIChatModel:
    return OpenAIChatModel(model="deepseek-reasoner", base_url=url, api_key=SECRET, **kwargs)


def _merged(chunks: list[AIMessageChunk]) -> AIMessageChunk:
    full = chunks[0]
    for chunk in chunks[1:]:
        full = full + chunk
    return full


@pytest.mark.parametrize("key", ["reasoning_content", "reasoning"])
def test_documented_message_reasoning_is_a_reasoning_block(key: str) -> None:
    body = _answer({"content": "9.8 is larger.", key: "Compare the tenths: 8 > 1."})
    with serve(Reply(body=body)) as (url, _):
        message = _model(url).invoke("9.11 or 9.8?")
    assert message.text == "9.8 is larger."  # the answer alone
    assert message.content_blocks == [
        {"type": "reasoning", "reasoning": "Compare the tenths: 8 > 1."},
        {"type": "text", "text": "9.8 is larger."},
    ]
    assert message.additional_kwargs["reasoning_content"] == "Compare the tenths: 8 > 1."
    assert message.usage_metadata is not None
    assert message.usage_metadata["output_token_details"] == {"reasoning": 20}


def test_reasoning_with_a_tool_call_keeps_the_call_in_content_blocks() -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
    body = _answer({"content": None, "reasoning_content": "Need weather.", "tool_calls": [call]})
    with serve(Reply(body=body)) as (url, _):
        message = _model(url).invoke("weather?")
    assert message.tool_calls[0]["args"] == {"city": "Paris"}
    assert [b["type"] for b in message.content_blocks] == ["reasoning", "tool_call"]


def test_answer_without_reasoning_keeps_plain_string_content() -> None:
    with serve(Reply(body=_answer({"content": "plain"}))) as (url, _):
        message = _model(url).invoke("hi")
    assert message.content == "plain"
    assert message.content_blocks == [{"type": "text", "text": "plain"}]


def test_documented_stream_reasoning_deltas_merge_into_one_reasoning_block() -> None:
    with serve(Reply(sse=DOCUMENTED_STREAM)) as (url, _):
        chunks = list(_model(url).stream("9.11 or 9.8?"))
    full = _merged(chunks)
    assert full.text == "9.8 is larger."
    reasoning, text = full.content_blocks
    assert reasoning["type"] == "reasoning"
    assert reasoning["reasoning"] == "9.11 vs 9.8: compare tenths."
    assert text["type"] == "text"
    assert text["text"] == "9.8 is larger."
    assert full.additional_kwargs["reasoning_content"] == "9.11 vs 9.8: compare tenths."
    assert full.usage_metadata is not None
    assert full.usage_metadata["total_tokens"] == 40
    assert chunks[-1].chunk_position == "last"


async def test_documented_stream_async_with_tool_call_after_reasoning() -> None:
    with serve(Reply(sse=TOOL_STREAM)) as (url, _):
        chunks = [c async for c in _model(url).astream("weather?")]
    full = _merged(chunks)
    assert full.tool_calls == [{"name": "get_weather", "args": {"city": "Paris"}, "id": "call_w", "type": "tool_call"}]
    kinds = [b["type"] for b in full.content_blocks]
    assert kinds == ["reasoning", "tool_call"]


def test_output_version_v1_puts_reasoning_blocks_in_content() -> None:
    body = _answer({"content": "9.8 is larger.", "reasoning_content": "tenths"})
    with serve(Reply(body=body), Reply(sse=DOCUMENTED_STREAM)) as (url, _):
        llm = _model(url, output_version="v1")
        message = llm.invoke("9.11 or 9.8?")
        streamed = _merged(list(llm.stream("9.11 or 9.8?")))
    assert isinstance(message.content, list)
    assert [b["type"] for b in message.content if isinstance(b, dict)] == ["reasoning", "text"]
    kinds = [b["type"] for b in streamed.content if isinstance(b, dict)]
    assert kinds == ["reasoning", "text"]
    assert streamed.text == "9.8 is larger."


def test_reasoning_is_not_sent_back() -> None:
    """DeepSeek documents a 400 when reasoning_content comes back in the input messages."""
    with serve(Reply(body=_answer({"content": "9.8", "reasoning_content": "tenths"}))) as (url, script):
        llm = _model(url)
        first = llm.invoke("9.11 or 9.8?")
        llm.invoke([HumanMessage("9.11 or 9.8?"), first, HumanMessage("why?")])
    assistant = script.requests[1]["body"]["messages"][1]
    assert assistant == {"role": "assistant", "content": "9.8"}
    assert message_to_openai(AIMessage(first.content)) == {"role": "assistant", "content": "9.8"}
