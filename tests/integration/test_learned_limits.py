"""Limits learned from the provider, against a loopback server that announces its limit and enforces it
(``ratelimited_provider.py``, its own process): at the same offered load, the number of 429s with the
router reading the headers (the default) and without (``learn_limits=False``); then two routers
sharing one Redis state, as two worker processes would."""

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


@pytest.fixture(scope="module")
def provider() -> Iterator[str]:
    args = ["--window", str(WINDOW), "--requests", str(PER_WINDOW), "--delay", "0.02"]
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


def _router(base: str, *, learn: bool, state: RouterState | None = None) -> RoutingChatModel:
    deployments = [
        Deployment(model=OpenAIChatModel(model=f"m{n}", base_url=base + "/v1", api_key="loopback"), name=f"d{n}")
        for n in range(2)
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


def test_two_routers_sharing_a_redis_state_learn_together(
    provider: str, redis_server: RedisServer, namespace: str
) -> None:
    states: list[RedisState] = []

    def make(learn: bool) -> list[RoutingChatModel]:
        # Two routers, each with its own RedisState on one redis-server (as two workers): a budget
        # one of them learns is spent keeps the other off it too (the state's shared cooldown).
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
    # Each router counts its own admissions against what it last heard; only a spent budget is
    # shared (as a cooldown), so two routers overshoot a little more than one: fewer, not none.
    assert on[2] == CALLS
    assert on[0] < off[0]
