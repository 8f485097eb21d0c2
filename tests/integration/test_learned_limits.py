"""Limits learned from the provider, against a loopback server that announces its limit and enforces it
(``ratelimited_provider.py``, its own process): at the same offered load, the number of 429s with the
router reading the headers (the default) and without (``learn_limits=False``); then two routers
sharing one Redis state, as two worker processes would: every call answered at load, and a budget
one of them learned is spent keeping the other off it (counted in 429s, one call at a time)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from langchain_multigateway.chat_models.openai import OpenAIChatModel
from langchain_multigateway.routing import Deployment, RoutingChatModel
from langchain_multigateway.state import RouterState
from langchain_multigateway.state.redis import RedisState
from tests.redis_server import RedisServer

pytest_plugins = ["tests.redis_fixtures"]

ROOT = Path(__file__).resolve().parents[2]
WINDOW, PER_WINDOW = 1.0, 5
CALLS, CONCURRENCY = 40, 6
SPENT_WINDOW, SPENT_BUDGET = 3.0, 3


@pytest.fixture(scope="module")
def provider() -> Iterator[str]:
    yield from _serve(WINDOW, PER_WINDOW)


@pytest.fixture(scope="module")
def slow_window_provider() -> Iterator[str]:
    """The same server with a long window (``SPENT_WINDOW`` s for ``SPENT_BUDGET`` requests): one router's
    calls spend a window long before it ends, however loaded the machine, so the next call meets it spent."""
    yield from _serve(SPENT_WINDOW, SPENT_BUDGET)


def _serve(window: float, requests: int) -> Iterator[str]:
    args = ["--window", str(window), "--requests", str(requests), "--delay", "0.02"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.integration.ratelimited_provider", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        if not line.startswith("PORT"):
            pytest.fail(f"the rate-limited server did not start: {line!r}")
        yield f"http://127.0.0.1:{int(line.split()[1])}"
    finally:
        proc.terminate()
        proc.wait(10)


def _control(base: str, path: str) -> dict[str, Any]:
    method = "POST" if path == "/_reset" else "GET"
    with urllib.request.urlopen(
        urllib.request.Request(base + path, method=method, data=b"" if method == "POST" else None)
    ) as r:
        return dict(json.loads(r.read()))


def _router(base: str, *, learn: bool, state: RouterState | None = None, models: int = 2) -> RoutingChatModel:
    deployments = [
        Deployment(model=OpenAIChatModel(model=f"m{n}", base_url=base + "/v1", api_key="loopback"), name=f"d{n}")
        for n in range(models)
    ]
    extra: dict[str, Any] = {} if state is None else {"state": state}
    return RoutingChatModel(deployments=deployments, strategy="least_busy", learn_limits=learn, max_wait=10, **extra)


async def _offer(routers: list[RoutingChatModel], calls: int) -> int:
    """``calls`` calls, ``CONCURRENCY`` at a time, spread over ``routers``; how many were answered."""
    limit = asyncio.Semaphore(CONCURRENCY)

    async def one(index: int) -> bool:
        async with limit:
            try:
                await routers[index % len(routers)].ainvoke(f"hello {index}", max_tokens=4)
            except Exception:
                return False
            return True

    return sum(await asyncio.gather(*(one(i) for i in range(calls))))


def _refused(base: str, learn: bool, make: Any) -> tuple[int, int, int]:
    """Reset the server, offer the load; (429s the server sent, requests it served, calls answered)."""
    _control(base, "/_reset")
    answered = asyncio.run(_offer(make(learn), CALLS))
    counts = _control(base, "/_counts")
    return sum(counts["refused"].values()), sum(counts["served"].values()), answered


def test_adaptive_limits_cut_429s_at_the_same_load(provider: str) -> None:
    def make(learn: bool) -> list[RoutingChatModel]:
        return [_router(provider, learn=learn)]

    off = _refused(provider, False, make)
    on = _refused(provider, True, make)
    print(f"\n429s at {CALLS} calls x{CONCURRENCY}: off {off[0]} (served {off[1]}), on {on[0]} (served {on[1]})")
    assert on[2] == CALLS  # every call answered, by waiting for the announced reset instead of a 429
    assert on[0] <= 2
    assert off[0] > on[0]


def test_two_routers_sharing_a_redis_state_answer_every_call_at_load(
    provider: str, redis_server: RedisServer, namespace: str
) -> None:
    states: list[RedisState] = []

    def make(learn: bool) -> list[RoutingChatModel]:
        # Two routers, each with its own RedisState on one redis-server (as two workers).
        made = [RedisState(redis_server.url, namespace=f"{namespace}-{learn}", timeout=2.0) for _ in range(2)]
        states.extend(made)
        return [_router(provider, learn=learn, state=s) for s in made]

    try:
        off = _refused(provider, False, make)
        on = _refused(provider, True, make)
    finally:
        for state in states:
            state.close()
    print(f"\nRedis, two routers: 429s off {off[0]} (served {off[1]}), on {on[0]} (served {on[1]})")
    # Each router counts its own admissions against what it last heard, so two routers racing for a
    # window's last requests still meet 429s: how many, against learning off, depends on how many
    # calls are in flight at that moment (measured 11 -> 10 to 14 -> 7 at 6 at a time; none fewer at
    # 4 at a time), so that count is no assertion. What sharing does for certain is the next test's.
    assert on[2] == CALLS  # every call answered: the ones held back waited for the announced reset


@pytest.mark.parametrize(
    ("learn", "shared", "refused"),
    [(True, True, 0), (True, False, 1), (False, True, 1)],
    ids=["learned-and-shared", "learned-not-shared", "not-learned"],
)
def test_a_budget_one_router_learned_is_spent_keeps_the_other_off_it_through_redis(
    slow_window_provider: str, redis_server: RedisServer, namespace: str, learn: bool, shared: bool, refused: int
) -> None:
    """Router A spends the window in calls one at a time, the last answer announcing nothing left; then
    router B, which has never heard from the provider, makes one call. Sharing A's Redis state and
    learning, B waits for the announced reset (no 429); with its own state, or without learning, B
    sends into the spent window and is refused once (then waits for the Retry-After and is served).
    Counts, not timings: the window (3 s) is far longer than A's 3 calls take on a loaded machine."""
    base = slow_window_provider
    made = [RedisState(redis_server.url, namespace=namespace, timeout=2.0) for _ in range(2)]
    try:
        first = _router(base, learn=learn, state=made[0], models=1)
        second = _router(base, learn=learn, state=made[1] if shared else None, models=1)
        _control(base, "/_reset")
        for n in range(SPENT_BUDGET):
            first.invoke(f"spend {n}", max_tokens=4)
        spent = _control(base, "/_counts")
        assert sum(spent["served"].values()) == SPENT_BUDGET
        assert sum(spent["refused"].values()) == 0
        second.invoke("after", max_tokens=4)  # answered either way
        counts = _control(base, "/_counts")
    finally:
        for state in made:
            state.close()
    assert sum(counts["served"].values()) == SPENT_BUDGET + 1
    assert sum(counts["refused"].values()) == refused
