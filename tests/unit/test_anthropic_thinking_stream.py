"""Extended thinking over Anthropic's streamed Messages API, against its documented wire format.

Hosted-only: no server here thinks (llama.cpp's Messages API sends no thinking blocks), so
these tests drive the real httpx transport and SSE parser with the event sequence Anthropic
documents for "Streaming with extended thinking" (``thinking_delta`` fragments, then one
``signature_delta``, then the text or ``tool_use`` block) and check what goes back out.
Anthropic requires the signed thinking block, unchanged, at the head of the assistant turn
when a tool result is sent back during a thinking tool loop; these tests hold the request
body to that.
"""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, ToolMessage

from tests.unit._http_mock import PiecewiseBody, ScriptedServer, split_every
from tests.unit.test_anthropic_wire_format import (
    MESSAGE_START,
    MESSAGE_STOP,
    PING,
    GetWeather,
    block_start,
    block_stop,
    chain,
    json_delta,
    make,
    message_delta,
    sse,
    text_delta,
)

THINKING = {"type": "enabled", "budget_tokens": 2048}
SIGNATURE = "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds"
THOUGHT = ["I should call get_weather", " for San Francisco."]


def thinking_delta(text: str, index: int = 0) -> tuple[str, dict[str, Any]]:
    return (
        "content_block_delta",
        {"type": "content_block_delta", "index": index, "delta": {"type": "thinking_delta", "thinking": text}},
    )


def signature_delta(signature: str, index: int = 0) -> tuple[str, dict[str, Any]]:
    return (
        "content_block_delta",
        {"type": "content_block_delta", "index": index, "delta": {"type": "signature_delta", "signature": signature}},
    )


# Thinking (index 0, two deltas and its signature), then a tool_use block (index 1).
THINKING_TOOL_STREAM = sse(
    MESSAGE_START,
    block_start(0, {"type": "thinking", "thinking": ""}),
    thinking_delta(THOUGHT[0]),
    PING,
    thinking_delta(THOUGHT[1]),
    signature_delta(SIGNATURE),
    block_stop(0),
    block_start(1, {"type": "tool_use", "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "name": "GetWeather", "input": {}}),
    json_delta('{"location":', 1),
    json_delta(' "San Francisco, CA"}', 1),
    block_stop(1),
    message_delta("tool_use", 89),
    MESSAGE_STOP,
)

# The answer after the tool result: thinking again, then text (index 1).
THINKING_TEXT_STREAM = sse(
    MESSAGE_START,
    block_start(0, {"type": "thinking", "thinking": ""}),
    thinking_delta("The tool says 15 degrees."),
    signature_delta("Sig2=="),
    block_stop(0),
    block_start(1, {"type": "text", "text": ""}),
    text_delta("It is 15", 1),
    text_delta(" degrees.", 1),
    block_stop(1),
    message_delta("end_turn", 20),
    MESSAGE_STOP,
)

# A redacted thinking block arrives whole in its content_block_start.
REDACTED_STREAM = sse(
    MESSAGE_START,
    block_start(0, {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix/LafPsn4a"}),
    block_stop(0),
    block_start(1, {"type": "text", "text": ""}),
    text_delta("Done.", 1),
    block_stop(1),
    message_delta("end_turn", 4),
    MESSAGE_STOP,
)


def _stream_loop(server: ScriptedServer, **kwargs: Any) -> tuple[AIMessageChunk, list[AIMessageChunk]]:
    llm = make(server, thinking=THINKING, **kwargs).bind_tools([GetWeather])
    first = list(llm.stream("What is the weather in San Francisco?"))
    return chain(first), first


def test_streamed_thinking_and_signature_aggregate_into_one_signed_block() -> None:
    server = ScriptedServer(PiecewiseBody(split_every(THINKING_TOOL_STREAM, 17)))
    whole, chunks = _stream_loop(server)
    # Thinking arrives as it is generated, not only at the end.
    thinking_chunks = [c for c in chunks if isinstance(c.content, list) and c.content]
    assert len(thinking_chunks) >= 3
    assert whole.content[0] == {"type": "thinking", "thinking": "".join(THOUGHT), "index": 0, "signature": SIGNATURE}
    # The tool_use block stays in the content too (as Anthropic sent it), so LangChain's
    # Anthropic translator finds the call; the request is built from tool_calls.
    assert isinstance(whole.content[1], dict)
    assert whole.content[1]["type"] == "tool_use"
    assert whole.content[1]["partial_json"] == '{"location": "San Francisco, CA"}'
    assert len(whole.content) == 2
    assert whole.tool_calls == [
        {
            "name": "GetWeather",
            "args": {"location": "San Francisco, CA"},
            "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6",
            "type": "tool_call",
        }
    ]
    assert whole.response_metadata["stop_reason"] == "tool_use"
    assert server.body()["thinking"] == THINKING


def test_streamed_tool_loop_sends_the_signed_thinking_block_back_first() -> None:
    server = ScriptedServer(
        PiecewiseBody(split_every(THINKING_TOOL_STREAM, 23)), PiecewiseBody(split_every(THINKING_TEXT_STREAM, 11))
    )
    whole, _ = _stream_loop(server)
    question = HumanMessage("What is the weather in San Francisco?")
    call = AIMessage(
        content=whole.content, tool_calls=whole.tool_calls, response_metadata=whole.response_metadata, id=whole.id
    )
    result = ToolMessage("15 degrees, cloudy", tool_call_id=whole.tool_calls[0]["id"])
    llm = make(server, thinking=THINKING).bind_tools([GetWeather])
    final = chain(list(llm.stream([question, call, result])))

    sent = server.body()
    assistant = sent["messages"][1]
    assert assistant["role"] == "assistant"
    # Anthropic's rule: the thinking block, unchanged and signed, heads the assistant turn,
    # followed by the tool_use it led to; no streaming index leaks into the request.
    assert assistant["content"] == [
        {"type": "thinking", "thinking": "".join(THOUGHT), "signature": SIGNATURE},
        {
            "type": "tool_use",
            "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6",
            "name": "GetWeather",
            "input": {"location": "San Francisco, CA"},
        },
    ]
    assert sent["messages"][2]["content"][0]["type"] == "tool_result"
    assert final.content == [
        {"type": "thinking", "thinking": "The tool says 15 degrees.", "index": 0, "signature": "Sig2=="},
        {"type": "text", "text": "It is 15 degrees.", "index": 1},
    ]
    assert final.text == "It is 15 degrees."


async def test_streamed_tool_loop_async_keeps_the_signature() -> None:
    server = ScriptedServer(PiecewiseBody(split_every(THINKING_TOOL_STREAM, 29)), PiecewiseBody([THINKING_TEXT_STREAM]))
    llm = make(server, thinking=THINKING).bind_tools([GetWeather])
    chunks = [c async for c in llm.astream("What is the weather in San Francisco?")]
    whole = chain(chunks)
    call = AIMessage(content=whole.content, tool_calls=whole.tool_calls)
    result = ToolMessage("15 degrees", tool_call_id=whole.tool_calls[0]["id"])
    [c async for c in llm.astream([HumanMessage("What is the weather in San Francisco?"), call, result])]
    thinking = server.body()["messages"][1]["content"][0]
    assert thinking == {"type": "thinking", "thinking": "".join(THOUGHT), "signature": SIGNATURE}


def test_v1_output_shows_reasoning_blocks_and_sends_the_signature_back() -> None:
    server = ScriptedServer(PiecewiseBody([THINKING_TOOL_STREAM]), PiecewiseBody([THINKING_TEXT_STREAM]))
    llm = make(server, thinking=THINKING, output_version="v1").bind_tools([GetWeather])
    whole = chain(list(llm.stream("What is the weather in San Francisco?")))
    reasoning = [b for b in whole.content_blocks if b["type"] == "reasoning"]
    assert len(reasoning) == 1
    assert reasoning[0].get("reasoning") == "".join(THOUGHT)
    assert reasoning[0].get("extras", {}).get("signature") == SIGNATURE
    assert [b["type"] for b in whole.content_blocks] == ["reasoning", "tool_call"]

    # The v1 message, as an agent keeps it in its history, goes back as signed thinking.
    call = AIMessage(content=whole.content, tool_calls=whole.tool_calls)
    result = ToolMessage("15 degrees", tool_call_id=whole.tool_calls[0]["id"])
    final = chain(list(llm.stream([HumanMessage("What is the weather in San Francisco?"), call, result])))
    assert server.body()["messages"][1]["content"][0] == {
        "type": "thinking",
        "thinking": "".join(THOUGHT),
        "signature": SIGNATURE,
    }
    assert [b["type"] for b in final.content_blocks] == ["reasoning", "text"]


def test_content_blocks_of_a_default_stream_show_reasoning() -> None:
    server = ScriptedServer(PiecewiseBody([THINKING_TEXT_STREAM]))
    whole = chain(list(make(server, thinking=THINKING).stream("?")))
    assert [b["type"] for b in whole.content_blocks] == ["reasoning", "text"]
    assert whole.content_blocks[0].get("reasoning") == "The tool says 15 degrees."


def test_reasoning_without_a_signature_is_not_sent_to_anthropic() -> None:
    # A reasoning block from another provider (or a summary) has no signature Anthropic
    # could verify; sending it would be rejected, so it is left out of the request.
    server = ScriptedServer(PiecewiseBody([THINKING_TEXT_STREAM]))
    history = AIMessage(
        content=[
            {"type": "reasoning", "reasoning": "from elsewhere"},
            {"type": "text", "text": "Earlier answer."},
        ]
    )
    list(make(server).stream([HumanMessage("hi"), history, HumanMessage("and now?")]))
    assert server.body()["messages"][1]["content"] == "Earlier answer."


def test_redacted_thinking_streams_whole_and_goes_back_unchanged() -> None:
    server = ScriptedServer(PiecewiseBody([REDACTED_STREAM]), PiecewiseBody([THINKING_TEXT_STREAM]))
    llm = make(server, thinking=THINKING)
    whole = chain(list(llm.stream("?")))
    assert whole.content == [
        {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix/LafPsn4a", "index": 0},
        {"type": "text", "text": "Done.", "index": 1},
    ]
    list(llm.stream([HumanMessage("?"), AIMessage(content=whole.content), HumanMessage("more")]))
    assert server.body()["messages"][1]["content"] == [
        {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix/LafPsn4a"},
        {"type": "text", "text": "Done."},
    ]


@pytest.mark.parametrize("thinking", [None, {"type": "disabled"}])
def test_text_stays_plain_text_without_thinking(thinking: dict[str, Any] | None) -> None:
    body = sse(
        MESSAGE_START, block_start(0, {"type": "text", "text": ""}), text_delta("Hi"), message_delta("end_turn", 1)
    )
    server = ScriptedServer(PiecewiseBody([body + sse(MESSAGE_STOP)]))
    whole = chain(list(make(server, thinking=thinking).stream("?")))
    assert whole.content == "Hi"


def test_v1_invoke_of_a_documented_tool_use_answer_shows_text_and_tool_call_blocks() -> None:
    from tests.unit._http_mock import json_response
    from tests.unit.test_anthropic_wire_format import DOCUMENTED_TOOL_USE

    server = ScriptedServer(json_response(200, DOCUMENTED_TOOL_USE), json_response(200, DOCUMENTED_TOOL_USE))
    llm = make(server, output_version="v1").bind_tools([GetWeather])
    reply = llm.invoke("Weather in San Francisco?")
    assert [b["type"] for b in reply.content_blocks] == ["text", "tool_call"]
    assert reply.content_blocks[1].get("args") == {"location": "San Francisco, CA", "unit": "celsius"}
    # Sent back, the tool_use is built once, from tool_calls.
    result = ToolMessage("15 degrees", tool_call_id=reply.tool_calls[0]["id"])
    llm.invoke([HumanMessage("Weather in San Francisco?"), reply, result])
    assistant = server.body()["messages"][1]["content"]
    assert [b["type"] for b in assistant] == ["text", "tool_use"]
    assert assistant[1]["input"] == {"location": "San Francisco, CA", "unit": "celsius"}
