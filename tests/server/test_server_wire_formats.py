"""The server's parsing and formatting in both wire formats, error mapping, keys and limits, in process.

Request bodies are written as OpenAI's and Anthropic's API references document them.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

import pytest
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, SystemMessage, ToolMessage

from langchain_multigateway.errors import (
    AllDeploymentsFailedError,
    AttemptRecord,
    AuthenticationError,
    BudgetExceededError,
    ConfigurationError,
    ContextWindowExceededError,
    GatewayTimeoutError,
    ProviderError,
    RateLimitError,
)
from langchain_multigateway.routing import NoDeploymentAvailableError
from langchain_multigateway.server.anthropic_api import EventWriter, message_body, parse_messages_request
from langchain_multigateway.server.call import ChatCall, Outcome
from langchain_multigateway.server.errors import ApiError, anthropic_error_body, api_error_from, openai_error_body
from langchain_multigateway.server.keys import KeyStore, parse_duration, parse_expiry
from langchain_multigateway.server.limits import KeyLimits
from langchain_multigateway.server.openai_api import ChunkWriter, completion_body, parse_chat_request

USER = [{"role": "user", "content": "hi"}]


# ---------------------------------------------------------------------- OpenAI requests
@pytest.mark.parametrize(
    ("body", "says", "param"),
    [
        ([], "must be a JSON object", None),
        ({"model": "m", "messages": USER, "frequency": 1}, "unsupported parameter(s): frequency", "frequency"),
        ({"messages": USER}, "'model' is required", "model"),
        ({"model": "m", "messages": USER, "n": 3}, "only n=1 is supported (got n=3)", "n"),
        ({"model": "m", "messages": USER, "logprobs": True}, "logprobs are not supported", "logprobs"),
        ({"model": "m", "messages": []}, "'messages' must be a non-empty list", "messages"),
        ({"model": "m", "messages": [{"role": "robot", "content": "x"}]}, "whose role is system", "messages[0]"),
        ({"model": "m", "messages": [{"role": "tool", "content": "x"}]}, "needs 'tool_call_id'", None),
        ({"model": "m", "messages": USER, "temperature": 3}, "'temperature' must be a number from 0 to 2", None),
        ({"model": "m", "messages": USER, "top_p": True}, "'top_p' must be a number from 0 to 1", None),
        ({"model": "m", "messages": USER, "max_tokens": 0}, "'max_tokens' must be a positive integer", None),
        ({"model": "m", "messages": USER, "stop": [1]}, "'stop' must be a string or a list", "stop"),
        ({"model": "m", "messages": USER, "tool_choice": "required"}, "'tool_choice' needs 'tools'", None),
        ({"model": "m", "messages": USER, "tools": [{"type": "x"}]}, "'tools' must be a list", "tools"),
        (
            {"model": "m", "messages": USER, "tools": [{"type": "function", "function": {}}]},
            "a tool name is 1 to 64",
            None,
        ),
        (
            {
                "model": "m",
                "messages": USER,
                "tools": [{"type": "function", "function": {"name": "a"}}],
                "tool_choice": {"type": "function", "function": {"name": "b"}},
            },
            "must name one of the tools: ['a']",
            "tool_choice",
        ),
        (
            {
                "model": "m",
                "messages": USER,
                "tools": [{"type": "function", "function": {"name": "a"}}],
                "tool_choice": "sometimes",
            },
            "'tool_choice' must be",
            "tool_choice",
        ),
        ({"model": "m", "messages": USER, "response_format": {"type": "xml"}}, "response_format.type must be", None),
        (
            {"model": "m", "messages": USER, "response_format": {"type": "json_schema", "json_schema": {}}},
            "needs 'name' and 'schema'",
            None,
        ),
    ],
)
def test_openai_request_errors_say_what_to_fix(body: Any, says: str, param: str | None) -> None:
    with pytest.raises(ApiError) as caught:
        parse_chat_request(body)
    assert caught.value.status == 400
    assert says in caught.value.message
    if param is not None:
        assert caught.value.param == param


def test_openai_request_is_read_into_a_call() -> None:
    call = parse_chat_request(
        {
            "model": "main",
            "messages": [
                {"role": "developer", "content": "rules"},
                {"role": "user", "content": [{"type": "text", "text": "hi"}]},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}
                    ],
                },
                {"role": "tool", "tool_call_id": "c1", "content": "done"},
            ],
            "stream": True,
            "stream_options": {"include_usage": True},
            "stop": "END",
            "max_tokens": 10,
            "max_completion_tokens": 20,
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
            "tool_choice": "auto",
            "parallel_tool_calls": False,
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "Out", "description": "d", "schema": {"type": "object"}, "strict": True},
            },
            "metadata": {"ignored": True},
        }
    )
    assert isinstance(call.messages[0], SystemMessage)
    assert isinstance(call.messages[2], AIMessage)
    assert call.messages[2].tool_calls[0]["args"] == {"a": 1}
    assert isinstance(call.messages[3], ToolMessage)
    assert call.include_usage
    assert call.stop == ["END"]
    assert call.params == {"max_tokens": 20}
    assert call.tool_choice == "auto"
    assert call.tool_kwargs == {"parallel_tool_calls": False}
    assert call.structured == {
        "schema": {"type": "object", "title": "Out", "description": "d"},
        "method": "json_schema",
        "strict": True,
    }
    assert parse_chat_request({"model": "m", "messages": USER, "response_format": {"type": "text"}}).structured is None


def test_openai_bad_tool_arguments_are_a_400() -> None:
    bad = [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{not json"}}],
        }
    ]
    with pytest.raises(ApiError, match="could not be read"):
        parse_chat_request({"model": "m", "messages": bad})


def test_openai_structured_answer_from_a_tool_call_is_json_content() -> None:
    call = ChatCall(model="main", messages=[], structured={"schema": None, "method": "json_mode"})
    message = AIMessage(
        content="",
        tool_calls=[{"name": "Out", "args": {"x": 1}, "id": "t"}],
        response_metadata={"finish_reason": "length"},
    )
    body = completion_body(call, message, Outcome(usage={"input_tokens": 3, "output_tokens": 2}))
    choice = body["choices"][0]
    assert json.loads(choice["message"]["content"]) == {"x": 1}
    assert "tool_calls" not in choice["message"]
    assert choice["finish_reason"] == "length"
    assert body["usage"]["total_tokens"] == 5

    writer = ChunkWriter(call)
    out = writer.feed(AIMessageChunk(content="", tool_call_chunks=[{"name": "Out", "args": '{"x"', "index": 0}]))
    assert out is not None
    assert out["choices"][0]["delta"] == {"content": '{"x"'}
    assert writer.feed(AIMessageChunk(content="")) is None
    assert [c["choices"] for c in writer.end(Outcome())] == [
        [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}]
    ]


# ---------------------------------------------------------------------- Anthropic requests
@pytest.mark.parametrize(
    ("body", "says"),
    [
        ("x", "must be a JSON object"),
        ({"model": "m", "max_tokens": 5, "messages": USER, "top_k": 3}, "unsupported parameter(s): top_k"),
        ({"max_tokens": 5, "messages": USER}, "model: required"),
        ({"model": "m", "max_tokens": 5, "messages": USER, "temperature": 1.5}, "temperature: expected a number"),
        ({"model": "m", "max_tokens": 5, "messages": USER, "stop_sequences": "x"}, "stop_sequences: expected a list"),
        ({"model": "m", "max_tokens": 5, "messages": USER, "system": 3}, "system: expected a string"),
        (
            {"model": "m", "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]},
            "role is user or assistant",
        ),
        ({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": 3}]}, "content: expected a string"),
        (
            {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "audio"}]}]},
            "expected text, image or tool_result",
        ),
        (
            {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "tool_result"}]}]},
            "tool_use_id: required",
        ),
        (
            {
                "model": "m",
                "max_tokens": 5,
                "messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "file"}}]}],
            },
            "expected {type: base64",
        ),
        (
            {"model": "m", "max_tokens": 5, "messages": [{"role": "assistant", "content": [{"type": "tool_use"}]}]},
            "needs id and name",
        ),
        (
            {"model": "m", "max_tokens": 5, "messages": [{"role": "assistant", "content": [{"type": "image"}]}]},
            "expected text or tool_use",
        ),
        ({"model": "m", "max_tokens": 5, "messages": USER, "tools": [{"name": "a"}]}, "tools: expected a list"),
        ({"model": "m", "max_tokens": 5, "messages": USER, "tool_choice": {"type": "any"}}, "tool_choice: needs tools"),
        (
            {
                "model": "m",
                "max_tokens": 5,
                "messages": USER,
                "tools": [{"name": "a", "input_schema": {}}],
                "tool_choice": {"type": "tool", "name": "b"},
            },
            "tool_choice: expected",
        ),
        (
            {
                "model": "m",
                "max_tokens": 5,
                "messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": 5}]}],
            },
            "expected a string or text blocks",
        ),
    ],
)
def test_anthropic_request_errors_say_what_to_fix(body: Any, says: str) -> None:
    with pytest.raises(ApiError) as caught:
        parse_messages_request(body)
    assert caught.value.status == 400
    assert says in caught.value.message


def test_anthropic_request_is_read_into_a_call() -> None:
    call = parse_messages_request(
        {
            "model": "main",
            "max_tokens": 30,
            "system": "be brief",
            "temperature": 0.5,
            "top_p": 0.9,
            "stop_sequences": ["X"],
            "tools": [{"name": "f", "input_schema": {"type": "object"}}],
            "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "look"},
                        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}},
                    ],
                },
                {
                    "role": "assistant",
                    "content": [
                        {"type": "text", "text": "ok "},
                        {"type": "tool_use", "id": "t1", "name": "f", "input": {"q": 1}},
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "tool_result",
                            "tool_use_id": "t1",
                            "is_error": True,
                            "content": [{"type": "text", "text": "boom"}],
                        },
                        {"type": "text", "text": "and?"},
                    ],
                },
            ],
        }
    )
    system, first, assistant, result, last = call.messages
    assert system == SystemMessage("be brief")
    assert isinstance(first, HumanMessage)
    assert first.content[1] == {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    assert isinstance(assistant, AIMessage)
    assert assistant.tool_calls[0]["args"] == {"q": 1}
    assert isinstance(result, ToolMessage)
    assert (result.content, result.status) == ("boom", "error")
    assert last == HumanMessage("and?")
    assert call.params == {"max_tokens": 30, "temperature": 0.5, "top_p": 0.9}
    assert call.tool_choice == "required"
    assert call.tool_kwargs == {"parallel_tool_calls": False}
    for kind, expected in (("auto", "auto"), ("none", "none")):
        parsed = parse_messages_request(
            {
                "model": "m",
                "max_tokens": 1,
                "messages": USER,
                "tool_choice": {"type": kind},
                "tools": [{"name": "f", "input_schema": {}}],
            }
        )
        assert parsed.tool_choice == expected


def test_anthropic_message_and_events_for_text_then_tool() -> None:
    call = ChatCall(model="main", messages=[])
    message = AIMessage(content="Let me check.", tool_calls=[{"name": "f", "args": {"a": 1}, "id": "toolu_1"}])
    body = message_body(
        call, message, Outcome(usage={"input_tokens": 10, "output_tokens": 4, "input_token_details": {"cache_read": 6}})
    )
    assert [b["type"] for b in body["content"]] == ["text", "tool_use"]
    assert body["stop_reason"] == "tool_use"
    assert body["usage"] == {"input_tokens": 4, "output_tokens": 4, "cache_read_input_tokens": 6}

    writer = EventWriter(call)
    events = writer.start()
    events += writer.feed(AIMessageChunk(content="Let "))
    events += writer.feed(AIMessageChunk(content="me"))
    events += writer.feed(
        AIMessageChunk(content="", tool_call_chunks=[{"id": "toolu_1", "name": "f", "args": '{"a"', "index": 1}])
    )
    events += writer.feed(AIMessageChunk(content="", tool_call_chunks=[{"args": ": 1}", "index": 1}]))
    events += writer.end(Outcome(usage={"input_tokens": 10, "output_tokens": 4}))
    assert [(e, d.get("index")) for e, d in events] == [
        ("message_start", None),
        ("content_block_start", 0),
        ("content_block_delta", 0),
        ("content_block_delta", 0),
        ("content_block_stop", 0),
        ("content_block_start", 1),
        ("content_block_delta", 1),
        ("content_block_delta", 1),
        ("content_block_stop", 1),
        ("message_delta", None),
        ("message_stop", None),
    ]
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"


# ---------------------------------------------------------------------- errors
def _attempt(error: BaseException) -> AttemptRecord:
    return AttemptRecord("d", error, 1.0)


@pytest.mark.parametrize(
    ("error", "status", "code", "retry_after"),
    [
        (RateLimitError("slow down", retry_after=2.5), 429, "rate_limit_exceeded", 2.5),
        (BudgetExceededError("over budget"), 429, "budget_exceeded", None),
        (GatewayTimeoutError("too slow"), 504, "upstream_timeout", None),
        (ContextWindowExceededError("too long"), 400, "context_length_exceeded", None),
        (AuthenticationError("bad upstream key", provider="openai", model="gpt"), 502, "upstream_error", None),
        (ProviderError("boom", status_code=500), 502, "upstream_error", None),
        (ValueError("bad schema"), 400, None, None),
        (
            AllDeploymentsFailedError(
                "all", [_attempt(RateLimitError("a", retry_after=3)), _attempt(RateLimitError("b", retry_after=1))]
            ),
            429,
            "rate_limit_exceeded",
            1,
        ),
        (
            AllDeploymentsFailedError("all", [_attempt(RateLimitError("a")), _attempt(ProviderError("b"))]),
            502,
            "all_deployments_failed",
            None,
        ),
        (NoDeploymentAvailableError("none", {"d": "breaker open"}), 503, "no_deployment_available", None),
    ],
)
def test_typed_errors_map_to_statuses(
    error: BaseException, status: int, code: str | None, retry_after: float | None
) -> None:
    answer = api_error_from(error)
    assert answer.status == status
    assert answer.code == code
    assert answer.retry_after == retry_after
    if retry_after is not None:
        assert answer.headers() == {"retry-after": str(max(1, int(-(-retry_after // 1))))}


def test_unexpected_errors_say_nothing_of_their_insides() -> None:
    answer = api_error_from(RuntimeError("secret internals sk-123"))
    assert answer.status == 500
    assert "sk-123" not in answer.message
    assert (
        api_error_from(ConfigurationError("bad file with sk-456")).message
        == "the gateway is misconfigured (see its log)"
    )
    too_large = ApiError(413, "too_large", "too big")
    assert openai_error_body(too_large)["error"]["type"] == "invalid_request_error"
    assert anthropic_error_body(too_large) == {
        "type": "error",
        "error": {"type": "request_too_large", "message": "too big"},
    }


# ---------------------------------------------------------------------- keys and limits
def test_key_store_keeps_only_a_hash(tmp_path: Any) -> None:
    store = KeyStore(tmp_path / "keys.sqlite3")
    secret, key = store.create("team", models=["main"], rpm=5, tpm=100, budget_usd=1, period="1w", expires="90d")
    assert secret not in (tmp_path / "keys.sqlite3").read_bytes().decode("latin-1")
    assert secret not in repr(key)
    assert store.authenticate(secret) == key
    assert store.authenticate(secret + "x") is None
    assert store.get("team") == key
    assert store.get(key.id) == key
    assert key.allows("main")
    assert not key.allows("other")
    assert key.period_seconds == 7 * 86400
    assert store.revoke("team").state() == "revoked"
    with pytest.raises(KeyError):
        store.revoke("nobody")
    with sqlite3.connect(tmp_path / "keys.sqlite3") as db:
        assert db.execute("SELECT COUNT(*) FROM keys").fetchone() == (1,)
    store.close()


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"name": " "}, "non-empty --name"),
        ({"name": "a", "rpm": 0}, "--rpm must be a whole number from 1"),
        ({"name": "a", "budget_usd": -1}, "--budget must be a number of USD from 0"),
        ({"name": "a", "period": "30d"}, "give --budget too"),
        ({"name": "a", "expires": "2001-01-01"}, "--expires is in the past"),
        ({"name": "a", "budget_usd": 1, "period": "soon"}, "expected a duration"),
        ({"name": "a", "expires": "someday"}, "expected a duration (30d) or an ISO date"),
    ],
)
def test_key_store_refuses_bad_limits(kwargs: dict[str, Any], says: str) -> None:
    store = KeyStore(":memory:")
    name = kwargs.pop("name")
    with pytest.raises(ValueError) as caught:
        store.create(name, **kwargs)
    assert says in str(caught.value)


def test_durations_and_expiry() -> None:
    assert parse_duration("90m") == 5400
    assert parse_duration("1.5h") == 5400
    assert parse_expiry("2d", now=100.0) == 100.0 + 2 * 86400
    assert parse_expiry("2030-01-01T00:00:00+00:00") == 1893456000.0
    assert parse_expiry("2030-01-01") == 1893456000.0


def test_limits_rpm_tpm_and_budget_periods() -> None:
    store = KeyStore(":memory:")
    _, key = store.create("k", rpm=2, tpm=100, budget_usd=1.0, period="1d")
    spent_from_ledger: dict[float, float] = {}

    def spent_since(k: Any, since: float) -> float:
        return spent_from_ledger.get(since, 0.0)

    limits = KeyLimits(spent_since)
    t0 = key.created_at + 10
    limits.admit(key, t0)
    limits.record(key, 0, 0.0, t0)  # each call ends before the next (calls in flight hold budget)
    limits.admit(key, t0 + 1)
    limits.record(key, 0, 0.0, t0 + 1)
    with pytest.raises(ApiError) as rpm:
        limits.admit(key, t0 + 2)
    assert rpm.value.retry_after == pytest.approx(58)
    limits.admit(key, t0 + 61)  # the window moved on

    limits.record(key, 120, 0.4, t0 + 61)
    with pytest.raises(ApiError, match="used 120 of its 100 tokens per minute"):
        limits.admit(key, t0 + 62)
    limits.record(key, 0, 0.7, t0 + 122)
    with pytest.raises(ApiError, match=r"spent \$1.1000 of its \$1.00 budget for this period \(it resets at"):
        limits.admit(key, t0 + 125)
    next_day = key.created_at + 86400
    spent_from_ledger[next_day] = 0.25  # what the ledger holds for the new period
    limits.admit(key, next_day + 5)
    assert limits.spent(key, next_day + 5) == 0.25
    lifetime = store.create("life", budget_usd=0.0)[1]
    with pytest.raises(ApiError, match="a lifetime budget"):
        KeyLimits().admit(lifetime)


@pytest.mark.parametrize(
    "turn",
    [
        {"role": "user", "content": "hi"},
        {"role": "user", "content": ""},
        {"role": "system", "content": "be brief"},
        {"role": "assistant", "content": "hello"},
        {"role": "developer", "content": "be brief"},
        {"role": "user", "content": "hi", "name": "ann"},
        {"role": "user", "content": [{"type": "text", "text": "hi"}]},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
        },
        {"role": "tool", "content": "42", "tool_call_id": "c1"},
    ],
)
def test_a_request_turn_becomes_the_message_langchain_reads_from_it(turn: dict[str, Any]) -> None:
    from langchain_core.messages import convert_to_messages

    parsed = parse_chat_request({"model": "m", "messages": [turn]}).messages[0]
    expected = convert_to_messages([turn])[0]
    assert type(parsed) is type(expected)
    assert parsed.model_dump() == expected.model_dump()
