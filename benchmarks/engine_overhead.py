"""The router engine's own CPU per call on the async path ``multigateway serve`` takes, with no I/O.

The server's lean path (``server/passthrough.py``) skips LangChain's ``ainvoke`` and drives
the router's :class:`~langchain_multigateway.routing.engine.Engine` itself:
``read_overrides`` → ``engine.begin`` → ``drive_async`` with its own attempt function
(``atake`` → send → ``Slot.succeeded`` → ``Slot.afinish``) → ``Answer.finish``. This runs
exactly that, with an attempt that answers at once (a prebuilt result, its metadata reset
each call: parsing an upstream's answer is the provider's work, not the router's), so
what is timed is the router's work alone: describing the request, filtering and ordering,
admission (state, gates, learned limits), release and the answer's metadata.

Two routers:

* ``1 deployment, defaults``: ``RoutingChatModel(deployments=[model])``;
* ``3 deployments, limits``: least_busy over three deployments with rpm/tpm,
  ``max_concurrency`` and breakers (``MemoryState(failure_threshold=5, cooldown=30)``),
  as ``router_overhead.py`` measures the full ``invoke`` path.

Reported: CPU microseconds per call (``time.process_time``), best of ``--rounds`` rounds.
Run by hand (not a test; timings depend on the machine)::

    .venv/bin/python benchmarks/engine_overhead.py --calls 20000 --rounds 7
    .venv/bin/python benchmarks/engine_overhead.py --profile   # cProfile of the 3-deployment router
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import io
import pstats
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _model() -> Any:
    """An OpenAI-compatible deployment's model, as the server routes to; never called (the attempt answers)."""
    from langchain_multigateway.chat_models.openai import OpenAIChatModel

    return OpenAIChatModel(model="gpt-4", base_url="http://127.0.0.1:9/v1", api_key="placeholder")


def build_routers() -> dict[str, Any]:
    from langchain_multigateway.routing import Deployment, RoutingChatModel
    from langchain_multigateway.state import MemoryState

    single = RoutingChatModel(deployments=[_model()])
    limited = RoutingChatModel(
        deployments=[
            Deployment(model=_model(), name=n, rpm=10**7, tpm=10**10, max_concurrency=1000) for n in ("a", "b", "c")
        ],
        strategy="least_busy",
        state=MemoryState(failure_threshold=5, cooldown=30),
    )
    return {"1 deployment, defaults": single, "3 deployments, limits": limited}


def make_call(router: Any) -> Any:
    """One server-style call of ``router``: the lean path's engine calls, with an instant attempt."""
    from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
    from langchain_core.outputs import ChatGeneration, ChatResult

    from langchain_multigateway.routing.attempt import Answer, Slot, atake
    from langchain_multigateway.routing.engine import drive_async
    from langchain_multigateway.routing.request import read_overrides

    usage = {"input_tokens": 12, "output_tokens": 1, "total_tokens": 13}
    message = AIMessage("hi", usage_metadata=usage)  # type: ignore[arg-type]
    result = ChatResult(generations=[ChatGeneration(message=message)])
    meta = message.response_metadata
    messages = [SystemMessage("You are terse."), HumanMessage("Say hello in one word.")]

    async def attempt(shared: Any, request: Any, step: Any) -> Any:
        slot = await atake(shared, request, step)
        if not isinstance(slot, Slot):
            return slot
        try:
            meta.clear()  # the upstream's parsed answer, as the provider would hand it over
            meta["model_name"] = "gpt-4"
            meta["model_provider"] = "openai"
            slot.succeeded(message)
        finally:
            await slot.afinish(None, None)
        return Answer(slot, result)

    engine = router._engine

    async def call() -> ChatResult:
        kwargs: dict[str, Any] = {"max_tokens": 16}
        overrides = read_overrides(kwargs, None)
        request, state = engine.begin(messages, None, kwargs, overrides, streaming=False, whole=False, runs=None)
        answer = await drive_async(engine, request, state, attempt)
        return answer.finish(state.attempts)  # type: ignore[no-any-return]

    return call


async def cpu_per_call(call: Any, calls: int) -> float:
    gc.collect()
    start = time.process_time()
    for _ in range(calls):
        await call()
    return (time.process_time() - start) / calls


async def measure(calls: int, rounds: int) -> dict[str, float]:
    routers = build_routers()
    made = {name: make_call(router) for name, router in routers.items()}
    for call in made.values():
        await cpu_per_call(call, 500)  # warm up (token counts memoised, caches filled)
    best = dict.fromkeys(made, float("inf"))
    for _ in range(rounds):
        for name, call in made.items():  # interleaved: a noisy moment slows one round, not one router
            best[name] = min(best[name], await cpu_per_call(call, calls))
    for router in routers.values():
        idle = all(h.in_flight == 0 for h in router.health().values())
        assert idle, f"the benchmark left slots held: {router.health()}"
    return best


async def profile(calls: int, sort: str) -> str:
    call = make_call(build_routers()["3 deployments, limits"])
    await cpu_per_call(call, 500)
    profiler = cProfile.Profile()
    profiler.enable()
    await cpu_per_call(call, calls)
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats(sort).print_stats(40)
    return out.getvalue()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=10_000, help="sequential calls per round")
    parser.add_argument("--rounds", type=int, default=7, help="rounds per router; the best is reported")
    parser.add_argument("--profile", action="store_true", help="cProfile the 3-deployment router's calls")
    parser.add_argument("--sort", default="tottime", help="pstats sort key for --profile")
    args = parser.parse_args(argv)
    if args.profile:
        print(asyncio.run(profile(args.calls, args.sort)))
        return
    best = asyncio.run(measure(args.calls, args.rounds))
    print(f"router engine's own CPU per call, async server path (best of {args.rounds} rounds of {args.calls})")
    for name, seconds in best.items():
        print(f"  {name:<24} {seconds * 1e6:7.1f} us")


if __name__ == "__main__":
    main()
