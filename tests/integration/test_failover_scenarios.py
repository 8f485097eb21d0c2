"""Issue 12's fault scenarios: the router, with default settings, against a misbehaving provider.

The provider is ``fault_provider.py`` in its own process on a loopback port (real HTTP,
real openai SDK underneath ``OpenAIChatModel``); its model name selects the fault. The
router runs with DEFAULT settings except that, in this ``fast`` profile, every time
limit and breaker cooldown is its default divided by 20 (the fake's waits are divided
by 20 too), so the suite runs in well under a minute. Each scenario (see
``fault_scenarios.py``) asserts what the caller got, how many requests the fake saw and
when, that a healthy call succeeds afterwards and that ``health()`` is idle.

``benchmarks/failover_scenarios.py`` runs the same scenarios through
``ChatOpenAI.with_fallbacks`` for the README's comparison; tests here check that the
checks do fail on that client's known conduct, so a check that cannot fail is caught.
The last tests are callers who misbehave too: a stream abandoned or cancelled while the
provider stalls, and eight threads streaming through one router at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.integration.fault_harness import (
    DELIVERED_BEFORE_CUT,
    PROMPT,
    Case,
    FakeProvider,
    build_router,
    judge,
    run_case,
    start_fake,
    warm_up,
)
from tests.integration.fault_provider import ANSWER, HEALTHY_MARKER
from tests.integration.fault_scenarios import CALL_PATH_CASES, CASES, ERROR_MODE_CASES


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeProvider]:
    with start_fake("fast") as provider:
        warm_up(provider)
        yield provider


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in (*CASES, *ERROR_MODE_CASES, *CALL_PATH_CASES)])
def test_router_defaults_handle_fault(case: Case, fake: FakeProvider) -> None:
    judge(run_case(case, "router", fake))


def _case(case_id: str) -> Case:
    return next(c for c in (*CASES, *ERROR_MODE_CASES) if c.id == case_id)


@pytest.mark.parametrize(
    ("case_id", "failure"),
    [
        ("content-policy", "routed around"),
        ("stream-cut/error", "expected StreamInterruptedError"),
        ("malformed-chunk", "caller got"),
    ],
)
def test_checks_fail_on_with_fallbacks_conduct(case_id: str, failure: str, fake: FakeProvider) -> None:
    """The same checks, on ``ChatOpenAI.with_fallbacks``: its known conduct must fail them."""
    run = run_case(_case(case_id), "with_fallbacks", fake)
    with pytest.raises(AssertionError, match=failure):
        judge(run)


# ---------------------------------------------------------------------------- callers who misbehave too
def _idle(router: object) -> dict[str, tuple[int, int]]:
    health = router.health()  # type: ignore[attr-defined]
    return {name: (h.in_flight, h.waiting) for name, h in health.items() if h.in_flight or h.waiting}


def _healthy_answer(router: object) -> str:
    message = router.invoke(f"{PROMPT} {HEALTHY_MARKER}")  # type: ignore[attr-defined]
    return str(message.text)


def test_abandoned_stream_leaves_router_idle(fake: FakeProvider) -> None:
    """A caller that stops reading mid-stream (the provider stalling) frees everything it held."""
    fake.reset()
    router = build_router(fake, ("stream-stall", "ok"))
    stream = router.stream(PROMPT)
    received = "".join(next(stream).text for _ in range(10))
    stream.close()
    assert received
    assert ANSWER.startswith(received)
    assert _idle(router) == {}
    assert _healthy_answer(router) == ANSWER
    assert fake.seen().count("ok") == 0  # nothing was re-sent for the abandoned call


async def test_cancelled_async_stream_leaves_router_idle(fake: FakeProvider) -> None:
    """An asyncio task cancelled while the provider stalls mid-stream frees its slot and its connection."""
    fake.reset()
    router = build_router(fake, ("stream-stall", "continuable"), recovery="continue", continuable=("continuable",))
    received: list[str] = []
    stalled = asyncio.Event()

    async def consume() -> None:
        async for chunk in router.astream(PROMPT):
            received.append(chunk.text)
            if "".join(received) == DELIVERED_BEFORE_CUT:
                stalled.set()  # the provider goes silent from here

    task = asyncio.create_task(consume())
    await asyncio.wait_for(stalled.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert _idle(router) == {}
    assert fake.seen().count("continuable") == 0  # a cancelled call is not continued elsewhere
    assert await router.ainvoke(f"{PROMPT} {HEALTHY_MARKER}") is not None


def test_concurrent_cut_streams_each_continue_once(fake: FakeProvider) -> None:
    """Eight threads streaming through one router, every primary stream cut: each caller gets the whole
    answer, each cut is continued exactly once from exactly what that caller received."""
    fake.reset()
    router = build_router(
        fake, ("stream-cut", "continuable"), recovery="continue", continuable=("continuable",), scaled=False
    )  # default limits: this is about correctness under contention, not about time

    def one(_: int) -> str:
        return "".join(chunk.text for chunk in router.stream(PROMPT))

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(one, range(8)))
    assert answers == [ANSWER] * 8
    seen = fake.seen()
    assert seen.count("stream-cut") == 8
    assert [r["prefix"] for r in seen.of("continuable")] == [DELIVERED_BEFORE_CUT] * 8
    assert _idle(router) == {}
