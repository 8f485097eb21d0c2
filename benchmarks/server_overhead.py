"""What ``multigateway serve`` adds to a request: latency vs. calling the upstream directly, and throughput.

    python benchmarks/server_overhead.py [--requests 2000] [--concurrency 100]
        [--litellm PATH/TO/litellm]   # LiteLLM's proxy in front of the same stub, in the same run

Three processes on loopback: the STUB upstream (``tests/integration/loopback_server.py``,
OpenAI-compatible, counts completions per ``req-<n>`` marker), the gateway started with
the real CLI and its defaults (key auth, ledger, metrics on), and this client (httpx).
Each target gets a warm-up, then

* sequential: 300 requests one at a time, the cleanest view of per-request overhead;
* paired: 600 requests one at a time, each right after one sent straight to the stub, and
  the median of the differences: on a shared machine, whose load drifts over a run, the
  steadiest figure of what the target adds;
* loaded: ``--requests`` at ``--concurrency`` in flight, latency percentiles and throughput.

Every loaded request carries its own marker; afterwards the stub's counts prove each
was answered exactly once (none lost, none twice). Prints a Markdown table and writes
the figures as JSON (``--out``).

``--stream`` measures streamed calls instead (``stream_options.include_usage``): rounds of
one stream straight to the stub, then one through each target, one at a time; per target
the median of what it added to the time to the first event (TTFT) and to the whole stream
(the stub's ``[DONE]``). ``--full-path`` adds a second gateway started with
``MULTIGATEWAY_SERVE_FULL_PATH=1`` (every call through LangChain's ``ainvoke`` / ``astream``)
to the same rounds, so the lean and the full path are compared under the same load.
``--baseline DIR`` adds a gateway run from another checkout of the package (``git worktree add
DIR <commit>``): before and after a change, measured side by side in one run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
STUB = ROOT / "tests" / "integration" / "loopback_server.py"


@dataclass
class Target:
    name: str
    url: str
    headers: dict[str, str]
    model: str
    pid: int | None = None
    """The serving process, whose CPU time per request is measured (None: not measured)."""


@dataclass
class Run:
    latencies_ms: list[float]
    seconds: float
    failures: int

    def pct(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(url: str, process: subprocess.Popen[bytes], seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: the process exited with {process.returncode}")
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.TransportError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


async def one(client: httpx.AsyncClient, target: Target, marker: str) -> tuple[float, bool]:
    body = {"model": target.model, "messages": [{"role": "user", "content": f"say {marker}"}]}
    started = time.perf_counter()
    try:
        response = await client.post(target.url + "/chat/completions", json=body, headers=target.headers)
    except httpx.TransportError as exc:
        print(f"{target.name}: {marker}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return (time.perf_counter() - started) * 1000, False
    elapsed = (time.perf_counter() - started) * 1000
    ok = response.status_code == 200 and response.json()["choices"][0]["message"]["content"].strip() == f"echo {marker}"
    if not ok:
        print(f"{target.name}: {marker}: HTTP {response.status_code} {response.text[:200]}", file=sys.stderr)
    return elapsed, ok


async def run(target: Target, first: int, count: int, concurrency: int) -> Run:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        gate = asyncio.Semaphore(concurrency)

        async def bounded(i: int) -> tuple[float, bool]:
            async with gate:
                return await one(client, target, f"req-{i}")

        started = time.perf_counter()
        results = await asyncio.gather(*(bounded(i) for i in range(first, first + count)))
        seconds = time.perf_counter() - started
    return Run([r[0] for r in results], seconds, sum(not r[1] for r in results))


async def paired(target: Target, direct: Target, first: int, count: int) -> list[float]:
    """What ``target`` adds to each of ``count`` requests, each measured right after one sent to ``direct``."""
    async with httpx.AsyncClient(timeout=60) as client:
        added = []
        for i in range(first, first + count):
            straight, _ = await one(client, direct, f"req-{i}")
            through, _ = await one(client, target, f"req-{i + count}")
            added.append(through - straight)
    return added


async def stream_one(client: httpx.AsyncClient, target: Target, marker: str) -> tuple[float, float, bool]:
    """One streamed call: ms to its first event, ms to its end, and whether it streamed the expected answer."""
    body = {
        "model": target.model,
        "messages": [{"role": "user", "content": f"say {marker}"}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    started = time.perf_counter()
    first = None
    text = ""
    async with client.stream("POST", target.url + "/chat/completions", json=body, headers=target.headers) as response:
        async for line in response.aiter_lines():
            if not line.startswith("data: "):
                continue
            if first is None:
                first = time.perf_counter()
            data = line.removeprefix("data: ")
            if data != "[DONE]":
                choices = json.loads(data).get("choices") or [{}]
                text += choices[0].get("delta", {}).get("content") or ""
    ended = time.perf_counter()
    ok = response.status_code == 200 and text.strip() == f"echo {marker}"
    if not ok:
        print(f"{target.name}: {marker}: HTTP {response.status_code} {text[:200]!r}", file=sys.stderr)
    first = ended if first is None else first
    return (first - started) * 1000, (ended - started) * 1000, ok


async def stream_rounds(direct: Target, targets: list[Target], first: int, rounds: int) -> dict[str, dict[str, Any]]:
    """Per target: what it added to TTFT and to the whole stream, each round against that round's direct stream."""
    added: dict[str, tuple[list[float], list[float]]] = {t.name: ([], []) for t in targets}
    failures = dict.fromkeys(added, 0)
    cpu_before = {t.name: cpu_seconds(t.pid) for t in targets}
    async with httpx.AsyncClient(timeout=60) as client:
        for i in range(first, first + rounds):
            ttft, whole, _ = await stream_one(client, direct, f"req-{i}")
            for target in targets:
                through_ttft, through_whole, ok = await stream_one(client, target, f"req-{i}")
                added[target.name][0].append(through_ttft - ttft)
                added[target.name][1].append(through_whole - whole)
                failures[target.name] += not ok
    cpu = {t.name: (cpu_seconds(t.pid) - cpu_before[t.name]) * 1000 / rounds if t.pid else None for t in targets}
    return {
        name: {
            "added_ttft_p50_ms": statistics.median(ttfts),
            "added_ttft_p90_ms": statistics.quantiles(ttfts, n=10)[-1],
            "added_whole_p50_ms": statistics.median(wholes),
            "added_whole_p90_ms": statistics.quantiles(wholes, n=10)[-1],
            "server_cpu_ms_per_stream": cpu[name],
            "failures": failures[name],
        }
        for name, (ttfts, wholes) in added.items()
    }


def served_once(stub_url: str, first: int, count: int) -> tuple[int, int, int]:
    """(answered once, never, more than once) for markers first..first+count-1, by the stub's counts."""
    served = httpx.get(stub_url + "/stats").json()["served"]
    counts = [served.get(f"req-{i}", 0) for i in range(first, first + count)]
    return sum(c == 1 for c in counts), sum(c == 0 for c in counts), sum(c > 1 for c in counts)


def start_gateway(
    stub_url: str, work: Path, *, full_path: bool = False, checkout: Path | None = None
) -> tuple[subprocess.Popen[bytes], Target]:
    sys.path.insert(0, str(ROOT))
    from langchain_multigateway.server.keys import KeyStore

    if full_path or checkout is not None:
        work = work / ("full-path" if full_path else "baseline")
        work.mkdir()
    config = work / "gateway.yaml"
    config.write_text(f"models:\n  bench:\n    model: openai:clean\n    base_url: {stub_url}/v1\n    api_key: none\n")
    store = KeyStore(work / "keys.sqlite3")
    secret, _ = store.create("bench")
    store.close()
    port = free_port()
    env = {
        **os.environ,
        "MULTIGATEWAY_LEDGER": str(work / "usage.sqlite3"),
        "MULTIGATEWAY_KEYS": str(work / "keys.sqlite3"),
    }
    env.pop("MULTIGATEWAY_SERVE_FULL_PATH", None)
    if full_path:
        env["MULTIGATEWAY_SERVE_FULL_PATH"] = "1"
    if checkout is not None:  # its package first on the path (the process starts in that directory too)
        env["PYTHONPATH"] = os.pathsep.join([str(checkout), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "langchain_multigateway",
            "serve",
            "--config",
            str(config),
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        env=env,
        cwd=checkout,
    )
    url = f"http://127.0.0.1:{port}"
    wait_ready(url + "/health/liveness", process)
    name = "multigateway serve (full path)" if full_path else "multigateway serve"
    name = name if checkout is None else f"multigateway serve ({checkout.name})"
    return process, Target(name, url + "/v1", {"authorization": f"Bearer {secret}"}, "bench", process.pid)


def start_litellm(binary: str, stub_url: str, work: Path) -> tuple[subprocess.Popen[bytes], Target]:
    config = work / "litellm.yaml"
    config.write_text(
        "model_list:\n  - model_name: bench\n    litellm_params:\n      model: openai/clean\n"
        f"      api_base: {stub_url}/v1\n      api_key: none\n"
        "general_settings:\n  master_key: sk-bench-master\n"
    )
    port = free_port()
    process = subprocess.Popen(
        [binary, "--config", str(config), "--port", str(port), "--host", "127.0.0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "LITELLM_LOG": "ERROR"},
    )
    url = f"http://127.0.0.1:{port}"
    wait_ready(url + "/health/liveliness", process, 300)
    return process, Target(
        "LiteLLM proxy", url + "/v1", {"authorization": "Bearer sk-bench-master"}, "bench", process.pid
    )


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU time of a process and its children so far (Linux /proc), 0 when unknown."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    return sum(int(fields[i]) for i in (11, 12, 13, 14)) / ticks


def measure(target: Target, direct: Target, stub_url: str, first: int, args: argparse.Namespace) -> dict[str, Any]:
    asyncio.run(run(target, first, 200, 20))  # warm-up (markers first..first+199)
    sequential = asyncio.run(run(target, first + 1000, 300, 1))
    pairs = asyncio.run(paired(target, direct, first + 50_000, 600)) if target is not direct else [0.0]
    cpu_before = cpu_seconds(target.pid)
    loaded = asyncio.run(run(target, first + 2000, args.requests, args.concurrency))
    cpu = cpu_seconds(target.pid) - cpu_before
    once, never, twice = served_once(stub_url, first + 2000, args.requests)
    return {
        "target": target.name,
        "sequential_p50_ms": statistics.median(sequential.latencies_ms),
        "sequential_p99_ms": sequential.pct(0.99),
        "paired_added_p50_ms": statistics.median(pairs),
        "loaded_p50_ms": loaded.pct(0.5),
        "loaded_p99_ms": loaded.pct(0.99),
        "throughput_rps": args.requests / loaded.seconds,
        "server_cpu_ms_per_request": cpu * 1000 / args.requests if target.pid else None,
        "failures": loaded.failures + sequential.failures,
        "answered_once": once,
        "never": never,
        "twice": twice,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--litellm", metavar="PATH", help="the litellm executable of a venv with litellm[proxy]")
    parser.add_argument("--out", default="server_overhead.json")
    parser.add_argument("--stream", action="store_true", help="measure streamed calls (added TTFT, whole stream)")
    parser.add_argument("--rounds", type=int, default=600, help="--stream: rounds of one stream per target")
    parser.add_argument("--full-path", action="store_true", help="also a gateway with MULTIGATEWAY_SERVE_FULL_PATH=1")
    parser.add_argument("--baseline", metavar="DIR", type=Path, help="also a gateway from this checkout")
    args = parser.parse_args()
    processes: list[subprocess.Popen[bytes]] = []
    load_before = os.getloadavg()  # a shared machine inflates every time: say how busy it was
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        stub = subprocess.Popen([sys.executable, str(STUB), "--port", "0"], stdout=subprocess.PIPE)
        processes.append(stub)
        assert stub.stdout is not None
        stub_url = "http://127.0.0.1:" + stub.stdout.readline().decode().split()[1]
        try:
            gateway, gateway_target = start_gateway(stub_url, work)
            processes.append(gateway)
            targets = [Target("direct to the stub", stub_url + "/v1", {}, "clean", stub.pid), gateway_target]
            if args.full_path:
                full, full_target = start_gateway(stub_url, work, full_path=True)
                processes.append(full)
                targets.append(full_target)
            if args.baseline:
                baseline, baseline_target = start_gateway(stub_url, work, checkout=args.baseline.resolve())
                processes.append(baseline)
                targets.append(baseline_target)
            if args.litellm:
                litellm, litellm_target = start_litellm(args.litellm, stub_url, work)
                processes.append(litellm)
                targets.append(litellm_target)
            if args.stream:
                asyncio.run(stream_rounds(targets[0], targets[1:], 10_000, 50))  # warm-up
                streamed = asyncio.run(stream_rounds(targets[0], targets[1:], 20_000, args.rounds))
            else:
                rows = [measure(t, targets[0], stub_url, 100_000 * (i + 1), args) for i, t in enumerate(targets)]
        finally:
            for process in reversed(processes):
                process.terminate()
                process.wait(timeout=30)
    if args.stream:
        report_streams(streamed, args, load_before)
        return
    direct = rows[0]
    for row in rows:
        for key in ("sequential_p50_ms", "sequential_p99_ms", "loaded_p50_ms", "loaded_p99_ms"):
            row["added_" + key] = row[key] - direct[key]
    load_after = os.getloadavg()
    Path(args.out).write_text(json.dumps({"load_average": [load_before, load_after], "rows": rows}, indent=2))
    print(f"\n{args.requests} requests at concurrency {args.concurrency}; sequential: 300 one at a time")
    print(f"load average (1, 5, 15 min) before: {load_before}, after: {load_after}\n")
    print(
        "| target | added p50 (seq) | added p50 (paired) | added p99 (seq) | p50 loaded | p99 loaded "
        "| added p50 loaded | throughput | server CPU / request | answered once |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row['target']} | {row['added_sequential_p50_ms']:+.2f} ms | {row['paired_added_p50_ms']:+.2f} ms "
            f"| {row['added_sequential_p99_ms']:+.2f} ms "
            f"| {row['loaded_p50_ms']:.1f} ms | {row['loaded_p99_ms']:.1f} ms | {row['added_loaded_p50_ms']:+.1f} ms "
            f"| {row['throughput_rps']:.0f} req/s | {row['server_cpu_ms_per_request']:.2f} ms "
            f"| {row['answered_once']}/{args.requests} "
            f"(lost {row['never']}, twice {row['twice']}, failed {row['failures']}) |"
        )


def report_streams(streamed: dict[str, dict[str, Any]], args: argparse.Namespace, load_before: Any) -> None:
    load_after = os.getloadavg()
    out = {"load_average": [load_before, load_after], "rounds": args.rounds, "streams": streamed}
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(f"\n{args.rounds} rounds, one stream at a time (include_usage), each target against that round's direct one")
    print(f"load average (1, 5, 15 min) before: {load_before}, after: {load_after}\n")
    print(
        "| target | added TTFT p50 | added TTFT p90 | added whole stream p50 | added whole stream p90 "
        "| server CPU / stream | failed |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, row in streamed.items():
        cpu = row["server_cpu_ms_per_stream"]
        print(
            f"| {name} | {row['added_ttft_p50_ms']:+.2f} ms | {row['added_ttft_p90_ms']:+.2f} ms "
            f"| {row['added_whole_p50_ms']:+.2f} ms | {row['added_whole_p90_ms']:+.2f} ms "
            f"| {'-' if cpu is None else f'{cpu:.2f} ms'} | {row['failures']} |"
        )


if __name__ == "__main__":
    main()
