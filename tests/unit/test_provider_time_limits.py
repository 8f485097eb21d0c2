"""Per-request time limits of every provider, against a scripted loopback server.

Each provider's real transport (openai SDK, mistralai SDK, httpx) runs against a real
HTTP server on 127.0.0.1 that answers late, stalls mid-stream or never sends a first
token; each limit must fire as the typed GatewayTimeoutError naming the limit, its
value and the server.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from langchain_core.exceptions import ModelTimeoutError

from langchain_multigateway import GatewayTimeoutError, RetryPolicy
from langchain_multigateway.chat_models.anthropic import AnthropicChatModel
from langchain_multigateway.chat_models.mistral import MistralChatModel
from langchain_multigateway.chat_models.openai import OpenAIChatModel
from tests.loopback import Reply, chat_completion, chat_stream, serve

KEY = "sk-time-limits-test-key"
ONE_TRY = RetryPolicy(max_attempts=1)


def _openai(url: str, **kwargs: Any) -> OpenAIChatModel:
    return OpenAIChatModel(model="stub-model", base_url=url, api_key=KEY, retry_policy=ONE_TRY, **kwargs)


def _mistral(url: str, **kwargs: Any) -> MistralChatModel:
    return MistralChatModel(model="stub-model", server_url=url, api_key=KEY, retry_policy=ONE_TRY, **kwargs)


def _anthropic(url: str, **kwargs: Any) -> AnthropicChatModel:
    return AnthropicChatModel(model="claude-x", base_url=url, api_key=KEY, retry_policy=ONE_TRY, **kwargs)


def anthropic_message(text: str = "Hello!") -> dict[str, Any]:
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-x",
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "usage": {"input_tokens": 5, "output_tokens": 2},
    }


def anthropic_stream(pieces: list[str]) -> list[Any]:
    events: list[Any] = [
        {"type": "message_start", "message": {"id": "msg_1", "model": "claude-x", "usage": {"input_tokens": 5}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    ]
    events += [{"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}} for p in pieces]
    events += [
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": len(pieces)}},
        {"type": "message_stop"},
    ]
    return events


# (model factory, a whole non-streamed answer, a stream of these pieces)
PROVIDERS: dict[str, tuple[Callable[..., Any], Callable[[], Any], Callable[[list[str]], list[Any]]]] = {
    "openai": (_openai, chat_completion, chat_stream),
    "mistral": (_mistral, chat_completion, chat_stream),
    "anthropic": (_anthropic, anthropic_message, anthropic_stream),
}


def _stalled(stream: list[Any], *, after: int, pause: float) -> Reply:
    """The stream, with a pause after its first ``after`` events."""
    return Reply(sse=[*stream[:after], pause, *stream[after:]])


def _collect(model: Any, *, use_async: bool, **kwargs: Any) -> str:
    if use_async:

        async def run() -> str:
            return "".join([str(c.content) async for c in model.astream("hi", **kwargs)])

        return asyncio.run(run())
    return "".join(str(c.content) for c in model.stream("hi", **kwargs))


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
def test_a_silent_non_streamed_answer_hits_first_token_timeout(provider: str, use_async: bool) -> None:
    make, answer, _ = PROVIDERS[provider]
    with serve(Reply(body=answer(), delay=2.0)) as (url, script):
        model = make(url, first_token_timeout=0.3)
        with pytest.raises(GatewayTimeoutError) as caught:
            asyncio.run(model.ainvoke("hi")) if use_async else model.invoke("hi")
    error = caught.value
    assert isinstance(error, ModelTimeoutError)
    assert (error.limit, error.seconds) == ("first_token_timeout", 0.3)
    assert "within 0.3 s (first_token_timeout)" in error.message
    assert url.removesuffix("/v1") in error.message  # which server
    assert error.retryable
    assert len(script.requests) == 1


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
def test_a_stream_that_stalls_mid_answer_hits_stream_idle_timeout(provider: str, use_async: bool) -> None:
    make, _, stream = PROVIDERS[provider]
    events = stream(["one ", "two ", "three"])
    head = len(events) - 4  # the stall comes after some content went out
    with serve(_stalled(events, after=head, pause=2.0)) as (url, _):
        model = make(url, stream_idle_timeout=0.3)
        with pytest.raises(GatewayTimeoutError) as caught:
            _collect(model, use_async=use_async)
    assert caught.value.limit == "stream_idle_timeout"
    assert "the stream went silent within 0.3 s" in caught.value.message


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
def test_a_stream_without_a_first_token_hits_first_token_timeout(provider: str, use_async: bool) -> None:
    make, _, stream = PROVIDERS[provider]
    # Headers at once, then silence: the server accepted the request and went quiet.
    with serve(_stalled(stream(["late"]), after=0, pause=2.0)) as (url, _):
        model = make(url, first_token_timeout=0.3, stream_idle_timeout=0.3)
        with pytest.raises(GatewayTimeoutError) as caught:
            _collect(model, use_async=use_async)
    assert caught.value.limit == "first_token_timeout"


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_call_timeout_caps_the_request(provider: str) -> None:
    make, answer, _ = PROVIDERS[provider]
    with serve(Reply(body=answer(), delay=2.0)) as (url, _):
        with pytest.raises(GatewayTimeoutError) as caught:
            make(url).invoke("hi", timeout=0.3)  # as the router passes what is left of its deadline
    assert (caught.value.limit, caught.value.seconds) == ("timeout", pytest.approx(0.3, abs=0.05))


def test_a_call_timeout_caps_the_request_async() -> None:
    with serve(Reply(body=chat_completion(), delay=2.0)) as (url, _):
        with pytest.raises(GatewayTimeoutError) as caught:
            asyncio.run(_openai(url).ainvoke("hi", timeout=0.3))
    assert caught.value.limit == "timeout"


def test_a_call_timeout_bounds_retries_too() -> None:
    """With retries on, the per-call deadline covers them all: no attempt starts after it."""
    with serve(Reply(body=chat_completion(), delay=0.4)) as (url, script):
        model = OpenAIChatModel(
            model="stub-model",
            base_url=url,
            api_key=KEY,
            first_token_timeout=0.2,
            retry_policy=RetryPolicy(max_attempts=10, initial_delay=0.01, max_delay=0.01, jitter=0),
        )
        with pytest.raises(GatewayTimeoutError):
            model.invoke("hi", timeout=0.5)
    assert 1 <= len(script.requests) <= 3  # not ten


@pytest.mark.parametrize("provider", PROVIDERS)
def test_slow_but_steady_streams_and_answers_within_limits_succeed(provider: str) -> None:
    make, answer, stream = PROVIDERS[provider]
    events = stream(["a", "b", "c"])
    paced = Reply(sse=[x for event in events for x in (event, 0.05)])
    with serve(paced, Reply(body=answer(), delay=0.1)) as (url, _):
        model = make(url, first_token_timeout=1.0, stream_idle_timeout=1.0)
        assert _collect(model, use_async=False) == "abc"
        assert model.invoke("hi").content


def test_defaults_are_documented_values() -> None:
    model = _openai("http://127.0.0.1:9/v1")
    assert (model.connect_timeout, model.first_token_timeout, model.stream_idle_timeout, model.timeout) == (
        10.0,
        None,
        20.0,
        600.0,
    )
    streamed, whole = model._time_limits(stream=True), model._time_limits(stream=False)
    assert (streamed.first_token, streamed.idle) == (15.0, 20.0)
    assert (whole.first_token, whole.idle) == (120.0, None)
    # A model that thinks before its first token gets longer first-token defaults.
    reasoning = OpenAIChatModel(model="o3", base_url="http://127.0.0.1:9/v1", api_key=KEY)
    assert reasoning._time_limits(stream=True).first_token == 120.0
    assert reasoning._time_limits(stream=False).first_token == 300.0
    pinned = _openai("http://127.0.0.1:9/v1", first_token_timeout=5.0)
    assert pinned._time_limits(stream=True).first_token == pinned._time_limits(stream=False).first_token == 5.0


@pytest.fixture
def unanswered_port() -> Any:
    """A loopback port whose listen queue is full: a new connection's SYN goes unanswered."""
    import socket
    import time

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
        fillers.append(filler)
    time.sleep(0.05)
    yield port
    for sock in [*fillers, server]:
        sock.close()


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
def test_a_server_that_never_accepts_hits_connect_timeout(provider: str, use_async: bool, unanswered_port: int) -> None:
    make, _, _ = PROVIDERS[provider]
    model = make(f"http://127.0.0.1:{unanswered_port}/v1", connect_timeout=0.3)
    with pytest.raises(GatewayTimeoutError) as caught:
        asyncio.run(model.ainvoke("hi")) if use_async else model.invoke("hi")
    assert (caught.value.limit, caught.value.seconds) == ("connect_timeout", 0.3)
    assert f"could not connect within 0.3 s (connect_timeout) to http://127.0.0.1:{unanswered_port}" in str(
        caught.value
    )
