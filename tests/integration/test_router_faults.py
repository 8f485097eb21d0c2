"""The router against a real loopback HTTP server that injects faults.

Three OpenAIChatModel deployments (real openai SDK, real HTTP on 127.0.0.1), two of
them failing 30% of the time (429 with Retry-After, 500, 503, slower than the
timeout (2 s against a 1 s limit), connection resets, malformed JSON, SSE streams
cut before content), plus an outage on one. 1,000 requests, invoke and stream mixed, bounded concurrency: every
one succeeds, none is answered twice, breakers open and close.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from langchain_multigateway._retry import RetryPolicy
from langchain_multigateway.chat_models.openai import OpenAIChatModel
from langchain_multigateway.routing import Deployment, RoutingChatModel
from langchain_multigateway.state import MemoryState

SERVER = Path(__file__).with_name("loopback_server.py")
REQUESTS = 1000
CONCURRENCY = 32


@pytest.fixture(scope="module")
def fault_server() -> Iterator[str]:
    process = subprocess.Popen(
        [sys.executable, str(SERVER), "--fault-rate", "0.3", "--seed", "7", "--slow-seconds", "2.0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("PORT "), line
        yield f"http://127.0.0.1:{int(line.split()[1])}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def _get(url: str) -> dict[str, object]:
    with urllib.request.urlopen(url, timeout=5) as response:
        result: dict[str, object] = json.loads(response.read())
        return result


def _post(url: str, payload: dict[str, object]) -> None:
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=5):
        pass


def _deployment(base: str, model: str) -> Deployment:
    llm = OpenAIChatModel(model=model, base_url=f"{base}/v1", api_key="placeholder", timeout=1.0)
    retry = RetryPolicy(max_attempts=2, initial_delay=0.01, max_delay=0.05, jitter=0.5, deadline=10)
    return Deployment(model=llm, name=model, retry_policy=retry)


async def test_thousand_requests_survive_injected_faults(fault_server: str) -> None:
    state = MemoryState(failure_threshold=5, cooldown=0.5)
    router = RoutingChatModel(
        deployments=[_deployment(fault_server, m) for m in ("faulty-1", "faulty-2", "clean")],
        strategy="round_robin",
        state=state,
        max_wait=10,
    )
    transitions: dict[str, list[str]] = {d.name: ["closed"] for d in router.deployments}

    def seen(name: str, breaker: object) -> None:
        # Every transition, as the state makes it (polling health() missed a short open period under load).
        value = str(getattr(breaker, "value", breaker))
        if transitions[name][-1] != value:
            transitions[name].append(value)

    state.add_listener(seen)

    gate = asyncio.Semaphore(CONCURRENCY)
    served_by: dict[str, int] = {}

    async def one(i: int) -> None:
        async with gate:
            if i == REQUESTS // 3:
                await asyncio.to_thread(_post, f"{fault_server}/control", {"outage": {"faulty-1": 1.0}})
            prompt = f"req-{i} please echo"
            if i % 2:
                chunks = [chunk async for chunk in router.astream(prompt)]
                text = "".join(str(c.content) for c in chunks)
                deployment = chunks[-1].response_metadata["deployment"]
            else:
                message = await router.ainvoke(prompt)
                text = str(message.content)
                deployment = message.response_metadata["deployment"]
            assert text.strip() == f"echo req-{i}"
            served_by[deployment] = served_by.get(deployment, 0) + 1

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(REQUESTS)))
    # Give the outage deployment time to be probed and close again.
    deadline = time.perf_counter() + 60  # ends as soon as it closes: the bound only says "not never"
    i = REQUESTS
    while transitions["faulty-1"][-1] != "closed" and time.perf_counter() < deadline:
        await one(i)
        i += 1
        await asyncio.sleep(0.05)
    elapsed = time.perf_counter() - started
    state.remove_listener(seen)

    stats = await asyncio.to_thread(_get, f"{fault_server}/stats")
    served = stats["served"]
    faults = stats["faults"]
    assert isinstance(served, dict)
    assert isinstance(faults, dict)
    counts = [served.get(f"req-{n}", 0) for n in range(i)]
    assert counts == [1] * i, "a request was answered twice (or never)"
    for kind in ("rate_limit", "error_500", "error_503", "slow", "reset", "malformed", "cut_stream", "outage"):
        assert faults.get(kind, 0) > 0, f"no {kind} fault was injected: {faults}"
    assert "open" in transitions["faulty-1"]
    first_open = transitions["faulty-1"].index("open")
    assert "closed" in transitions["faulty-1"][first_open:], transitions
    assert set(served_by) == {"faulty-1", "faulty-2", "clean"}
    print(f"\n{i} requests in {elapsed:.1f}s; faults injected {faults}; served by {served_by}; breakers {transitions}")
