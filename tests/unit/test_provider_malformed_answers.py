"""Malformed and cut answers from a real loopback server become typed errors, never a truncated success.

Each provider's real transport reads what a misbehaving server sends: fields of the
wrong type, garbage stream lines, streams closed before their end marker, a reset
mid-stream, a malformed chunk inside an otherwise complete stream.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from langchain_multigateway import GatewayConnectionError, ProviderError, RetryPolicy
from langchain_multigateway.chat_models.anthropic import AnthropicChatModel
from langchain_multigateway.chat_models.mistral import MistralChatModel
from langchain_multigateway.chat_models.ollama import OllamaChatModel
from langchain_multigateway.chat_models.openai import OpenAIChatModel
from tests.loopback import Reply, chat_completion, chat_stream, serve
from tests.unit.test_provider_time_limits import anthropic_message, anthropic_stream

KEY = "sk-malformed-test-key"
ONE_TRY = RetryPolicy(max_attempts=1)
THREE_TRIES = RetryPolicy(max_attempts=3, initial_delay=0.01, max_delay=0.02, jitter=0)


def _ollama_answer(**overrides: Any) -> dict[str, Any]:
    answer = {
        "model": "llama3.2",
        "message": {"role": "assistant", "content": "Hi"},
        "done": True,
        "done_reason": "stop",
        "prompt_eval_count": 5,
        "eval_count": 1,
    }
    answer.update(overrides)
    return answer


# ---------------------------------------------------------------------- non-streamed fields of the wrong type
@pytest.mark.parametrize(
    "body",
    [
        {**anthropic_message(), "usage": "lots"},  # usage as a string
        {**anthropic_message(), "usage": {"input_tokens": "many"}},  # a count that is not a number
        {**anthropic_message(), "content": [{"type": "tool_use", "name": "x", "input": "not an object"}]},
        {**anthropic_message(), "content": ["just a string block"], "stop_reason": 7},
    ],
)
def test_anthropic_fields_of_the_wrong_type_are_provider_errors(body: dict[str, Any]) -> None:
    with serve(Reply(body=body)) as (url, script):
        model = AnthropicChatModel(model="claude-x", base_url=url, api_key=KEY, retry_policy=THREE_TRIES)
        with pytest.raises(ProviderError) as caught:
            model.invoke("hi")
    assert "malformed" in caught.value.message or "expected" in caught.value.message
    assert caught.value.retryable  # a server that garbled one answer may answer the next properly
    assert len(script.requests) == 3


@pytest.mark.parametrize(
    "body",
    [
        _ollama_answer(message="not an object"),
        _ollama_answer(prompt_eval_count="five"),
        _ollama_answer(message={"role": "assistant", "content": "x", "tool_calls": "nope"}),
        _ollama_answer(message={"role": "assistant", "content": "x", "tool_calls": [{"function": 3}]}),
    ],
)
def test_ollama_fields_of_the_wrong_type_are_provider_errors(body: dict[str, Any]) -> None:
    with serve(Reply(body=body)) as (url, _):
        model = OllamaChatModel(model="llama3.2", base_url=url.removesuffix("/v1"), retry_policy=ONE_TRY)
        with pytest.raises(ProviderError) as caught:
            model.invoke("hi")
    assert caught.value.provider == "ollama"


def test_anthropic_garbage_stream_lines_are_a_provider_error() -> None:
    with serve(Reply(sse=["<html>oops</html>", '{"type": 5}', "[1, 2]"])) as (url, _):
        model = AnthropicChatModel(model="claude-x", base_url=url, api_key=KEY, retry_policy=ONE_TRY)
        with pytest.raises(ProviderError, match="malformed chunk"):
            list(model.stream("hi"))


# ---------------------------------------------------------------------- OpenAI stream endings
def _openai(url: str, policy: RetryPolicy = ONE_TRY) -> OpenAIChatModel:
    return OpenAIChatModel(model="stub-model", base_url=url, api_key=KEY, retry_policy=policy)


def test_openai_stream_closed_without_finish_reason_or_done_is_an_error() -> None:
    events = chat_stream(["The answer ", "is"])[:2]  # two content events, then a clean close
    with serve(Reply(sse=events)) as (url, _):
        with pytest.raises(ProviderError) as caught:
            list(_openai(url).stream("hi"))
    assert "ended before a finish_reason or [DONE]" in caught.value.message
    assert caught.value.retryable


def test_openai_stream_with_finish_reason_but_no_done_is_complete_with_usage() -> None:
    events = [e for e in chat_stream(["Hello", " world"]) if e != "[DONE]"]
    with serve(Reply(sse=events)) as (url, _):
        chunks = list(_openai(url).stream("hi"))
    assert "".join(str(c.content) for c in chunks) == "Hello world"
    last = chunks[-1]
    assert last.chunk_position == "last"
    assert last.usage_metadata is not None
    assert last.usage_metadata["output_tokens"] == 2
    assert last.response_metadata["finish_reason"] == "stop"


def test_openai_stream_that_finished_but_never_closes_ends_when_usage_is_in() -> None:
    """After finish_reason and usage nothing else is expected: a server that then holds the
    connection open (no [DONE]) does not hold the caller: the stream ends without waiting."""
    events = [e for e in chat_stream(["Hi"]) if e != "[DONE]"]
    with serve(Reply(sse=[*events, 3.0])) as (url, _):
        model = OpenAIChatModel(model="stub-model", base_url=url, api_key=KEY, stream_idle_timeout=1.0)
        chunks = list(model.stream("hi"))  # an idle-timeout error here would mean it waited for more
    assert chunks[-1].usage_metadata is not None


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
def test_openai_reset_mid_stream_is_a_connection_error_not_retried_after_output(use_async: bool) -> None:
    events = chat_stream(["one", "two", "three"])
    with serve(Reply(sse=events, cut_after=2)) as (url, script):
        model = _openai(url, THREE_TRIES)
        got: list[str] = []
        with pytest.raises(GatewayConnectionError) as caught:
            if use_async:

                async def run() -> None:
                    async for chunk in model.astream("hi"):
                        got.append(str(chunk.content))

                asyncio.run(run())
            else:
                for chunk in model.stream("hi"):
                    got.append(str(chunk.content))
    assert got == ["one", "two"]
    assert caught.value.retryable
    assert len(script.requests) == 1  # text went out: a retry would repeat it


def test_openai_reset_before_the_first_chunk_is_retried() -> None:
    cut = Reply(sse=chat_stream(["x"]), cut_after=0)
    with serve(cut, cut, Reply(sse=chat_stream(["fine"]))) as (url, script):
        text = "".join(str(c.content) for c in _openai(url, THREE_TRIES).stream("hi"))
    assert text == "fine"
    assert len(script.requests) == 3


# ---------------------------------------------------------------------- a malformed chunk mid-stream
@pytest.mark.parametrize("provider", ["openai", "mistral"])
def test_a_malformed_chunk_in_a_complete_stream_is_skipped_and_logged(
    provider: str, caplog: pytest.LogCaptureFixture
) -> None:
    events = chat_stream(["Hello", " world"])
    with serve(Reply(sse=[events[0], "{not json", *events[1:]])) as (url, _):
        model: Any = (
            _openai(url)
            if provider == "openai"
            else MistralChatModel(model="stub-model", server_url=url, api_key=KEY, retry_policy=ONE_TRY)
        )
        with caplog.at_level(logging.WARNING, logger="langchain_multigateway.chat_models"):
            text = "".join(str(c.content) for c in model.stream("hi"))
    assert text == "Hello world"
    assert any("skipped a malformed chunk" in r.getMessage() for r in caplog.records)


def test_a_malformed_chunk_in_a_cut_stream_is_the_typed_error() -> None:
    events = chat_stream(["Hello", " world"])[:2]
    with serve(Reply(sse=[events[0], "{not json", events[1]])) as (url, _):
        with pytest.raises(ProviderError) as caught:
            list(_openai(url).stream("hi"))
    assert "1 malformed chunk(s) skipped" in caught.value.message


def test_anthropic_stream_with_stop_reason_but_no_message_stop_is_complete() -> None:
    events = anthropic_stream(["Hi"])[:-1]  # no message_stop
    with serve(Reply(sse=events)) as (url, _):
        model = AnthropicChatModel(model="claude-x", base_url=url, api_key=KEY, retry_policy=ONE_TRY)
        chunks = list(model.stream("hi"))
    assert chunks[-1].response_metadata["stop_reason"] == "end_turn"


def test_openai_non_streamed_answer_of_the_wrong_shape_is_a_provider_error() -> None:
    bad = chat_completion()
    bad["choices"][0]["message"] = "text instead of an object"
    with serve(Reply(body=bad)) as (url, _):
        with pytest.raises(ProviderError, match="malformed answer"):
            _openai(url).invoke("hi")


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
def test_openai_stream_that_finished_then_stalls_without_usage_is_still_the_answer(use_async: bool) -> None:
    """finish_reason came, the usage asked for never did, and the server holds the connection:
    the idle limit ends the wait, and the whole answer is returned (without usage), not an error."""
    events = [e for e in chat_stream(["Done"]) if e != "[DONE]" and not (isinstance(e, dict) and e.get("usage"))]
    with serve(Reply(sse=[*events, 2.0])) as (url, _):
        model = OpenAIChatModel(model="stub-model", base_url=url, api_key=KEY, stream_idle_timeout=0.3)
        if use_async:

            async def run() -> list[Any]:
                return [c async for c in model.astream("hi")]

            chunks = asyncio.run(run())
        else:
            chunks = list(model.stream("hi"))
    assert "".join(str(c.content) for c in chunks) == "Done"
    assert chunks[-1].response_metadata["finish_reason"] == "stop"
    assert chunks[-1].usage_metadata is None
