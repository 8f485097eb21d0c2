"""What sharing state through Redis costs per routed call: RedisState vs MemoryState.

A real ``redis-server`` (started here on a free loopback port, no persistence) and the
stub OpenAI-compatible server (tests/integration/loopback_server.py, no faults) each run
in their own process, so neither one's CPU is counted as the client's. Measured:

* the state alone: one admission + one release, wall time per pair (p50 / p99) and
  client CPU per pair, MemoryState vs RedisState (sync client, and async client);
* a routed call: ``RoutingChatModel.invoke`` over two ``OpenAIChatModel`` deployments with
  rpm/tpm limits and breakers on, wall time per call (p50 / p99) and client CPU per call;
  the difference between the two states is what Redis adds;
* Redis round trips per routed call, from the server's own command statistics.

Run by hand (not a test; timings depend on the machine)::

    .venv/bin/python benchmarks/redis_state.py --calls 2000
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.router_overhead import start_server  # noqa: E402
from langchain_multigateway import Deployment, OpenAIChatModel, RetryPolicy, RoutingChatModel  # noqa: E402
from langchain_multigateway.state import MemoryState, RouterState  # noqa: E402
from langchain_multigateway.state.redis import RedisState  # noqa: E402
from tests.redis_server import RedisServer  # noqa: E402


def percentiles(samples: list[float]) -> tuple[float, float]:
    """p50 and p99 in milliseconds."""
    ordered = sorted(samples)
    return statistics.median(ordered) * 1000, ordered[int(len(ordered) * 0.99) - 1] * 1000


def timed(fn: Callable[[], Any], n: int, warmup: int) -> tuple[list[float], float]:
    """Per-run wall times, and client CPU seconds per run."""
    for _ in range(warmup):
        fn()
    gc.collect()
    walls = []
    cpu = time.process_time()
    for _ in range(n):
        start = time.perf_counter()
        fn()
        walls.append(time.perf_counter() - start)
    return walls, (time.process_time() - cpu) / n


def pair(state: RouterState) -> Callable[[], None]:
    def run() -> None:
        admission = state.admit("d", tokens=30, rpm=10**9, tpm=10**12)
        state.release("d", admission, ok=True, latency=0.01, tokens=25)

    return run


def async_pairs(state: RouterState, n: int) -> tuple[list[float], float]:
    async def run() -> tuple[list[float], float]:
        for _ in range(50):
            admission = await state.aadmit("d")
            await state.arelease("d", admission, ok=True)
        walls = []
        cpu = time.process_time()
        for _ in range(n):
            start = time.perf_counter()
            admission = await state.aadmit("d", tokens=30, rpm=10**9, tpm=10**12)
            await state.arelease("d", admission, ok=True, latency=0.01, tokens=25)
            walls.append(time.perf_counter() - start)
        return walls, (time.process_time() - cpu) / n

    return asyncio.run(run())


def router(state: RouterState, base_url: str) -> RoutingChatModel:
    once = RetryPolicy(max_attempts=1)

    def model() -> OpenAIChatModel:
        return OpenAIChatModel(model="stub", base_url=base_url, api_key="none", max_retries=0)

    return RoutingChatModel(
        deployments=[
            Deployment(model=model(), name="primary", rpm=10**9, tpm=10**12, retry_policy=once),
            Deployment(model=model(), name="backup", priority=1, rpm=10**9, retry_policy=once),
        ],
        state=state,
    )


def evalsha_calls(server: RedisServer) -> int:
    import redis

    client = redis.Redis(port=server.port)
    stats = client.info("commandstats")
    client.close()
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--pairs", type=int, default=5000)
    parser.add_argument("--warmup", type=int, default=100)
    args = parser.parse_args()

    redis_server = RedisServer(Path("/tmp") / "multigateway-bench-redis")
    redis_server.start()
    stub, base_url = start_server()
    try:
        states: dict[str, RouterState] = {
            "MemoryState": MemoryState(),
            # a 1 s bound: on a busy machine a 50 ms stall would send the run to local state
            "RedisState": RedisState(redis_server.url, namespace="bench", timeout=1.0),
        }
        print(f"state alone: one admission + one release ({args.pairs} pairs)")
        print(f"{'':24} {'p50 ms':>8} {'p99 ms':>8} {'CPU ms':>8}")
        for label, state in states.items():
            walls, cpu = timed(pair(state), args.pairs, args.warmup)
            p50, p99 = percentiles(walls)
            print(f"{label + ' (sync)':24} {p50:8.3f} {p99:8.3f} {cpu * 1000:8.3f}")
        for label, state in states.items():
            walls, cpu = async_pairs(state, args.pairs)
            p50, p99 = percentiles(walls)
            print(f"{label + ' (async)':24} {p50:8.3f} {p99:8.3f} {cpu * 1000:8.3f}")

        print(f"\nrouted call: RoutingChatModel.invoke over the loopback stub ({args.calls} calls each)")
        print(f"{'':24} {'p50 ms':>8} {'p99 ms':>8} {'CPU ms':>8}")
        routers = {label: router(state, base_url) for label, state in states.items()}
        walls: dict[str, list[float]] = {label: [] for label in states}
        cpu: dict[str, float] = dict.fromkeys(states, 0.0)
        before = evalsha_calls(redis_server)
        rounds = 10  # alternate the two in rounds, so load from elsewhere hits both alike
        for _ in range(rounds):
            for label, routed in routers.items():
                block, block_cpu = timed(lambda r=routed: r.invoke("req-0 Say hello."), args.calls // rounds, 10)
                walls[label] += block
                cpu[label] += block_cpu / rounds
        trips = (evalsha_calls(redis_server) - before) / (rounds * (args.calls // rounds + 10))
        results = {label: (*percentiles(walls[label]), cpu[label]) for label in states}
        for label, (p50, p99, per_call) in results.items():
            print(f"{label:24} {p50:8.3f} {p99:8.3f} {per_call * 1000:8.3f}")
        (m50, m99, mcpu), (r50, r99, rcpu) = results["MemoryState"], results["RedisState"]
        print(f"{'added by Redis':24} {r50 - m50:8.3f} {r99 - m99:8.3f} {(rcpu - mcpu) * 1000:8.3f}")
        print(f"Redis round trips per routed call: {trips:.2f}")
        shared = all(s.health().shared for s in states.values() if isinstance(s, RedisState))
        print(f"RedisState stayed shared (no fallback) throughout: {shared}")
        for state in states.values():
            if isinstance(state, RedisState):
                state.close()
    finally:
        stub.kill()
        redis_server.stop()


if __name__ == "__main__":
    main()
