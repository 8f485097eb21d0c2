"""What one upstream exchange costs the lean path's client: ``Upstream.post`` vs. a bare aiohttp session.

    python benchmarks/upstream_client.py [--calls 2000] [--rounds 3]

The STUB upstream (``tests/integration/loopback_server.py``, OpenAI-compatible) runs in its
own process on a loopback port, so its CPU is not the client's; the clients run in this
process under uvloop (as ``multigateway serve`` does), one call at a time on a kept-alive
connection. Per client and round: CPU time (this process) and wall time per exchange (POST
of a small chat request, the whole answer read). Rounds alternate the clients, so a drift in
the machine's load hits both; the table gives each client's median and range over rounds.
Run it on a quiet machine (the load average is printed).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import orjson

from langchain_multigateway.server.upstream import Upstream

ROOT = Path(__file__).resolve().parent.parent
STUB = ROOT / "tests" / "integration" / "loopback_server.py"
BODY = orjson.dumps({"model": "clean", "messages": [{"role": "user", "content": "say req-1"}]})
HEADERS = {"content-type": "application/json", "accept": "application/json", "authorization": "Bearer none"}
TIMEOUTS: dict[str, float | None] = {"connect": 5.0, "read": 120.0, "write": None, "pool": 5.0}


async def measure(call: Callable[[], Awaitable[bytes]], calls: int) -> tuple[float, float]:
    """(CPU ms, wall ms) per call, over ``calls`` calls one at a time."""
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(calls):
        assert b"chat.completion" in await call()  # a whole answer, every time
    return 1000 * (time.process_time() - cpu) / calls, 1000 * (time.perf_counter() - wall) / calls


async def run(url: str, calls: int, rounds: int) -> dict[str, list[tuple[float, float]]]:
    upstream = Upstream(url)
    session = aiohttp.ClientSession()

    async def ours() -> bytes:
        return (await upstream.post(BODY, HEADERS, None, TIMEOUTS)).body

    async def bare_aiohttp() -> bytes:
        async with session.post(url, data=BODY, headers=HEADERS) as response:
            return await response.read()

    clients = {"Upstream.post (lean client)": ours, "bare aiohttp session": bare_aiohttp}
    figures: dict[str, list[tuple[float, float]]] = {name: [] for name in clients}
    try:
        for call in clients.values():  # warm-up: connections open, code paths hot
            await measure(call, 200)
        for _ in range(rounds):
            for name, call in clients.items():
                figures[name].append(await measure(call, calls))
    finally:
        await session.close()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--calls", type=int, default=2000, help="exchanges per client and round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    load = os.getloadavg()
    stub = subprocess.Popen([sys.executable, str(STUB), "--port", "0"], stdout=subprocess.PIPE)
    try:
        assert stub.stdout is not None
        url = f"http://127.0.0.1:{stub.stdout.readline().decode().split()[1]}/v1/chat/completions"
        import uvloop

        figures = uvloop.run(run(url, args.calls, args.rounds))
    finally:
        stub.terminate()
        stub.wait(10)
    print(f"load average before: {load[0]:.2f}; {args.rounds} rounds of {args.calls} exchanges per client\n")
    print("| client | CPU ms / exchange (median, range) | wall ms / exchange (median, range) |")
    print("|---|---|---|")
    for name, rows in figures.items():
        cpu = [c for c, _ in rows]
        wall = [w for _, w in rows]
        print(
            f"| {name} | {statistics.median(cpu):.3f} ({min(cpu):.3f}-{max(cpu):.3f}) "
            f"| {statistics.median(wall):.3f} ({min(wall):.3f}-{max(wall):.3f}) |"
        )


if __name__ == "__main__":
    main()
