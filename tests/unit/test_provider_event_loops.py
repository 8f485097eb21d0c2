"""A provider model used under one event loop after another (``asyncio.run`` in a row,
pytest-asyncio's per-test loops) gets a fresh async client per loop, and each old one
is closed while its loop still runs: no "Event loop is closed", no unclosed-resource warning.
"""

from __future__ import annotations

import asyncio
import gc
import warnings
from typing import Any

import pytest

from langchain_multigateway import RetryPolicy
from langchain_multigateway.chat_models.anthropic import AnthropicChatModel
from langchain_multigateway.chat_models.mistral import MistralChatModel
from langchain_multigateway.chat_models.ollama import OllamaChatModel
from langchain_multigateway.chat_models.openai import OpenAIChatModel
from tests.loopback import Reply, chat_completion, chat_stream, serve
from tests.unit.test_provider_time_limits import anthropic_message

KEY = "sk-event-loop-test-key"
ONE_TRY = RetryPolicy(max_attempts=1)
OLLAMA_ANSWER = {
    "model": "llama3.2",
    "message": {"role": "assistant", "content": "Hello!"},
    "done": True,
    "done_reason": "stop",
    "prompt_eval_count": 5,
    "eval_count": 2,
}


def _model(provider: str, url: str) -> Any:
    if provider == "openai":
        return OpenAIChatModel(model="stub-model", base_url=url, api_key=KEY, retry_policy=ONE_TRY)
    if provider == "mistral":
        return MistralChatModel(model="stub-model", server_url=url, api_key=KEY, retry_policy=ONE_TRY)
    if provider == "anthropic":
        return AnthropicChatModel(model="claude-x", base_url=url, api_key=KEY, retry_policy=ONE_TRY)
    return OllamaChatModel(model="llama3.2", base_url=url.removesuffix("/v1"), retry_policy=ONE_TRY)


ANSWERS = {"openai": chat_completion(), "mistral": chat_completion(), "anthropic": anthropic_message()}


@pytest.mark.parametrize("provider", ["openai", "mistral", "anthropic", "ollama"])
def test_three_asyncio_runs_in_a_row(provider: str) -> None:
    with serve(Reply(body=ANSWERS.get(provider, OLLAMA_ANSWER))) as (url, script):
        model = _model(provider, url)
        gc.collect()  # what earlier tests left behind is not this test's to report
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            replies = [asyncio.run(model.ainvoke(f"call {n}")) for n in range(3)]
            held = len(model._async_clients._by_loop)  # each loop's entry left with its loop
            gc.collect()
    assert [r.content for r in replies] == ["Hello!"] * 3
    assert len(script.requests) == 3
    port = url.rsplit(":", 1)[1].split("/")[0]
    problems = [
        w
        for w in caught
        if issubclass(w.category, (ResourceWarning, RuntimeWarning))
        and (port in str(w.message) or "loop" in str(w.message) or "never awaited" in str(w.message))
    ]
    assert problems == [], [str(w.message) for w in problems]
    assert held == 0


def test_each_loop_gets_its_own_client_and_the_old_one_is_closed() -> None:
    with serve(Reply(body=chat_completion())) as (url, _):
        model = _model("openai", url)
        seen: list[Any] = []

        async def call() -> None:
            await model.ainvoke("hi")
            seen.append(model.async_client)
            assert model.async_client is seen[-1]  # one client for all calls on this loop

        asyncio.run(call())
        asyncio.run(call())
    first, second = seen
    assert first is not second
    assert first.is_closed()  # closed when its loop shut down, before that loop closed
    assert second.is_closed()


def test_streams_under_successive_loops() -> None:
    with serve(Reply(sse=chat_stream(["a", "b"]))) as (url, _):
        model = _model("openai", url)

        async def stream() -> str:
            return "".join([str(c.content) async for c in model.astream("hi")])

        assert [asyncio.run(stream()) for _ in range(3)] == ["ab"] * 3


def test_two_loops_alive_at_once_each_use_their_own_client() -> None:
    """Threads each running a loop (a server's workers) share a model without sharing a client."""
    import threading

    with serve(Reply(body=chat_completion())) as (url, _):
        model = AnthropicChatModel(model="claude-x", base_url=url, api_key=KEY, retry_policy=ONE_TRY)
        clients: list[Any] = []
        errors: list[BaseException] = []
        barrier = threading.Barrier(2)

        def worker() -> None:
            async def run() -> None:
                client = model.async_client
                barrier.wait(timeout=5)
                clients.append(client)

            try:
                asyncio.run(run())
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=worker) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []
    assert clients[0] is not clients[1]
