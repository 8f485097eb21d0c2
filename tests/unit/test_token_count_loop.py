"""Token counting never stalls the event loop: 50 concurrent 100k-token ``ainvoke`` calls through a
router that must count them (context windows, tpm).

A stall is measured as asyncio sees one: the longest single callback the loop ran (a task's
step, a timer, an I/O event: work done without yielding), in CPU time of the loop's own
thread. Wall time would also hold whatever else this machine runs (2 cores shared by many
processes: the scheduler can take the thread away for longer than 5 ms at any moment), and
a turn of the loop on a loaded box batches many short callbacks that were due together; both
are printed beside it (``-s``), not asserted. The same run with the prompts counted inline
(the off-loop threshold disabled) is asserted to stall far past the limit, so the test fails
if the feature breaks.
"""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage

from langchain_multigateway.chat_models.openai import OpenAIChatModel
from langchain_multigateway.routing import Deployment, RoutingChatModel
from langchain_multigateway.routing import request as request_module
from langchain_multigateway.testing import ScriptedChatModel
from langchain_multigateway.testing.scripted import Step
from langchain_multigateway.tokens import count_text_tokens

ROOT = Path(__file__).resolve().parents[2]
CALLS = 50
TOKENS = 100_000
STALL_LIMIT_MS = 5.0


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.integration.ratelimited_provider",
            "--requests",
            "100000",
            "--tokens",
            str(10**12),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        if not line.startswith("PORT"):
            pytest.fail(f"the loopback server did not start: {line!r}")
        yield f"http://127.0.0.1:{int(line.split()[1])}/v1"
    finally:
        proc.terminate()
        proc.wait(10)


def _prompt(seed: int) -> str:
    """About ``TOKENS`` tokens of varied text (a different one per call: no count is reused)."""
    rng = random.Random(seed)
    words = [f"{rng.choice('bcdfghklmnprstvz')}{rng.choice('aeiou')}{rng.randint(0, 999)}" for _ in range(50_000)]
    return " ".join(words)


def _deployments(model: str, make: Callable[[int], BaseChatModel]) -> list[Deployment]:
    return [Deployment(model=make(n), name=f"d{n}", context_window=128_000, tpm=10**9) for n in range(2)]


def scripted_router() -> RoutingChatModel:
    """Deployments that answer after an awaited 50 ms: the loop's work is the router's (and counting)."""

    def make(n: int) -> BaseChatModel:
        return ScriptedChatModel(model=f"gpt-4-{n}", steps=[Step(reply="ok", latency=0.05)], exhausted="cycle")

    return RoutingChatModel(deployments=_deployments("gpt-4", make), strategy="least_busy", max_tokens=4)


def http_router(base_url: str) -> RoutingChatModel:
    """The OpenAI provider against a real HTTP server in another process."""

    def make(n: int) -> BaseChatModel:
        return OpenAIChatModel(model=f"gpt-4-{n}", base_url=base_url, api_key="loopback", timeout=60)

    return RoutingChatModel(deployments=_deployments("gpt-4", make), strategy="least_busy", max_tokens=4)


class Stalls:
    """The loop's longest stall, two ways (ms): one callback's CPU, and one turn of the loop (a ticker)."""

    def __init__(self) -> None:
        self.callback_cpu = 0.0
        self.turn_cpu = 0.0
        self.turn_wall = 0.0

    def __str__(self) -> str:
        return (
            f"longest callback {self.callback_cpu:.2f} ms of loop CPU; longest turn {self.turn_cpu:.2f} ms CPU, "
            f"{self.turn_wall:.2f} ms wall"
        )


@contextmanager
def timed_callbacks(stalls: Stalls) -> Iterator[None]:
    """Time every callback the event loop runs (asyncio's ``Handle._run``: tasks' steps, timers, I/O)."""
    run = asyncio.events.Handle._run

    def timed(handle: asyncio.Handle) -> None:
        started = time.thread_time()
        try:
            run(handle)
        finally:
            stalls.callback_cpu = max(stalls.callback_cpu, (time.thread_time() - started) * 1000)

    asyncio.events.Handle._run = timed  # type: ignore[method-assign]
    try:
        yield
    finally:
        asyncio.events.Handle._run = run  # type: ignore[method-assign]


def _run(router: RoutingChatModel, prompts: list[str]) -> tuple[Stalls, int]:
    """How long the loop stalled while ``prompts`` were answered, and how many were.

    The calls start 2 ms apart (a counted 100k-token prompt takes tiktoken 50-200 ms here, so
    all 50 are in flight together), not all in one turn of the loop, as requests reach a server.
    """
    stalls = Stalls()

    async def main() -> int:
        # A process that served before: clients made, imports done, the two counting threads started.
        await asyncio.gather(*(router.ainvoke([HumanMessage(_prompt(-1 - n)[:20_000])]) for n in range(2)))
        done = False

        async def ticker() -> None:
            cpu, wall = time.thread_time(), time.perf_counter()
            while not done:
                await asyncio.sleep(0.001)
                now_cpu, now_wall = time.thread_time(), time.perf_counter()
                stalls.turn_cpu = max(stalls.turn_cpu, (now_cpu - cpu) * 1000)
                stalls.turn_wall = max(stalls.turn_wall, (now_wall - wall) * 1000)
                cpu, wall = now_cpu, now_wall

        async def call(index: int, prompt: str) -> BaseMessage:
            await asyncio.sleep(index * 0.002)
            return await router.ainvoke([SystemMessage("Summarise."), HumanMessage(prompt)])

        tick = asyncio.create_task(ticker())
        with timed_callbacks(stalls):
            answers = await asyncio.gather(*(call(i, p) for i, p in enumerate(prompts)))
        done = True
        await tick
        return sum(1 for a in answers if a.content == "ok")

    answered = asyncio.run(main())
    return stalls, answered


def test_fifty_100k_token_calls_never_block_the_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    prompts = [_prompt(seed) for seed in range(CALLS)]
    counted = count_text_tokens(prompts[0], "gpt-4")
    assert 0.9 * TOKENS < counted < 1.3 * TOKENS, counted

    stalls, answered = _run(scripted_router(), prompts)
    print(f"\n{CALLS} calls, counted off the loop: {stalls}")
    assert answered == CALLS
    assert stalls.callback_cpu < STALL_LIMIT_MS

    # The control: the same calls with every prompt counted inline stall the loop for tens of ms.
    monkeypatch.setattr(request_module, "OFF_LOOP_CHARS", 10**12)
    inline, answered = _run(scripted_router(), [_prompt(seed) for seed in range(100, 110)])
    print(f"10 calls, counted inline: {inline}")
    assert answered == 10
    assert inline.callback_cpu > 4 * STALL_LIMIT_MS


def test_over_http_every_large_count_runs_off_the_loop(server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Through the real OpenAI transport: no count of a large prompt runs on the loop's thread.

    (The whole-call stall is printed, not asserted: encoding and sending a 400 KB body on the
    loop is the HTTP client's work, several ms a call on this machine; see the README.)
    """
    counts: list[tuple[bool, float]] = []
    exact = request_module.exact_tokens

    def recorded(deployment: Deployment, messages: Sequence[BaseMessage]) -> int:
        started = time.perf_counter()
        try:
            return exact(deployment, messages)
        finally:
            on_loop = threading.get_ident() == loop_thread
            counts.append((on_loop, (time.perf_counter() - started) * 1000))

    loop_thread = threading.get_ident()  # asyncio.run runs the loop on this thread
    monkeypatch.setattr(request_module, "exact_tokens", recorded)
    prompts = [_prompt(seed) for seed in range(200, 200 + CALLS)]
    stalls, answered = _run(http_router(server), prompts)
    print(f"\n{CALLS} calls over HTTP: {stalls}")
    assert answered == CALLS
    large = [ms for on_loop, ms in counts if not on_loop]
    assert len(large) >= CALLS  # each prompt counted (one model name per deployment: at least once a call)
    assert max((ms for on_loop, ms in counts if on_loop), default=0.0) < 1.0  # only the tiny warm-up inline
