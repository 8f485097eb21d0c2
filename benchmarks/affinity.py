"""Prompt-cache affinity, measured on real servers: the share of prompt tokens the servers report cached.

Three llama.cpp servers (``/work/shared/tools/local-llm start 8095`` / 8096 / 8097, started with
``LOCAL_LLM_CTX=8192 LLAMA_ARG_THREADS=1``: one thread each, or three servers' spinning threads
fight over two cores) behind one router; 20 conversations of 6 turns each, the turns interleaved
(turn 1 of every conversation, then turn 2, ...) as a busy gateway sees them, three calls at a
time; ``--grouped`` runs three conversations at a time to their end instead. Each mode runs the
same strategy with affinity off and on, with a system prompt of its own (so no cache carries
over from the other mode). Reported per mode: prompt tokens, the tokens the servers said were
cached (``usage.prompt_tokens_details.cached_tokens``), their share (all turns, and turns 2-6),
the mean latency, and how many deployments each conversation met.
Run by hand (not a test)::

    .venv/bin/python benchmarks/affinity.py --ports 8095 8096 8097 --strategy round_robin
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage

from langchain_multigateway.chat_models.openai import OpenAIChatModel
from langchain_multigateway.routing import Deployment, RoutingChatModel

TOPICS = [
    "basil",
    "tomatoes",
    "roses",
    "orchids",
    "lavender",
    "mint",
    "ferns",
    "cacti",
    "tulips",
    "peppers",
    "lemons",
    "olives",
    "bonsai",
    "moss",
    "ivy",
    "sage",
    "thyme",
    "lilies",
    "maples",
    "grapes",
]
FOLLOW_UPS = [
    "How often should I water it?",
    "What soil suits it best?",
    "How much sun does it need?",
    "Which pests should I watch for?",
    "When should I prune it?",
]


def system_prompt(mode: str) -> str:
    rng = random.Random(mode)
    rules = " ".join(f"Rule {n}: answer about {rng.choice(TOPICS)} with care and precision." for n in range(8))
    return f"[{mode}] You are a gardening assistant. Keep answers short. {rules}"


def router(ports: list[int], strategy: str, affinity: bool) -> RoutingChatModel:
    deployments = [
        Deployment(
            model=OpenAIChatModel(model="gemma-3-270m", base_url=f"http://127.0.0.1:{port}/v1", api_key="local"),
            name=f"llama-{port}",
        )
        for port in ports
    ]
    return RoutingChatModel(
        deployments=deployments, strategy=strategy, affinity=affinity, temperature=0.0, max_tokens=8
    )


async def run_mode(
    ports: list[int], strategy: str, affinity: bool, conversations: int, turns: int, grouped: bool
) -> dict[str, Any]:
    mode = f"{strategy}-affinity-{'on' if affinity else 'off'}{'-grouped' if grouped else ''}"
    gateway = router(ports, strategy, affinity)
    system = SystemMessage(system_prompt(mode))
    histories: list[list[BaseMessage]] = [
        [system, HumanMessage(f"I am growing {TOPICS[n % len(TOPICS)]} (plot {n}). Where do I start?")]
        for n in range(conversations)
    ]
    totals = {"prompt": 0, "cached": 0, "calls": 0, "latency": 0.0, "later_prompt": 0, "later_cached": 0}
    homes: dict[int, set[str]] = {n: set() for n in range(conversations)}
    limit = asyncio.Semaphore(3)

    async def turn(n: int, index: int) -> None:
        async with limit:
            started = time.perf_counter()
            answer = await gateway.ainvoke(histories[n])
            totals["latency"] += time.perf_counter() - started
        usage = answer.usage_metadata or {}
        prompt = int(usage.get("input_tokens", 0))
        cached = int((usage.get("input_token_details") or {}).get("cache_read", 0) or 0)
        totals["prompt"] += prompt
        totals["cached"] += cached
        totals["calls"] += 1
        if index > 0:
            totals["later_prompt"] += prompt
            totals["later_cached"] += cached
        homes[n].add(str(answer.response_metadata["deployment"]))
        histories[n] += [AIMessage(str(answer.content)), HumanMessage(FOLLOW_UPS[index % len(FOLLOW_UPS)])]

    if grouped:  # three conversations at a time, each to its end: few conversations per server at once
        for first in range(0, conversations, 3):
            group = range(first, min(first + 3, conversations))
            for index in range(turns):
                await asyncio.gather(*(turn(n, index) for n in group))
    else:  # every conversation's turn 1, then every turn 2, ...: many conversations per server at once
        for index in range(turns):
            await asyncio.gather(*(turn(n, index) for n in range(conversations)))
    return {
        "mode": mode,
        "calls": totals["calls"],
        "prompt_tokens": totals["prompt"],
        "cached_tokens": totals["cached"],
        "cached_share": totals["cached"] / max(1, totals["prompt"]),
        "cached_share_turns_2_on": totals["later_cached"] / max(1, totals["later_prompt"]),
        "mean_latency_ms": 1000 * totals["latency"] / max(1, totals["calls"]),
        "deployments_per_conversation": sum(len(h) for h in homes.values()) / conversations,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--ports", type=int, nargs="+", default=[8095, 8096, 8097])
    parser.add_argument("--strategy", default="round_robin")
    parser.add_argument("--conversations", type=int, default=20)
    parser.add_argument("--turns", type=int, default=6)
    parser.add_argument("--grouped", action="store_true", help="three conversations at a time, each to its end")
    args = parser.parse_args()
    head = ["calls", "prompt", "cached", "share", "turns 2+", "ms/call", "deps/conv"]
    print(f"{'mode':32} " + " ".join(f"{h:>9}" for h in head))
    for affinity in (False, True):
        r = asyncio.run(run_mode(args.ports, args.strategy, affinity, args.conversations, args.turns, args.grouped))
        print(
            f"{r['mode']:32} {r['calls']:9d} {r['prompt_tokens']:9d} {r['cached_tokens']:9d} "
            f"{r['cached_share']:9.1%} {r['cached_share_turns_2_on']:9.1%} {r['mean_latency_ms']:9.0f} "
            f"{r['deployments_per_conversation']:9.2f}"
        )


if __name__ == "__main__":
    main()
