"""429s at the same offered load, with the router reading providers' rate-limit headers and without.

Starts ``tests/integration/ratelimited_provider.py`` (its own process: a fixed window of
``--per-window`` requests per model every ``--window`` seconds, announced in OpenAI's
``x-ratelimit-*`` headers on every answer and enforced with 429 + ``retry-after-ms``), then
offers ``--calls`` calls, ``--concurrency`` at a time, to a least_busy router over two
deployments (two models on that server), ``--repeat`` times per mode. Prints the 429s the
server sent, the calls answered and the wall time per run. Run by hand (not a test)::

    .venv/bin/python benchmarks/learned_limits.py --repeat 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from langchain_multigateway.chat_models.openai import OpenAIChatModel
from langchain_multigateway.routing import Deployment, RoutingChatModel

ROOT = Path(__file__).resolve().parent.parent


def control(base: str, path: str) -> dict[str, Any]:
    post = path == "/_reset"
    request = urllib.request.Request(base + path, method="POST" if post else "GET", data=b"" if post else None)
    with urllib.request.urlopen(request) as reply:  # a loopback URL of our own
        return dict(json.loads(reply.read()))


async def offer(base: str, learn: bool, calls: int, concurrency: int) -> int:
    deployments = [
        Deployment(model=OpenAIChatModel(model=f"m{n}", base_url=base + "/v1", api_key="loopback"), name=f"d{n}")
        for n in range(2)
    ]
    router = RoutingChatModel(deployments=deployments, strategy="least_busy", learn_limits=learn, max_wait=30)
    limit = asyncio.Semaphore(concurrency)

    async def one(index: int) -> bool:
        async with limit:
            try:
                await router.ainvoke(f"hello {index}", max_tokens=4)
            except Exception:
                return False
            return True

    return sum(await asyncio.gather(*(one(i) for i in range(calls))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--window", type=float, default=1.0)
    parser.add_argument("--per-window", type=int, default=5)
    parser.add_argument("--calls", type=int, default=40)
    parser.add_argument("--concurrency", type=int, default=6)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.integration.ratelimited_provider",
            "--window",
            str(args.window),
            "--requests",
            str(args.per_window),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = server.stdout.readline() if server.stdout else ""
        base = f"http://127.0.0.1:{int(line.split()[1])}"
        load = f"{args.calls} calls, {args.concurrency} at a time"
        print(f"{load}; server: {args.per_window} per {args.window:g} s per model")
        for learn in (False, True):
            refused, answered, took = [], [], []
            for _ in range(args.repeat):
                control(base, "/_reset")
                started = time.perf_counter()
                answered.append(asyncio.run(offer(base, learn, args.calls, args.concurrency)))
                took.append(time.perf_counter() - started)
                refused.append(sum(control(base, "/_counts")["refused"].values()))
            print(
                f"learn_limits={learn!s:5}  429s per run {refused} (median {statistics.median(refused):g})  "
                f"answered {answered}  median {statistics.median(took):.1f} s"
            )
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
