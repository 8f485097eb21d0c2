"""Whatever an attempt takes is given back on every way out of it, sync and async.

Taken per attempt: the in-flight count (and rpm/tpm reservation), a concurrency-gate
slot, a budget reservation and, on a half-open breaker, its one probe. Each test
leaves the call by one exit (success, error, cancellation while a callback handler
runs, KeyboardInterrupt, a consumer breaking out of a stream, a stream abandoned
half-read) and then checks that ``health()`` shows nothing held and that every
deployment still serves.
"""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from typing import Any

import pytest
from langchain_core.callbacks import BaseCallbackHandler

from langchain_multigateway._retry import RetryPolicy
from langchain_multigateway.errors import AllDeploymentsFailedError, ProviderError
from langchain_multigateway.routing import Deployment, RoutingChatModel
from langchain_multigateway.state import MemoryState
from langchain_multigateway.testing import ScriptedChatModel, Step
from langchain_multigateway.usage.budgets import Budget

ONE_TRY = RetryPolicy(max_attempts=1, initial_delay=0, jitter=0)


def dep(name: str, steps: list[Any] | None = None, **kwargs: Any) -> Deployment:
    model = ScriptedChatModel(model=f"model-{name}", steps=steps or [], default_reply=f"from {name}")
    kwargs.setdefault("retry_policy", ONE_TRY)
    return Deployment(model=model, name=name, **kwargs)


def assert_idle(router: RoutingChatModel) -> None:
    """Nothing held: no request in flight, no gate slot taken, no budget reservation."""
    for name, health in router.health().items():
        assert health.in_flight == 0, f"{name}: in_flight={health.in_flight}"
        assert health.concurrency_in_use == 0, f"{name}: a concurrency slot is still taken"
        assert health.waiting == 0, f"{name}: a waiter is still queued"
    budget = router.budget
    if budget is not None and budget.max_tokens is not None:
        assert budget.remaining_tokens == budget.max_tokens - budget.spent_tokens, "a budget reservation is held"


COOLDOWN = 0.05


def half_open(router: RoutingChatModel, name: str) -> None:
    """Open ``name``'s breaker and let its cooldown pass, so the next call is its probe."""
    state = router.state
    admission = state.admit(name)
    state.release(name, admission, ok=False)
    time.sleep(COOLDOWN + 0.01)
    assert router.health()[name].breaker == "half_open"


def fresh_router(**kwargs: Any) -> RoutingChatModel:
    """Deployment ``a`` at max_concurrency 1 with a one-failure breaker, under a token budget."""
    return RoutingChatModel(
        deployments=[dep("a", max_concurrency=1, **kwargs)],
        state=MemoryState(failure_threshold=1, cooldown=COOLDOWN),
        budget=Budget(max_tokens=100_000),
        max_wait=0.2,
    )


class SlowHandler(BaseCallbackHandler):
    """An ordinary sync handler: LangChain runs it in an executor under ainvoke."""

    def __init__(self, where: str) -> None:
        self.where = where

    def on_llm_end(self, response: Any, **kwargs: Any) -> None:
        if self.where == "end":
            time.sleep(0.3)

    def on_llm_error(self, error: BaseException, **kwargs: Any) -> None:
        if self.where == "error":
            time.sleep(0.3)

    def on_chat_model_start(self, serialized: Any, messages: Any, **kwargs: Any) -> None:
        if self.where == "start":
            time.sleep(0.3)


# ---------------------------------------------------------------------- cancellation under a callback
@pytest.mark.parametrize("where", ["start", "end", "error"])
async def test_cancel_while_a_sync_handler_runs_releases_everything(where: str) -> None:
    steps: list[Any] = [ProviderError("boom", retryable=False)] if where == "error" else ["ok"]
    router = fresh_router(steps=[*steps, "after"])
    half_open(router, "a")
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(router.ainvoke("x", config={"callbacks": [SlowHandler(where)]}), 0.1)
    await asyncio.sleep(0.35)  # the executor thread finishes the handler
    assert_idle(router)
    # The half-open probe was handed back: the deployment serves again.
    health = router.health()["a"]
    assert health.breaker in ("half_open", "closed"), health
    assert (await router.ainvoke("y")).response_metadata["deployment"] == "a"
    assert_idle(router)


async def test_cancel_while_the_provider_runs_releases_everything() -> None:
    router = fresh_router(steps=[Step(reply="late", latency=1.0), "after"])
    task = asyncio.create_task(router.ainvoke("x"))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert_idle(router)
    assert (await router.ainvoke("y")).content == "after"


async def test_cancel_mid_astream_releases_everything() -> None:
    router = fresh_router(steps=[Step(reply="a b c d e f", chunk_delay=0.2), "after"])

    async def consume() -> None:
        async for _ in router.astream("x", config={"callbacks": [SlowHandler("end")]}):
            pass

    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(consume(), 0.3)
    assert_idle(router)
    assert (await router.ainvoke("y")).content == "after"


# ---------------------------------------------------------------------- a gate slot won by waiting
def _gate_race(router: RoutingChatModel) -> None:
    """``b`` (max_concurrency 1) is busy for 0.2 s while ``a`` (first) cools down for 0.1 s."""
    router.state.cooldown("a", 0.1)


def _router_for_gate() -> RoutingChatModel:
    return RoutingChatModel(
        deployments=[
            dep("a", ["from a"] * 5),
            dep("b", [Step(reply="busy", latency=0.2)] + ["from b"] * 5, max_concurrency=1, priority=1, tags=["b"]),
        ],
        max_wait=2,
    )


def test_a_gate_slot_won_by_waiting_is_never_lost_sync() -> None:
    router = _router_for_gate()
    holder = threading.Thread(target=router.invoke, args=("hold b",), kwargs={"routing_tags": "b"})
    holder.start()
    time.sleep(0.05)
    _gate_race(router)
    router.invoke("x")  # waits for b's slot, wins it, and may be served by a, now cooled down
    holder.join()
    assert_idle(router)
    # b still serves: its one slot was handed back.
    assert router.invoke("y", routing_tags="b").response_metadata["deployment"] == "b"


async def test_a_gate_slot_won_by_waiting_is_never_lost_async() -> None:
    router = _router_for_gate()
    holder = asyncio.create_task(router.ainvoke("hold b", routing_tags="b"))
    await asyncio.sleep(0.05)
    _gate_race(router)
    await router.ainvoke("x")
    await holder
    assert_idle(router)
    assert (await router.ainvoke("y", routing_tags="b")).response_metadata["deployment"] == "b"


# ---------------------------------------------------------------------- streams: every exit
def test_keyboard_interrupt_mid_stream_releases_sync() -> None:
    router = fresh_router(steps=[Step(reply="a b c d", error=KeyboardInterrupt(), fail_after=2), "after"])
    with pytest.raises(KeyboardInterrupt):
        for _ in router.stream("x"):
            pass
    assert_idle(router)
    assert router.invoke("y").content == "after"


async def test_keyboard_interrupt_mid_stream_releases_async() -> None:
    router = fresh_router(steps=[Step(reply="a b c d", error=KeyboardInterrupt(), fail_after=2), "after"])
    with pytest.raises(KeyboardInterrupt):
        async for _ in router.astream("x"):
            pass
    assert_idle(router)
    assert (await router.ainvoke("y")).content == "after"


@pytest.mark.parametrize("callbacks", [False, True])
def test_consumer_breaking_out_of_a_stream_releases_sync(callbacks: bool) -> None:
    router = fresh_router(steps=[Step(reply="a b c d"), "after"])
    config = {"callbacks": [SlowHandler("none")]} if callbacks else None
    for _ in router.stream("x", config=config):  # type: ignore[arg-type]
        break
    gc.collect()
    assert_idle(router)
    assert router.invoke("y").content == "after"


async def test_consumer_breaking_out_of_a_stream_releases_async() -> None:
    router = fresh_router(steps=[Step(reply="a b c d"), "after"])
    stream = router.astream("x")
    async for _ in stream:
        break
    await stream.aclose()  # type: ignore[attr-defined]
    assert_idle(router)
    assert (await router.ainvoke("y")).content == "after"


def test_a_stream_abandoned_half_read_releases_sync() -> None:
    router = fresh_router(steps=[Step(reply="a b c d"), "after"])
    stream = router.stream("x")
    next(stream)
    assert router.health()["a"].in_flight == 1
    del stream
    gc.collect()
    assert_idle(router)
    assert router.invoke("y").content == "after"


async def test_a_stream_abandoned_half_read_releases_async() -> None:
    router = fresh_router(steps=[Step(reply="a b c d"), "after"])
    stream = router.astream("x")
    await stream.__anext__()
    assert router.health()["a"].in_flight == 1
    del stream
    gc.collect()
    await asyncio.sleep(0.05)  # the loop's async-generator finalizer closes it
    assert_idle(router)
    assert (await router.ainvoke("y")).content == "after"


@pytest.mark.parametrize("exit_by", ["success", "error"])
def test_every_plain_exit_releases_sync(exit_by: str) -> None:
    first: Any = "ok" if exit_by == "success" else ProviderError("boom", retryable=False)
    router = fresh_router(steps=[first, "after"])
    half_open(router, "a")
    if exit_by == "error":
        with pytest.raises(AllDeploymentsFailedError):
            router.invoke("x", config={"callbacks": [SlowHandler("none")]})
        time.sleep(4 * COOLDOWN)  # the failed probe reopened the breaker (maybe for longer); let it pass
    else:
        router.invoke("x", config={"callbacks": [SlowHandler("none")]})
    assert_idle(router)
    assert router.invoke("y").content == "after"
