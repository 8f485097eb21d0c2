"""Many calls at once from tasks and threads, cancelled, abandoned and failing: afterwards nothing is held."""

from __future__ import annotations

import asyncio
import gc
import random
import threading
from typing import Any

from langchain_multigateway._retry import RetryPolicy
from langchain_multigateway.errors import GatewayError, ProviderError, RateLimitError
from langchain_multigateway.routing import Deployment, RoutingChatModel
from langchain_multigateway.state import MemoryState
from langchain_multigateway.testing import ScriptedChatModel, Step
from langchain_multigateway.usage.budgets import Budget

FAST = RetryPolicy(max_attempts=2, initial_delay=0.001, max_delay=0.002, jitter=0)


def busy_router() -> RoutingChatModel:
    """Three deployments at low max_concurrency, one failing often, all a little slow; a budget."""
    steps: list[Any] = [
        Step(reply="a b c d", latency=0.01, chunk_delay=0.002),
        ProviderError("boom"),
        Step(reply="e f g", latency=0.02),
        RateLimitError("slow down", retry_after=0.01),
        Step(reply="h i", error=ProviderError("cut"), fail_after=1),
    ]

    def dep(name: str, script: list[Any], limit: int) -> Deployment:
        model = ScriptedChatModel(model=name, steps=script, exhausted="cycle")
        return Deployment(model=model, name=name, max_concurrency=limit, retry_policy=FAST, rpm=10_000)

    return RoutingChatModel(
        deployments=[dep("flaky", steps, 2), dep("steady", [Step(reply="ok", latency=0.005)], 1), dep("c", steps, 1)],
        strategy="least_busy",
        state=MemoryState(failure_threshold=3, cooldown=0.02),
        budget=Budget(max_tokens=10_000_000),
        max_wait=2,
    )


def assert_idle(router: RoutingChatModel) -> None:
    for name, health in router.health().items():
        assert (health.in_flight, health.concurrency_in_use, health.waiting) == (0, 0, 0), name
    budget = router.budget
    assert budget is not None
    assert budget.max_tokens is not None
    assert budget.remaining_tokens == budget.max_tokens - budget.spent_tokens


async def test_hundreds_of_tasks_cancelled_abandoned_and_failing_leave_nothing_held() -> None:
    router = busy_router()
    rng = random.Random(7)

    async def one(i: int) -> None:
        kind = rng.choice(["invoke", "stream", "cancel", "abandon", "timeout"])
        if kind == "invoke":
            await router.ainvoke(f"q{i}")
        elif kind == "stream":
            async for _ in router.astream(f"q{i}"):
                pass
        elif kind == "abandon":
            stream = router.astream(f"q{i}")
            async for _ in stream:
                break
            await stream.aclose()  # type: ignore[attr-defined]
        else:
            call = router.ainvoke(f"q{i}") if kind == "cancel" else router.ainvoke(f"q{i}", stream_recovery="error")
            await asyncio.wait_for(call, rng.uniform(0.001, 0.03))

    results = await asyncio.gather(*(one(i) for i in range(300)), return_exceptions=True)
    unexpected = [
        r for r in results if isinstance(r, BaseException) and not isinstance(r, (GatewayError, TimeoutError))
    ]
    assert not unexpected, unexpected[:3]
    gc.collect()
    await asyncio.sleep(0.1)  # cancelled executor callbacks and async-generator finalizers run
    assert_idle(router)
    assert (await router.ainvoke("after", routing_strategy="ordered")).content


def test_threads_invoking_and_leaving_streams_early_leave_nothing_held() -> None:
    router = busy_router()
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        for i in range(15):
            try:
                if (n + i) % 3 == 0:
                    for _ in router.stream(f"t{n}-{i}"):
                        break
                else:
                    router.invoke(f"t{n}-{i}")
            except GatewayError:
                pass
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    gc.collect()
    assert not errors, errors[:3]
    assert_idle(router)
