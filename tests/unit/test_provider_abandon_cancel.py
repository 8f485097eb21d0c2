"""Streams abandoned half-read and calls cancelled mid-flight leave no connection held.

The openai SDK's (httpx2) and the httpx providers' connection pools are inspected after
a consumer breaks out of a stream, after an async stream is closed early, and after an
``ainvoke`` is cancelled by ``asyncio.wait_for``; the next call on the same model works.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from langchain_multigateway import RetryPolicy
from langchain_multigateway.chat_models.anthropic import AnthropicChatModel
from langchain_multigateway.chat_models.openai import OpenAIChatModel
from tests.loopback import Reply, chat_completion, chat_stream, serve
from tests.unit.test_provider_time_limits import anthropic_message, anthropic_stream

KEY = "sk-abandon-test-key"
ONE_TRY = RetryPolicy(max_attempts=1)


def _pool(client: Any) -> Any:
    """The connection pool under an httpx / httpx2 client (or the openai SDK client wrapping one)."""
    http = getattr(client, "_client", client)
    return http._transport._pool


def _held(pool: Any) -> list[Any]:
    return [c for c in pool.connections if not (c.is_idle() or c.is_closed())] + list(pool._requests)


CASES = {
    "openai": (
        lambda url: OpenAIChatModel(model="m", base_url=url, api_key=KEY, retry_policy=ONE_TRY),
        chat_stream,
        chat_completion,
    ),
    "anthropic": (
        lambda url: AnthropicChatModel(model="claude-x", base_url=url, api_key=KEY, retry_policy=ONE_TRY),
        anthropic_stream,
        anthropic_message,
    ),
}


@pytest.mark.parametrize("provider", CASES)
def test_breaking_out_of_a_stream_releases_its_connection(provider: str) -> None:
    make, stream, answer = CASES[provider]
    slow = Reply(sse=[x for e in stream(["a", "b", "c", "d"]) for x in (e, 0.05)])
    with serve(slow, Reply(body=answer())) as (url, _):
        model = make(url)
        for _chunk in model.stream("hi"):
            break
        assert _held(_pool(model.client)) == []
        assert model.invoke("again").content


@pytest.mark.parametrize("provider", CASES)
def test_an_async_stream_closed_early_and_a_cancelled_call_release_their_connections(provider: str) -> None:
    make, stream, answer = CASES[provider]
    slow = Reply(sse=[x for e in stream(["a", "b", "c", "d"]) for x in (e, 0.05)])
    with serve(slow, Reply(body=answer(), delay=1.0), Reply(body=answer())) as (url, script):
        model = make(url)

        async def scenario() -> str:
            chunks = model.astream("hi")
            async for _chunk in chunks:
                break
            await chunks.aclose()  # type: ignore[attr-defined]
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(model.ainvoke("slow"), 0.2)
            assert _held(_pool(model.async_client)) == []
            return str((await model.ainvoke("again")).content)

        assert asyncio.run(scenario())
    assert len(script.requests) == 3
