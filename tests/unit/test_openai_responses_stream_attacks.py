"""Hostile and broken Responses API streams (OpenAI's documented event format, served by a
real loopback HTTP server): each event repeated, cut short or missing must leave one
correct answer — nothing sent twice, nothing silently wrong — or a typed error."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from langchain_core.messages import AIMessageChunk

from langchain_multigateway.errors import GatewayConnectionError, ProviderError
from tests.loopback import Reply, serve
from tests.unit.test_openai_responses_wire import SECRET, _documented_stream, _model


def _merged(events: list[Any]) -> AIMessageChunk:
    with serve(Reply(sse=events)) as (url, _):
        chunks = list(_model(url, max_retries=0).stream("weather?"))
    full = chunks[0]
    for chunk in chunks[1:]:
        full += chunk
    assert isinstance(full, AIMessageChunk)
    return full


def _completed_with_output() -> dict[str, Any]:
    """The documented stream's ``response.completed``, carrying its output items as OpenAI sends them."""
    completed = copy.deepcopy(_documented_stream()[-1])
    completed["response"]["output"] = [
        {
            "type": "reasoning",
            "id": "rs_stream_01",
            "summary": [{"type": "summary_text", "text": "**Planning** look it up"}],
            "encrypted_content": "gAAAAB-opaque",
        },
        {"type": "message", "id": "msg_stream_01", "content": [{"type": "output_text", "text": "Let me."}]},
        {
            "type": "function_call",
            "id": "fc_stream_01",
            "call_id": "call_9",
            "name": "get_weather",
            "arguments": '{"location":"Paris"}',
        },
    ]
    return completed


def _reasoning(full: AIMessageChunk) -> dict[str, Any]:
    assert isinstance(full.content, list)
    [block] = [b for b in full.content if isinstance(b, dict) and b["type"] == "reasoning"]
    return block


def test_repeated_output_item_done_does_not_double_encrypted_content() -> None:
    events = _documented_stream()
    done = [e for e in events if e.get("type") == "response.output_item.done"]
    full = _merged([*events[:-1], *done, events[-1]])
    assert _reasoning(full)["encrypted_content"] == "gAAAAB-opaque"


def test_repeated_whole_reasoning_item_is_sent_once() -> None:
    events = _documented_stream()
    whole = {
        "type": "response.output_item.done",
        "output_index": 0,
        "item": {"type": "reasoning", "id": "rs_whole", "summary": [{"type": "summary_text", "text": "Once."}]},
    }
    full = _merged([*events[:2], whole, whole, events[-1]])
    assert [part["text"] for part in _reasoning(full)["summary"]] == ["Once."]


def test_arguments_cut_short_are_completed_from_the_final_response() -> None:
    events = _documented_stream()
    cut = [e for e in events[:-1] if e.get("delta") != '"Paris"}' and "arguments" not in e]
    full = _merged([*cut, _completed_with_output()])
    assert full.tool_calls == [
        {"name": "get_weather", "args": {"location": "Paris"}, "id": "call_9", "type": "tool_call"}
    ]


def test_final_response_items_already_streamed_are_not_sent_again() -> None:
    events = _documented_stream()
    full = _merged([*events[:-1], _completed_with_output()])
    assert full.text == "Let me."
    assert full.tool_calls[0]["args"] == {"location": "Paris"}
    assert _reasoning(full)["encrypted_content"] == "gAAAAB-opaque"


def test_error_event_after_partial_text_is_a_provider_error_without_the_key() -> None:
    events = _documented_stream()[:10]
    failed = {"type": "response.failed", "response": {"status": "failed", "error": {"code": "server_error"}}}
    with serve(Reply(sse=[*events, failed])) as (url, _), pytest.raises(ProviderError) as caught:
        list(_model(url, max_retries=0).stream("weather?"))
    assert "server_error" in str(caught.value)
    assert SECRET not in repr(caught.value) + str(caught.value)


def test_stream_cut_mid_answer_is_a_connection_error() -> None:
    with serve(Reply(sse=_documented_stream(), cut_after=10)) as (url, _):
        received: list[AIMessageChunk] = []
        with pytest.raises(GatewayConnectionError):
            received.extend(_model(url, max_retries=0).stream("weather?"))
