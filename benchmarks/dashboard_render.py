"""How long the dashboard takes to render over a ledger of 100,000 calls.

Builds a ledger (``Ledger``'s own schema and indexes) with ``--rows`` calls spread over
the last ``--days`` days: four models, six deployments, twenty virtual keys (``--keys``), a router
tag each, one call in ten failed over (its failed try in ``call_attempts``), one in
twenty unpriced. Then times, over HTTP on loopback against a real uvicorn server:
``GET /ui`` (every panel: SQL aggregation, SVG, template), ``GET /ui/api/summary``,
``GET /ui/api/deployments`` (what the page polls) and ``GET /ui/usage.csv``. The first
page after a start sums all 30 days; later ones reuse the sums of past days (see
``dashboard.queries``) and scan today's calls only, so both are reported. CPU is this
process's (server and client): on a shared machine wall time can be several times it.

Run by hand (timings depend on the machine)::

    .venv/bin/python benchmarks/dashboard_render.py --rows 100000
"""

from __future__ import annotations

import argparse
import asyncio
import random
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
import uvicorn

from langchain_multigateway.cli.dashboard import build_dashboard_app
from langchain_multigateway.dashboard import DashboardSource
from langchain_multigateway.routing import Deployment, RoutingChatModel
from langchain_multigateway.testing import ScriptedChatModel
from langchain_multigateway.usage import Ledger
from langchain_multigateway.usage.records import CallRecord

KEY = "mg-benchmark-master-key-0123456789"
MODELS = ("gpt-4o-mini", "claude-3-5-haiku", "mistral-small", "llama-local")


def fill(path: Path, rows: int, days: int, keys: int = 20) -> None:
    rng = random.Random(7)
    now = time.time()
    deployments = [f"{m}-{r}" for m in MODELS[:3] for r in ("east", "west")]
    with Ledger(path) as ledger:
        for i in range(rows):
            ts = now - rng.random() * days * 86400
            model = MODELS[i % len(MODELS)]
            ok = rng.random() > 0.03
            inp, out = rng.randint(50, 3000), rng.randint(10, 800)
            tried = {"deployment": rng.choice(deployments), "error_type": "ProviderError", "status_code": 503}
            failed = [{**tried, "latency_ms": 80.0}] if i % 10 == 0 else []
            ledger.add(
                CallRecord(
                    run_id=f"r{i}", started_at=ts - 1, ended_at=ts, latency_ms=rng.uniform(100, 3000),
                    provider="openai", model=model, deployment=rng.choice(deployments),
                    outcome="ok" if ok else "error", error_type=None if ok else "ProviderError",
                    input_tokens=inp if ok else 0, output_tokens=out if ok else 0, total_tokens=inp + out if ok else 0,
                    cost_usd=None if i % 20 == 0 else (inp * 0.15 + out * 0.6) / 1e6,
                    has_usage=ok, tags=(f"key:key_{i % keys:02d}", f"router:{model}"),
                ),
                failed=failed,
            )  # fmt: skip


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def timed(client: httpx.Client, url: str, repeat: int) -> tuple[float, float, float, int]:
    """Median wall and CPU ms (this process: server and client) over ``repeat`` warm requests, and the max."""
    walls, cpus = [], []
    size = 0
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        response = client.get(url)
        walls.append((time.perf_counter() - wall) * 1000)
        cpus.append((time.process_time() - cpu) * 1000)
        response.raise_for_status()
        size = len(response.content)
    return statistics.median(walls), statistics.median(cpus), max(walls), size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--keys", type=int, default=20, help="distinct virtual keys (the page shows the 25 costliest)")
    parser.add_argument("--ledger", type=Path, help="reuse this ledger file (filled when missing)")
    args = parser.parse_args()
    path = args.ledger or Path(tempfile.mkdtemp()) / "usage.sqlite3"
    started = time.perf_counter()
    if not path.exists():
        fill(path, args.rows, args.days, args.keys)
        print(f"ledger: {args.rows:,} calls over {args.days} days, written in {time.perf_counter() - started:.1f} s")
    routers = {
        m: RoutingChatModel(deployments=[Deployment(model=ScriptedChatModel(), name=f"{m}-{r}") for r in ("e", "w")])
        for m in MODELS[:3]
    }
    app = build_dashboard_app(DashboardSource(routers=routers, ledger_path=path), KEY)
    config = uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    base = f"http://127.0.0.1:{config.port}"
    try:
        with httpx.Client(base_url=base, headers={"authorization": f"Bearer {KEY}"}, timeout=120) as client:
            wall, cpu = time.perf_counter(), time.process_time()
            client.get("/ui").raise_for_status()  # the first page sums the 30 days; later ones only today
            print(
                f"first GET /ui after start: {(time.perf_counter() - wall) * 1000:.0f} ms wall,"
                f" {(time.process_time() - cpu) * 1000:.0f} ms CPU"
            )
            print(f"{'request (warm)':34} {'median ms':>10} {'CPU ms':>8} {'max ms':>8} {'bytes':>9}")
            for label, url in (
                ("GET /ui (whole page, today)", "/ui"),
                ("GET /ui?period=30d", "/ui?period=30d"),
                ("GET /ui/api/summary", "/ui/api/summary"),
                ("GET /ui/api/deployments (polled)", "/ui/api/deployments"),
                ("GET /ui/usage.csv", "/ui/usage.csv"),
            ):
                median, cpu, worst, size = timed(client, url, args.repeat)
                print(f"{label:34} {median:10.1f} {cpu:8.1f} {worst:8.1f} {size:9,}")
    finally:
        server.should_exit = True
        thread.join(timeout=10)


if __name__ == "__main__":
    main()
