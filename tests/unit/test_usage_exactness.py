"""Exactness under load: 500 concurrent requests, totals equal to the responses' usage, one ledger row each."""

from __future__ import annotations

import asyncio
import importlib.util
import time
import warnings
from typing import Any

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage

from langchain_multigateway.errors import ProviderError
from langchain_multigateway.testing import ScriptedChatModel
from langchain_multigateway.testing.scripted import Step
from langchain_multigateway.usage import Ledger, LedgerCallbackHandler, atrack_usage

N = 500
_HAVE_ROUTER = importlib.util.find_spec("langchain_multigateway.routing.router") is not None


def _router(deployments: list[tuple[str, BaseChatModel]]) -> BaseChatModel:
    if not _HAVE_ROUTER:  # pragma: no cover - depends on the routing package
        from tests.unit.test_usage_callbacks import Wrapper

        return Wrapper(inners=[m for _, m in deployments], names=[n for n, _ in deployments])
    from langchain_multigateway.routing.deployment import Deployment
    from langchain_multigateway.routing.router import RoutingChatModel

    return RoutingChatModel(deployments=[Deployment(model=m, name=n) for n, m in deployments])


async def _fire(model: BaseChatModel, handler: Any, *, stream_every: int = 0, limit: int = 100) -> list[AIMessage]:
    semaphore = asyncio.Semaphore(limit)

    async def one(i: int) -> AIMessage:
        prompt = f"question {i}: " + "word " * (i % 37)
        async with semaphore:
            if stream_every and i % stream_every == 0:
                final = None
                async for chunk in model.astream(prompt, config={"callbacks": [handler], "tags": [f"batch-{i % 4}"]}):
                    final = chunk if final is None else final + chunk
                assert final is not None
                return AIMessage(content=final.content, usage_metadata=final.usage_metadata)
            result = await model.ainvoke(prompt, config={"callbacks": [handler], "tags": [f"batch-{i % 4}"]})
            assert isinstance(result, AIMessage)
            return result

    return list(await asyncio.gather(*(one(i) for i in range(N))))


def _check(responses: list[AIMessage], usage: Any, ledger: Ledger, label: str, started: float) -> None:
    elapsed = time.perf_counter() - started
    expected = {
        "input_tokens": sum(r.usage_metadata["input_tokens"] for r in responses if r.usage_metadata),
        "output_tokens": sum(r.usage_metadata["output_tokens"] for r in responses if r.usage_metadata),
        "total_tokens": sum(r.usage_metadata["total_tokens"] for r in responses if r.usage_metadata),
    }
    assert len(responses) == N
    assert all(r.usage_metadata for r in responses)
    totals = usage.totals
    assert {k: getattr(totals, k) for k in expected} == expected
    assert usage.calls == N
    assert totals.requests - totals.errors == N
    ledger.flush()
    ok_rows = ledger.count(outcome="ok")
    assert ok_rows == N
    rows = ledger.totals(by="outcome")
    ok = next(r for r in rows if r["key"] == "ok")
    assert ok["total_tokens"] == expected["total_tokens"]
    assert sum(ledger.count(tag=f"batch-{k}", outcome="ok") for k in range(4)) == N
    print(
        f"\n[{label}] {N} concurrent requests in {elapsed:.2f}s: served={N}, failed attempts={totals.errors}, "
        f"tokens in/out/total={expected['input_tokens']}/{expected['output_tokens']}/{expected['total_tokens']}, "
        f"tracker total={totals.total_tokens}, ledger ok rows={ok_rows}, cost=${totals.cost_usd:.6f}"
    )


async def test_500_concurrent_routed_requests_with_failover_are_exact(tmp_path: Any) -> None:
    flaky = ScriptedChatModel(
        model="gpt-4o",
        model_provider="openai",
        steps=[Step(reply="primary answer", latency=0.002)] * 4
        + [ProviderError("overloaded", provider="openai", model="gpt-4o")],
        exhausted="cycle",
    )
    backup = ScriptedChatModel(
        model="gpt-4o-mini",
        model_provider="openai",
        steps=[Step(reply="backup answer here", latency=0.001, chunks=["backup ", "answer ", "here"])],
        exhausted="cycle",
    )
    router = _router([("primary", flaky), ("backup", backup)])
    ledger = Ledger(tmp_path / "exact.sqlite3")
    handler = LedgerCallbackHandler(ledger)
    started = time.perf_counter()
    async with atrack_usage() as usage:
        responses = await _fire(router, handler, stream_every=5)
    _check(responses, usage, ledger, "router over scripted deployments", started)
    by_deployment = usage.by_deployment()
    assert set(by_deployment) <= {"primary", "backup"}
    assert sum(t.requests - t.errors for t in by_deployment.values()) == N
    ledger.close()


async def test_500_concurrent_requests_over_http_are_exact(tmp_path: Any) -> None:
    from langchain_multigateway.chat_models import OpenAIChatModel
    from tests.loopback import Reply, chat_completion, chat_stream, serve

    with (
        serve(Reply(body=chat_completion("Hello!", model="gpt-4o-mini-2024-07-18"))) as (url, script),
        serve(Reply(sse=chat_stream(["Hel", "lo", "!"], model="gpt-4o-mini-2024-07-18"))) as (stream_url, _),
    ):
        llm = OpenAIChatModel(model="gpt-4o-mini", base_url=url, api_key="sk-loopback", max_retries=0)
        streamer = OpenAIChatModel(model="gpt-4o-mini", base_url=stream_url, api_key="sk-loopback", max_retries=0)
        ledger = Ledger(tmp_path / "http.sqlite3")
        handler = LedgerCallbackHandler(ledger)
        started = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            async with atrack_usage() as usage:
                invoked = await _fire(llm, handler, limit=4)
        _check(invoked, usage, ledger, "OpenAIChatModel over loopback HTTP", started)
        assert len(script.requests) == N
        async with atrack_usage() as streamed_usage:
            final = None
            async for chunk in streamer.astream("hi", config={"callbacks": [handler]}):
                final = chunk if final is None else final + chunk
        assert final is not None
        assert final.usage_metadata is not None
        assert streamed_usage.totals.total_tokens == final.usage_metadata["total_tokens"] == 8
        assert usage.total_cost_usd == pytest.approx(N * (5 * 0.15 + 2 * 0.60) / 1e6)
        ledger.close()
