"""Each strategy's ordering, and the gate's priority line."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter

import pytest

from langchain_multigateway.routing import (
    BalancedStrategy,
    Deployment,
    RequestInfo,
    RoutingChatModel,
    get_strategy,
)
from langchain_multigateway.routing.gate import ConcurrencyGate
from langchain_multigateway.state import MemoryState
from langchain_multigateway.testing import ScriptedChatModel

REQUEST = RequestInfo(input_tokens=1000, output_tokens=500)


def deps(**per_name: dict[str, object]) -> list[Deployment]:
    return [Deployment(model=ScriptedChatModel(model=n), name=n, **kw) for n, kw in per_name.items()]  # type: ignore[arg-type]


def names(ranked: list[Deployment]) -> list[str]:
    return [d.name for d in ranked]


def record(state: MemoryState, name: str, latency: float, ttft: float | None = None) -> None:
    admission = state.admit(name)
    state.release(name, admission, ok=True, latency=latency, ttft=ttft)


def test_ordered_by_priority_through_router() -> None:
    router = RoutingChatModel(deployments=deps(c={"priority": 2}, a={"priority": 0}, b={"priority": 1}))
    assert [d.name for d in router.deployments] == ["a", "b", "c"]
    assert router.invoke("x").response_metadata["deployment"] == "a"


def test_round_robin_rotates() -> None:
    router = RoutingChatModel(deployments=deps(a={}, b={}, c={}), strategy="round_robin")
    served = [router.invoke("x").response_metadata["deployment"] for _ in range(6)]
    assert served == ["a", "b", "c", "a", "b", "c"]
    assert get_strategy("round_robin").order([], REQUEST, MemoryState()) == []


def test_weighted_splits_by_weight() -> None:
    strategy = get_strategy("weighted")
    strategy.__init__(seed=7)  # type: ignore[misc]
    candidates = deps(heavy={"weight": 3}, light={"weight": 1}, off={"weight": 0})
    firsts = Counter(strategy.order(candidates, REQUEST, MemoryState())[0].name for _ in range(4000))
    assert firsts["off"] == 0
    assert 2.5 < firsts["heavy"] / firsts["light"] < 3.5
    assert names(strategy.order(candidates, REQUEST, MemoryState()))[-1] == "off"


def test_weighted_draws_the_whole_order_by_weight() -> None:
    # Every position, not only the first, follows a draw by weight without replacement:
    # P(a, b, c) = w_a / W * w_b / (W - w_a).
    strategy = get_strategy("weighted")
    strategy.__init__(seed=11)  # type: ignore[misc]
    weights = {"a": 1, "b": 2, "c": 7}
    candidates = deps(**{n: {"weight": w} for n, w in weights.items()})
    draws = 30000
    seen = Counter(tuple(names(strategy.order(candidates, REQUEST, MemoryState()))) for _ in range(draws))
    total = sum(weights.values())
    for order, count in seen.items():
        first, second, _ = order
        expected = weights[first] / total * weights[second] / (total - weights[first])
        assert abs(count / draws - expected) < 0.015, (order, count / draws, expected)
    assert len(seen) == 6


class _CountingWeight:
    """A deployment stand-in that counts how often the strategy reads its weight."""

    reads = 0

    def __init__(self, name: str, weight: int) -> None:
        self.name = name
        self._weight = weight

    @property
    def weight(self) -> int:
        _CountingWeight.reads += 1
        return self._weight


def test_weighted_reads_each_weight_a_bounded_number_of_times() -> None:
    # The order is drawn in O(n log n): each weight is read a fixed number of times, not
    # once per remaining position (which made 10,000 deployments take seconds per call).
    candidates = [_CountingWeight(f"d{i}", 1 + i % 5) for i in range(2000)]
    _CountingWeight.reads = 0
    ranked = get_strategy("weighted").order(candidates, REQUEST, MemoryState())  # type: ignore[arg-type]
    assert sorted(d.name for d in ranked) == sorted(d.name for d in candidates)
    assert _CountingWeight.reads <= 2 * len(candidates)


def test_least_latency_uses_ewma_and_ttft_for_streams() -> None:
    state = MemoryState()
    candidates = deps(a={}, b={}, c={})
    record(state, "a", 0.5, ttft=0.05)
    record(state, "b", 0.2, ttft=0.15)
    strategy = get_strategy("least_latency")
    assert names(strategy.order(candidates, REQUEST, state)) == ["c", "b", "a"]  # unmeasured first
    streaming = RequestInfo(10, 10, streaming=True)
    assert names(strategy.order(candidates, streaming, state))[1:] == ["a", "b"]


def test_least_busy() -> None:
    state = MemoryState()
    candidates = deps(a={}, b={"max_concurrency": 10}, c={})
    for _ in range(2):
        state.admit("a")
    for _ in range(5):
        state.admit("b")
    state.admit("c")
    assert names(get_strategy("least_busy").order(candidates, REQUEST, state)) == ["b", "c", "a"]


def test_cheapest_by_estimated_cost() -> None:
    candidates = deps(
        pricey={"input_price": 5, "output_price": 15},
        cheap_in={"input_price": 0.1, "output_price": 10},
        cheap_out={"input_price": 1, "output_price": 1},
    )
    # 1000 in + 500 out: pricey 0.0125, cheap_in 0.0051, cheap_out 0.0015
    assert names(get_strategy("cheapest").order(candidates, REQUEST, MemoryState())) == [
        "cheap_out",
        "cheap_in",
        "pricey",
    ]
    long_input = RequestInfo(input_tokens=100_000, output_tokens=10)
    assert names(get_strategy("cheapest").order(candidates, long_input, MemoryState()))[0] == "cheap_in"


def test_quality() -> None:
    candidates = deps(a={"quality": 0.2}, b={"quality": 0.9}, c={"quality": 0.5})
    assert names(get_strategy("quality").order(candidates, REQUEST, MemoryState())) == ["b", "c", "a"]


def test_balanced_weights_change_the_winner() -> None:
    state = MemoryState()
    candidates = deps(
        smart={"quality": 0.9, "input_price": 10, "output_price": 30},
        thrifty={"quality": 0.5, "input_price": 0.1, "output_price": 0.4},
    )
    record(state, "smart", 1.0)
    record(state, "thrifty", 1.0)
    quality_first = BalancedStrategy(quality=5, cost=1, latency=0, load=0)
    cost_first = BalancedStrategy(quality=1, cost=5, latency=0, load=0)
    assert names(quality_first.order(candidates, REQUEST, state))[0] == "smart"
    assert names(cost_first.order(candidates, REQUEST, state))[0] == "thrifty"
    record(state, "fast", 0.1)
    assert names(BalancedStrategy().order(candidates[:1], REQUEST, state)) == ["smart"]


def test_unknown_strategy() -> None:
    with pytest.raises(ValueError, match="Unknown routing strategy"):
        get_strategy("nope")
    instance = BalancedStrategy()
    assert get_strategy(instance) is instance


def test_gate_threads_in_priority_order() -> None:
    gate = ConcurrencyGate(1)
    assert gate.try_enter()
    assert not gate.try_enter()
    order: list[int] = []
    lock = threading.Lock()

    def wait(priority: int) -> None:
        assert gate.enter(priority, timeout=5)
        with lock:
            order.append(priority)
        gate.leave()

    threads = []
    for p in (5, 1, 3):
        t = threading.Thread(target=wait, args=(p,))
        t.start()
        threads.append(t)
        while gate.waiting < len(threads):
            pass
    gate.leave()
    for t in threads:
        t.join()
    assert order == [1, 3, 5]
    assert gate.active == 0
    assert gate.enter(0, timeout=0.01)
    assert not gate.enter(0, timeout=0.01)


async def test_gate_async_timeout_and_cancel() -> None:
    gate = ConcurrencyGate(1)
    assert await gate.aenter()
    assert not await gate.aenter(timeout=0.01)
    waiter = asyncio.create_task(gate.aenter(timeout=5))
    await asyncio.sleep(0.01)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    second = asyncio.create_task(gate.aenter(priority=2, timeout=5))
    await asyncio.sleep(0.01)
    gate.leave()
    assert await second
    gate.leave()
    assert gate.active == 0
