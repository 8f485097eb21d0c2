"""OpenAIChatModel in Responses mode, against OpenAI's documented ``/v1/responses`` wire format.

What the local llama.cpp server cannot produce (reasoning items with summaries, reasoning
and cached token counts, ``output_index`` on every event, ``response.incomplete`` /
``response.failed``) is served here by a real loopback HTTP server from payloads shaped
as OpenAI's API reference documents them; the rest is recorded from llama.cpp in
``tests/integration/test_openai_responses_*.py``.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, SystemMessage, ToolMessage
from pydantic import BaseModel

from langchain_multigateway import OpenAIChatModel
from langchain_multigateway.chat_models._responses_format import needs_responses_api
from langchain_multigateway.errors import InvalidRequestError, ProviderError
from tests.loopback import Reply, chat_completion, serve

SECRET = "sk-responses-wire-secret-0123456789"

# A reasoning model's answer as OpenAI's API reference shows it: a reasoning item with a
# summary, the message, and usage with cached and reasoning token details.
DOCUMENTED_RESPONSE: dict[str, Any] = {
    "id": "resp_67ccd2bed1ec8190b14f964abc054267",
    "object": "response",
    "created_at": 1741476542,
    "status": "completed",
    "model": "o4-mini-2025-04-16",
    "output": [
        {
            "type": "reasoning",
            "id": "rs_6820f383d7c08191846711c5df8233bc",
            "summary": [{"type": "summary_text", "text": "**Counting letters** I count the r's."}],
        },
        {
            "type": "message",
            "id": "msg_67ccd2bf17f0819081ff3bb2cf6508e6",
            "status": "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "There are 3 r's in strawberry.", "annotations": []}],
        },
    ],
    "usage": {
        "input_tokens": 36,
        "input_tokens_details": {"cached_tokens": 12},
        "output_tokens": 87,
        "output_tokens_details": {"reasoning_tokens": 64},
        "total_tokens": 123,
    },
}

DOCUMENTED_TOOL_RESPONSE: dict[str, Any] = {
    "id": "resp_tool_0001",
    "object": "response",
    "status": "completed",
    "model": "gpt-4.1-2025-04-14",
    "output": [
        {
            "type": "function_call",
            "id": "fc_12345xyz",
            "call_id": "call_12345xyz",
            "name": "get_weather",
            "arguments": '{"location":"Paris, France"}',
            "status": "completed",
        }
    ],
    "usage": {"input_tokens": 291, "output_tokens": 23, "total_tokens": 314},
}


def _documented_stream() -> list[dict[str, Any]]:
    """The event sequence OpenAI documents for a streamed reasoning answer that calls a tool."""
    resp = {"id": "resp_stream_01", "object": "response", "status": "in_progress", "model": "o4-mini", "output": []}
    rs, msg, fc = "rs_stream_01", "msg_stream_01", "fc_stream_01"
    return [
        {"type": "response.created", "sequence_number": 0, "response": resp},
        {"type": "response.in_progress", "sequence_number": 1, "response": resp},
        {
            "type": "response.output_item.added",
            "output_index": 0,
            "sequence_number": 2,
            "item": {"type": "reasoning", "id": rs, "summary": []},
        },
        {"type": "response.reasoning_summary_part.added", "item_id": rs, "output_index": 0, "summary_index": 0},
        {
            "type": "response.reasoning_summary_text.delta",
            "item_id": rs,
            "output_index": 0,
            "summary_index": 0,
            "delta": "**Planning** ",
        },
        {
            "type": "response.reasoning_summary_text.delta",
            "item_id": rs,
            "output_index": 0,
            "summary_index": 0,
            "delta": "look it up",
        },
        {
            "type": "response.output_item.done",
            "output_index": 0,
            "item": {
                "type": "reasoning",
                "id": rs,
                "summary": [{"type": "summary_text", "text": "**Planning** look it up"}],
                "encrypted_content": "gAAAAB-opaque",
            },
        },
        {
            "type": "response.output_item.added",
            "output_index": 1,
            "item": {"type": "message", "id": msg, "role": "assistant", "status": "in_progress", "content": []},
        },
        {"type": "response.output_text.delta", "item_id": msg, "output_index": 1, "content_index": 0, "delta": "Let "},
        {"type": "response.output_text.delta", "item_id": msg, "output_index": 1, "content_index": 0, "delta": "me."},
        {
            "type": "response.output_item.added",
            "output_index": 2,
            "item": {"type": "function_call", "id": fc, "call_id": "call_9", "name": "get_weather", "arguments": ""},
        },
        {"type": "response.function_call_arguments.delta", "item_id": fc, "output_index": 2, "delta": '{"location":'},
        {"type": "response.function_call_arguments.delta", "item_id": fc, "output_index": 2, "delta": '"Paris"}'},
        {
            "type": "response.function_call_arguments.done",
            "item_id": fc,
            "output_index": 2,
            "arguments": '{"location":"Paris"}',
        },
        {
            "type": "response.completed",
            "response": {
                **resp,
                "status": "completed",
                "model": "o4-mini-2025-04-16",
                "usage": {
                    "input_tokens": 50,
                    "input_tokens_details": {"cached_tokens": 32},
                    "output_tokens": 40,
                    "output_tokens_details": {"reasoning_tokens": 20},
                    "total_tokens": 90,
                },
            },
        },
    ]


def _model(url: str, **kwargs: Any) -> OpenAIChatModel:
    params: dict[str, Any] = {"model": "o4-mini", "base_url": url, "api_key": SECRET, "use_responses_api": True}
    params.update(kwargs)
    return OpenAIChatModel(**params)


def test_documented_answer_becomes_text_reasoning_blocks_and_detailed_usage() -> None:
    with serve(Reply(body=DOCUMENTED_RESPONSE)) as (url, script):
        message = _model(url).invoke("How many r's in strawberry?")
    assert script.requests[0]["path"] == "/v1/responses"
    assert message.text == "There are 3 r's in strawberry."
    assert message.usage_metadata == {
        "input_tokens": 36,
        "output_tokens": 87,
        "total_tokens": 123,
        "input_token_details": {"cache_read": 12},
        "output_token_details": {"reasoning": 64},
    }
    assert message.response_metadata["model_name"] == "o4-mini-2025-04-16"
    assert message.response_metadata["id"] == "resp_67ccd2bed1ec8190b14f964abc054267"
    blocks = message.content_blocks
    assert [b["type"] for b in blocks] == ["reasoning", "text"]
    assert blocks[0]["reasoning"] == "**Counting letters** I count the r's."  # type: ignore[typeddict-item]
    assert blocks[0]["id"] == "rs_6820f383d7c08191846711c5df8233bc"  # type: ignore[typeddict-item]


def test_output_version_v1_gives_standard_blocks_in_content() -> None:
    with serve(Reply(body=DOCUMENTED_RESPONSE)) as (url, _):
        message = _model(url, output_version="v1").invoke("How many r's in strawberry?")
    assert isinstance(message.content, list)
    kinds = [b["type"] for b in message.content if isinstance(b, dict)]
    assert kinds == ["reasoning", "text"]
    assert message.content[0]["reasoning"].startswith("**Counting letters**")  # type: ignore[index]


def test_documented_function_call_is_a_tool_call_and_a_tool_call_block() -> None:
    with serve(Reply(body=DOCUMENTED_TOOL_RESPONSE)) as (url, _):
        message = _model(url).invoke("Weather in Paris?")
    assert message.tool_calls == [
        {"name": "get_weather", "args": {"location": "Paris, France"}, "id": "call_12345xyz", "type": "tool_call"}
    ]
    assert message.response_metadata["finish_reason"] == "tool_calls"
    [block] = message.content_blocks
    assert block["type"] == "tool_call"
    assert block["id"] == "call_12345xyz"  # type: ignore[typeddict-item]


def test_documented_stream_merges_to_reasoning_text_tool_call_and_usage() -> None:
    with serve(Reply(sse=_documented_stream())) as (url, _):
        chunks = list(_model(url).stream("Weather in Paris?"))
    full: AIMessageChunk = chunks[0]
    for chunk in chunks[1:]:
        full = full + chunk
    assert full.text == "Let me."
    assert full.tool_calls == [
        {"name": "get_weather", "args": {"location": "Paris"}, "id": "call_9", "type": "tool_call"}
    ]
    assert full.usage_metadata == {
        "input_tokens": 50,
        "output_tokens": 40,
        "total_tokens": 90,
        "input_token_details": {"cache_read": 32},
        "output_token_details": {"reasoning": 20},
    }
    # LangChain's streaming rules: one chunk has usage, one the model name, the last is marked.
    assert sum(1 for c in chunks if c.usage_metadata) == 1
    assert sum(1 for c in chunks if c.response_metadata.get("model_name")) == 1
    assert chunks[-1].chunk_position == "last"
    assert full.response_metadata["model_name"] == "o4-mini-2025-04-16"
    blocks = full.content_blocks
    assert [b["type"] for b in blocks] == ["reasoning", "text", "tool_call"]
    assert blocks[0]["reasoning"] == "**Planning** look it up"  # type: ignore[typeddict-item]
    reasoning = [b for b in full.content if isinstance(b, dict) and b.get("type") == "reasoning"]
    assert reasoning[0]["encrypted_content"] == "gAAAAB-opaque"  # kept for sending back


async def test_documented_stream_async_gives_the_same_message() -> None:
    with serve(Reply(sse=_documented_stream())) as (url, _):
        chunks = [c async for c in _model(url).astream("Weather in Paris?")]
    full: AIMessageChunk = chunks[0]
    for chunk in chunks[1:]:
        full = full + chunk
    assert full.text == "Let me."
    assert full.tool_calls[0]["args"] == {"location": "Paris"}
    assert full.usage_metadata is not None
    assert full.usage_metadata["total_tokens"] == 90


def test_items_sent_whole_without_deltas_are_not_lost() -> None:
    """A server may send an item only in response.output_item.done (no deltas)."""
    events = [
        {"type": "response.created", "response": {"id": "resp_w", "status": "in_progress"}},
        {
            "type": "response.output_item.done",
            "item": {"type": "message", "id": "msg_w", "content": [{"type": "output_text", "text": "whole"}]},
        },
        {
            "type": "response.output_item.done",
            "item": {"type": "function_call", "id": "fc_w", "call_id": "call_w", "name": "f", "arguments": '{"a":1}'},
        },
        {"type": "response.completed", "response": {"id": "resp_w", "status": "completed", "model": "m"}},
    ]
    with serve(Reply(sse=events)) as (url, _):
        chunks = list(_model(url).stream("x"))
    full = chunks[0]
    for chunk in chunks[1:]:
        full = full + chunk
    assert full.text == "whole"
    assert full.tool_calls == [{"name": "f", "args": {"a": 1}, "id": "call_w", "type": "tool_call"}]


def test_incomplete_answer_reports_length_and_failed_stream_raises() -> None:
    incomplete = {
        "type": "response.incomplete",
        "response": {
            "id": "resp_i",
            "status": "incomplete",
            "model": "m",
            "incomplete_details": {"reason": "max_output_tokens"},
            "usage": {"input_tokens": 3, "output_tokens": 5, "total_tokens": 8},
        },
    }
    delta = {"type": "response.output_text.delta", "item_id": "msg_i", "output_index": 0, "delta": "cut"}
    failed = {
        "type": "response.failed",
        "response": {"id": "resp_f", "status": "failed", "error": {"code": "server_error", "message": "boom"}},
    }
    with serve(Reply(sse=[delta, incomplete])) as (url, script):
        chunks = list(_model(url, max_retries=0).stream("x"))
        assert chunks[-1].response_metadata["finish_reason"] == "length"
        assert "".join(c.text for c in chunks) == "cut"
        script.set(Reply(sse=[failed]))
        with pytest.raises(ProviderError, match="boom"):
            list(_model(url, max_retries=0).stream("x"))


def test_stream_cut_before_response_completed_is_an_error_not_a_short_answer() -> None:
    events = _documented_stream()[:9]
    with serve(Reply(sse=events)) as (url, _), pytest.raises(ProviderError, match=r"response\.completed"):
        list(_model(url, max_retries=0).stream("x"))


def test_structured_output_goes_as_text_format_and_parses() -> None:
    class Answer(BaseModel):
        value: int

    reply = {**DOCUMENTED_RESPONSE, "output": [_text_item('{"value": 3}')]}
    with serve(Reply(body=reply)) as (url, script):
        llm = _model(url, max_tokens=64)
        parsed = llm.with_structured_output(Answer, strict=True).invoke("three")
        raw = llm.with_structured_output(None, method="json_mode", include_raw=True).invoke("three")
    assert parsed == Answer(value=3)
    assert raw["parsed"] == {"value": 3}  # type: ignore[index]
    schema_body, json_body = (r["body"] for r in script.requests)
    text_format = schema_body["text"]["format"]
    assert {k: text_format[k] for k in ("type", "name", "strict")} == {
        "type": "json_schema",
        "name": "Answer",
        "strict": True,
    }
    assert text_format["schema"]["properties"]["value"]["type"] == "integer"
    assert text_format["schema"]["required"] == ["value"]
    assert json_body["text"] == {"format": {"type": "json_object"}}
    assert schema_body["max_output_tokens"] == 64
    assert "max_tokens" not in schema_body
    assert "response_format" not in schema_body
    assert "messages" not in schema_body


def _text_item(text: str) -> dict[str, Any]:
    return {"type": "message", "id": "msg_t", "role": "assistant", "content": [{"type": "output_text", "text": text}]}


def test_history_becomes_input_items() -> None:
    class Lookup(BaseModel):
        """Look something up."""

        query: str

    earlier = AIMessage(
        content=[
            {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "plan"}]},
            {"type": "text", "text": "Checking."},
            {"type": "function_call", "call_id": "call_1", "name": "Lookup", "arguments": '{"query":"cats"}'},
        ],
        tool_calls=[{"name": "Lookup", "args": {"query": "cats"}, "id": "call_1"}],
    )
    history = [
        SystemMessage("be brief"),
        HumanMessage(
            [{"type": "text", "text": "look"}, {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]
        ),
        earlier,
        ToolMessage("3 cats", tool_call_id="call_1"),
    ]
    with serve(Reply(body=DOCUMENTED_RESPONSE)) as (url, script):
        _model(url).bind_tools([Lookup], tool_choice="Lookup", parallel_tool_calls=False).invoke(history)
    body = script.requests[0]["body"]
    assert body["input"] == [
        {"type": "message", "role": "system", "content": "be brief"},
        {
            "type": "message",
            "role": "user",
            "content": [
                {"type": "input_text", "text": "look"},
                {"type": "input_image", "image_url": "https://x/y.png", "detail": "auto"},
            ],
        },
        {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "plan"}]},
        {"type": "message", "role": "assistant", "content": "Checking."},
        {"type": "function_call", "call_id": "call_1", "name": "Lookup", "arguments": '{"query": "cats"}'},
        {"type": "function_call_output", "call_id": "call_1", "output": "3 cats"},
    ]
    assert body["tools"] == [
        {
            "type": "function",
            "name": "Lookup",
            "description": "Look something up.",
            "parameters": {"properties": {"query": {"type": "string"}}, "required": ["query"], "type": "object"},
        }
    ]
    assert body["tool_choice"] == {"type": "function", "name": "Lookup"}
    assert body["parallel_tool_calls"] is False


def test_previous_response_id_sends_only_the_new_messages() -> None:
    answered = AIMessage("Hi!", response_metadata={"id": "resp_prev_1", "model_provider": "openai"})
    history = [HumanMessage("hello"), answered, HumanMessage("and now?")]
    with serve(Reply(body=DOCUMENTED_RESPONSE)) as (url, script):
        _model(url).invoke(history, previous_response_id="resp_prev_1")
        _model(url, use_previous_response_id=True).invoke(history)
        _model(url).invoke(history)
        with pytest.raises(InvalidRequestError, match="previous_response_id='resp_other'"):
            _model(url).invoke(history, previous_response_id="resp_other")
    explicit, automatic, whole = (r["body"] for r in script.requests)
    new_only = [{"type": "message", "role": "user", "content": "and now?"}]
    assert explicit["previous_response_id"] == "resp_prev_1"
    assert explicit["input"] == new_only
    assert automatic["previous_response_id"] == "resp_prev_1"
    assert automatic["input"] == new_only
    assert "previous_response_id" not in whole
    assert len(whole["input"]) == 3
    assert len(script.requests) == 3  # the unknown id was refused before sending


def test_previous_response_id_alone_selects_the_responses_api() -> None:
    answered = AIMessage("Hi!", response_metadata={"id": "resp_prev_2"})
    with serve(Reply(body=DOCUMENTED_RESPONSE)) as (url, script):
        OpenAIChatModel(model="gpt-4o", base_url=url, api_key=SECRET).invoke(
            [HumanMessage("hi"), answered, HumanMessage("more")], previous_response_id="resp_prev_2"
        )
    assert script.requests[0]["path"] == "/v1/responses"


def test_parameters_the_api_lacks_are_refused_or_dropped(caplog: pytest.LogCaptureFixture) -> None:
    with serve(Reply(body=DOCUMENTED_RESPONSE)) as (url, script):
        with pytest.raises(InvalidRequestError, match="no seed parameter"):
            _model(url, seed=7).invoke("x")
        with caplog.at_level(logging.WARNING, logger="langchain_multigateway.chat_models"):
            message = _model(url).invoke("x", stop=["END"], reasoning_effort="low")
    assert message.text
    body = script.requests[0]["body"]
    assert "stop" not in body
    assert "seed" not in body
    assert body["reasoning"] == {"effort": "low"}
    assert "'stop' is not a parameter of this API" in caplog.text
    assert len(script.requests) == 1  # the refused call sent nothing


def test_blocks_the_api_cannot_take_are_refused_naming_them() -> None:
    audio = {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}
    with serve(Reply(body=DOCUMENTED_RESPONSE)) as (url, script):
        with pytest.raises(InvalidRequestError, match="'input_audio' content block"):
            _model(url).invoke([HumanMessage([{"type": "text", "text": "hear"}, audio])])
    assert script.requests == []


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("o3-pro", True),
        ("o1-pro-2025-03-19", True),
        ("gpt-5-pro", True),
        ("gpt-5.2-pro", True),
        ("gpt-5-codex", True),
        ("codex-mini-latest", True),
        ("o4-mini-deep-research", True),
        ("computer-use-preview", True),
        ("gpt-5", False),
        ("gpt-5.1", False),
        ("gpt-4o-mini", False),
        ("o3", False),
        ("gemma-3-270m", False),
    ],
)
def test_responses_only_models_pick_the_responses_api_by_default(model: str, expected: bool) -> None:
    assert needs_responses_api(model) is expected
    with serve(Reply(body=DOCUMENTED_RESPONSE if expected else _chat()), Reply(body=_chat())) as (url, script):
        OpenAIChatModel(model=model, base_url=url, api_key=SECRET).invoke("hi")
        OpenAIChatModel(model=model, base_url=url, api_key=SECRET, use_responses_api=False).invoke("hi")
    paths = [r["path"] for r in script.requests]
    assert paths[0] == ("/v1/responses" if expected else "/v1/chat/completions")
    assert paths[1] == "/v1/chat/completions"


def _chat() -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
    }


def test_failed_response_body_is_an_error_not_an_empty_answer() -> None:
    failed = {
        "id": "resp_x",
        "object": "response",
        "status": "failed",
        "error": {"message": "overloaded"},
        "output": [],
    }
    with serve(Reply(body=failed)) as (url, _), pytest.raises(ProviderError, match="overloaded"):
        _model(url, max_retries=0).invoke("x")


def test_a_responses_answer_in_history_converts_for_every_provider() -> None:
    """A router may send a conversation answered in Responses mode to another provider next."""
    from langchain_multigateway.chat_models._anthropic_format import messages_to_anthropic
    from langchain_multigateway.chat_models._mistral_format import messages_to_mistral
    from langchain_multigateway.chat_models._ollama_format import messages_to_ollama
    from langchain_multigateway.chat_models._openai_format import messages_to_openai

    with serve(Reply(sse=_documented_stream())) as (url, _):
        chunks = list(_model(url).stream("Weather in Paris?"))
    answered = _merged(chunks)
    history = [HumanMessage("Weather in Paris?"), answered, ToolMessage("sunny", tool_call_id="call_9")]
    chat = messages_to_openai(history)
    assert chat[1]["content"] == "Let me."
    assert chat[1]["tool_calls"][0]["id"] == "call_9"
    assert messages_to_mistral(history)[1]["tool_calls"][0]["function"]["name"] == "get_weather"
    _, anthropic = messages_to_anthropic(history)
    assert [b["type"] for b in anthropic[1]["content"]] == ["text", "tool_use"]
    ollama = messages_to_ollama(history)
    assert ollama[1]["content"] == "Let me."
    assert ollama[1]["tool_calls"][0]["function"]["name"] == "get_weather"


def _merged(chunks: list[AIMessageChunk]) -> AIMessageChunk:
    full = chunks[0]
    for chunk in chunks[1:]:
        full = full + chunk
    return full


def test_built_in_tool_and_its_documented_answer_with_citations() -> None:
    """OpenAI's documented web_search answer: a web_search_call item, then text with url_citation annotations."""
    answer = {
        "id": "resp_ws",
        "object": "response",
        "status": "completed",
        "model": "gpt-4.1",
        "output": [
            {"type": "web_search_call", "id": "ws_67c9", "status": "completed"},
            {
                "type": "message",
                "id": "msg_67c9",
                "role": "assistant",
                "content": [
                    {
                        "type": "output_text",
                        "text": "A positive story: otters are back.",
                        "annotations": [
                            {
                                "type": "url_citation",
                                "start_index": 18,
                                "end_index": 33,
                                "url": "https://example.org/otters",
                                "title": "Otters return",
                            }
                        ],
                    }
                ],
            },
        ],
    }
    with serve(Reply(body=answer)) as (url, script):
        message = _model(url).bind_tools([{"type": "web_search"}]).invoke("good news today?")
    assert script.requests[0]["body"]["tools"] == [{"type": "web_search"}]
    assert message.text == "A positive story: otters are back."
    assert message.tool_calls == []
    text = next(b for b in message.content_blocks if b["type"] == "text")
    [citation] = text["annotations"]  # type: ignore[typeddict-item]
    assert citation["type"] == "citation"
    assert citation["url"] == "https://example.org/otters"
    kinds = [b["type"] for b in message.content_blocks]
    assert kinds == ["server_tool_call", "server_tool_result", "text"]  # langchain-core reads the kept item


def test_output_version_v1_stream_gives_standard_blocks_and_they_go_back_as_items() -> None:
    with serve(Reply(sse=_documented_stream()), Reply(body=DOCUMENTED_RESPONSE)) as (url, script):
        llm = _model(url, output_version="v1")
        answered = _merged(list(llm.stream("Weather in Paris?")))
        assert [b["type"] for b in answered.content if isinstance(b, dict)] == ["reasoning", "text", "tool_call"]
        reasoning, text, call = answered.content  # type: ignore[misc]
        assert reasoning["reasoning"] == "**Planning** look it up"  # type: ignore[index]
        assert reasoning["extras"] == {"encrypted_content": "gAAAAB-opaque"}  # type: ignore[index]
        assert text["text"] == "Let me."  # type: ignore[index]
        assert call["args"] == {"location": "Paris"}  # type: ignore[index]
        llm.invoke([HumanMessage("Weather in Paris?"), answered, ToolMessage("sunny", tool_call_id="call_9")])
    sent = script.requests[1]["body"]["input"]
    assert sent[1:] == [
        {
            "type": "reasoning",
            "id": "rs_stream_01",
            "summary": [{"type": "summary_text", "text": "**Planning** look it up"}],
            "encrypted_content": "gAAAAB-opaque",
        },
        {"type": "message", "role": "assistant", "content": "Let me."},
        {"type": "function_call", "call_id": "call_9", "name": "get_weather", "arguments": '{"location": "Paris"}'},
        {"type": "function_call_output", "call_id": "call_9", "output": "sunny"},
    ]


def test_abandoned_and_cancelled_responses_calls_hold_no_connection() -> None:
    import asyncio

    from tests.unit.test_provider_abandon_cancel import _held, _pool

    slow = Reply(sse=[x for e in _documented_stream() for x in (e, 0.02)])
    with serve(slow, slow, Reply(body=DOCUMENTED_RESPONSE, delay=1.0), Reply(body=DOCUMENTED_RESPONSE)) as (url, _):
        model = _model(url, max_retries=0)
        for _chunk in model.stream("hi"):
            break
        assert _held(_pool(model.client)) == []

        async def scenario() -> str:
            chunks = model.astream("hi")
            async for _chunk in chunks:
                break
            await chunks.aclose()  # type: ignore[attr-defined]
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(model.ainvoke("slow"), 0.2)
            assert _held(_pool(model.async_client)) == []
            return (await model.ainvoke("again")).text

        assert asyncio.run(scenario()) == "There are 3 r's in strawberry."


def test_a_malformed_event_is_skipped_and_the_rest_of_the_answer_kept() -> None:
    events = _documented_stream()
    bad = {"type": "response.output_text.delta", "item_id": "msg_stream_01", "output_index": 1, "delta": {"x": 1}}
    events.insert(9, bad)
    events.insert(3, "{not json")
    with serve(Reply(sse=events)) as (url, _):
        full = _merged(list(_model(url).stream("x")))
    assert full.text == "Let me."  # nothing of the bad delta shown as text
    assert full.tool_calls[0]["args"] == {"location": "Paris"}


def test_the_router_keeps_responses_parameters_for_a_model_that_speaks_it_by_default() -> None:
    from langchain_multigateway.chat_models._params import fit_params

    kwargs = {"reasoning": {"summary": "auto"}, "include": ["reasoning.encrypted_content"], "store": False}
    pro = OpenAIChatModel(model="o3-pro", api_key=SECRET)
    chat = OpenAIChatModel(model="gpt-4o-mini", api_key=SECRET)
    assert pro.responses_api is True
    assert chat.responses_api is False
    kept, dropped = fit_params(pro, kwargs)
    assert kept == kwargs
    assert dropped == {}
    kept, dropped = fit_params(chat, kwargs)
    assert "reasoning" in dropped
    assert "include" in dropped


@pytest.mark.parametrize("use_responses_api", [True, False])
def test_empty_previous_response_id_is_not_sent(use_responses_api: bool) -> None:
    """``previous_response_id=""`` (an id looked up and not found) names no stored conversation: the
    whole history goes, and no API is asked for a conversation with an empty id."""
    history = [HumanMessage("a"), AIMessage("b", response_metadata={"id": "resp_1"}), HumanMessage("c")]
    reply = Reply(body=DOCUMENTED_RESPONSE) if use_responses_api else Reply(body=chat_completion("ok"))
    with serve(reply) as (url, script):
        _model(url, use_responses_api=use_responses_api).invoke(history, previous_response_id="")
    body = script.requests[0]["body"]
    assert "previous_response_id" not in body
    assert len(body["input" if use_responses_api else "messages"]) == 3
