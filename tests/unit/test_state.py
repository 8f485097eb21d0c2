"""MemoryState: breakers, rate windows with reconciliation, EWMA, thread and asyncio safety."""

from __future__ import annotations

import asyncio
import threading

import pytest

from langchain_multigateway.state import Admission, BreakerState, MemoryState


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def fail(state: MemoryState, name: str = "d", counts: bool = True) -> Admission:
    admission = state.admit(name)
    assert admission.ok
    state.release(name, admission, ok=False, latency=0.01, counts_against_breaker=counts)
    return admission


def test_breaker_opens_after_threshold_and_half_opens_with_one_probe() -> None:
    clock = Clock()
    state = MemoryState(failure_threshold=3, cooldown=10.0, clock=clock)
    for _ in range(2):
        fail(state)
    assert state.stats("d").breaker is BreakerState.CLOSED
    fail(state)
    assert state.stats("d").breaker is BreakerState.OPEN
    refused = state.admit("d")
    assert not refused.ok
    assert not refused.limited
    assert refused.retry_after == pytest.approx(10.0)
    assert "circuit open" in (refused.reason or "")
    clock.advance(10.0)
    assert state.stats("d").breaker is BreakerState.HALF_OPEN
    probe = state.admit("d")
    assert probe.ok
    assert probe.probe
    second = state.admit("d")
    assert not second.ok
    assert "probe is in flight" in (second.reason or "")
    state.release("d", probe, ok=True, latency=0.02)
    assert state.stats("d").breaker is BreakerState.CLOSED
    assert state.admit("d").ok


def test_failed_probe_reopens_and_uncounted_errors_do_not_trip() -> None:
    clock = Clock()
    state = MemoryState(failure_threshold=2, cooldown=5.0, clock=clock)
    for _ in range(5):
        fail(state, counts=False)
    assert state.stats("d").breaker is BreakerState.CLOSED
    fail(state)
    fail(state)
    assert state.stats("d").breaker is BreakerState.OPEN
    clock.advance(5.0)
    probe = state.admit("d")
    assert probe.probe
    state.release("d", probe, ok=False)
    stats = state.stats("d")
    assert stats.breaker is BreakerState.OPEN
    assert stats.retry_after == pytest.approx(5.0)
    clock.advance(5.0)
    probe = state.admit("d")
    state.release("d", probe, ok=False, counts_against_breaker=False)
    assert state.stats("d").breaker is BreakerState.HALF_OPEN
    assert state.admit("d").probe  # a new probe may go


def test_success_resets_the_failure_streak() -> None:
    state = MemoryState(failure_threshold=3)
    fail(state)
    fail(state)
    ok = state.admit("d")
    state.release("d", ok, ok=True)
    fail(state)
    fail(state)
    assert state.stats("d").breaker is BreakerState.CLOSED
    assert state.stats("d").consecutive_failures == 2


def test_rpm_window_slides() -> None:
    clock = Clock()
    state = MemoryState(clock=clock)
    for _ in range(3):
        assert state.admit("d", rpm=3).ok
        clock.advance(1.0)
    refused = state.admit("d", rpm=3)
    assert not refused.ok
    assert refused.limited
    assert refused.retry_after == pytest.approx(57.0)
    assert state.stats("d", rpm=3).remaining_rpm == 0
    clock.advance(57.0)
    assert state.admit("d", rpm=3).ok
    zero = state.admit("x", rpm=0)
    assert not zero.ok


def test_tpm_reserves_then_reconciles_with_real_usage() -> None:
    clock = Clock()
    state = MemoryState(clock=clock)
    first = state.admit("d", tokens=600, tpm=1000)
    assert first.ok
    refused = state.admit("d", tokens=500, tpm=1000)
    assert not refused.ok
    assert refused.limited
    assert "tpm limit" in (refused.reason or "")
    assert refused.retry_after == pytest.approx(60.0)
    # The call used far fewer tokens than reserved: the budget frees up.
    state.release("d", first, ok=True, tokens=100)
    assert state.stats("d", tpm=1000).remaining_tpm == 900
    second = state.admit("d", tokens=500, tpm=1000)
    assert second.ok
    too_big = state.admit("d", tokens=5000, tpm=1000)
    assert not too_big.ok
    assert not too_big.limited
    clock.advance(61)
    state.release("d", second, ok=True, tokens=999)  # pruned already: no effect on the sum
    assert state.stats("d", tpm=1000).tokens_last_minute == 0


def test_cooldown_and_ewma() -> None:
    clock = Clock()
    state = MemoryState(alpha=0.5, clock=clock)
    state.cooldown("d", 2.0)
    refused = state.admit("d")
    assert refused.limited
    assert refused.retry_after == pytest.approx(2.0)
    assert state.stats("d").retry_after == pytest.approx(2.0)
    clock.advance(2.0)
    assert state.latency("d") is None
    a = state.admit("d")
    state.release("d", a, ok=True, latency=1.0, ttft=0.2)
    b = state.admit("d")
    state.release("d", b, ok=True, latency=3.0, ttft=0.4)
    assert state.latency("d") == pytest.approx(2.0)
    assert state.latency("d", streaming=True) == pytest.approx(0.3)
    assert state.latency("unknown") is None
    assert state.in_flight("unknown") == 0
    c = state.admit("d")
    state.release("d", c, ok=False)
    assert state.stats("d").error_rate == pytest.approx(0.5)
    state.release("d", Admission(ok=False), ok=True)  # never admitted: ignored
    with pytest.raises(ValueError):
        MemoryState(failure_threshold=0)


def test_thread_safety_of_counts() -> None:
    state = MemoryState(failure_threshold=10**9)

    def worker() -> None:
        for i in range(500):
            a = state.admit("d", tokens=1, rpm=10**9, tpm=10**9)
            state.release("d", a, ok=i % 2 == 0, latency=0.001, tokens=2)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stats = state.stats("d")
    assert stats.in_flight == 0
    assert stats.successes + stats.failures == 4000
    assert stats.requests_last_minute == 4000
    assert stats.tokens_last_minute == 8000


async def test_asyncio_safety_of_counts() -> None:
    state = MemoryState()

    async def task() -> None:
        a = state.admit("d", tokens=3, tpm=10**6)
        await asyncio.sleep(0)
        assert state.in_flight("d") >= 1
        state.release("d", a, ok=True, tokens=5)

    await asyncio.gather(*(task() for _ in range(300)))
    stats = state.stats("d")
    assert stats.in_flight == 0
    assert stats.tokens_last_minute == 1500
