"""The multi-process proof: 4 worker processes share one RedisState (a real redis-server) and
call an OpenAI-compatible stub server on loopback, which counts what it really received."""

from __future__ import annotations

import bisect
import json
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from langchain_multigateway.state.redis import RedisState
from tests.redis_server import RedisServer

pytest_plugins = ["tests.redis_fixtures"]  # redis_server
pytestmark = pytest.mark.redis

WORKER = Path(__file__).with_name("redis_worker.py")
ROOT = WORKER.parent.parent.parent


class Stub(ThreadingHTTPServer):
    """Chat completions on 127.0.0.1: models named ``flaky*`` answer 500, others answer
    with usage; every request is logged as (model, arrival time, tokens billed)."""

    daemon_threads = True
    # 32 clients at once on a loaded 2-core machine: socketserver's default backlog of 5 dropped
    # connection attempts (SYN retries stalled calls past their limits and failed them over)
    request_queue_size = 512

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.log: list[tuple[str, float, int]] = []
        self.lock = threading.Lock()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def arrivals(self, model: str) -> list[float]:
        return sorted(at for name, at, _ in self.log if name == model)


class _Handler(BaseHTTPRequestHandler):
    server: Stub
    protocol_version = "HTTP/1.1"  # keep-alive, as real providers do: not one connection per call

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        model = body["model"]
        prompt = sum(len(str(m.get("content", "")).split()) for m in body["messages"])
        failing = model.startswith("flaky")
        billed = 0 if failing else prompt + 2
        with self.server.lock:
            self.server.log.append((model, time.monotonic(), billed))
        if failing:
            payload: dict[str, Any] = {"error": {"message": "upstream down", "type": "server_error"}}
            self._send(500, payload)
            return
        payload = {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok fine"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": 2, "total_tokens": billed},
        }
        self._send(200, payload)

    def _send(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def stub() -> Iterator[Stub]:
    server = Stub()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def run_workers(jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Start one process per job; once all are built, start their calls together; their JSON results.

    (Together: on a loaded machine the processes took 10 to 50 s to start, which spread their
    calls past one 60 s window, and a request's trip from admission to the server varies.)
    """
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), json.dumps(job)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for job in jobs
    ]
    for proc in procs:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready", proc.communicate(timeout=300)[1][-3000:]
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def max_in_any_window(arrivals: list[float], window: float = 60.0) -> int:
    """The most arrivals in any ``window``-second span (each span starting at an arrival)."""
    return max((bisect.bisect_left(arrivals, at + window) - i for i, at in enumerate(arrivals)), default=0)


def test_four_processes_share_one_rpm_limit_and_usage_adds_up(redis_server: RedisServer, stub: Stub) -> None:
    namespace = f"mp-{uuid.uuid4().hex[:8]}"
    job = {
        "redis_url": redis_server.url,
        "namespace": namespace,
        "base_url": stub.base_url,
        "deployments": ["limited", "overflow"],
        "rpm": 100,
        "calls": 250,
        "concurrency": 8,
    }
    results = run_workers([{**job, "worker": w} for w in range(4)])
    limited = stub.arrivals("limited")
    # every admission was Redis' (a loop held up by the SDK's first import once sent processes local)
    assert [r["misses"] for r in results] == [[]] * 4
    admitted: Counter[str] = Counter()
    for r in results:
        admitted.update(r["admitted"])
    # all granted by Redis; more than 100 for "limited" only if the run outlasted the window
    assert set(admitted) == {"limited Ticket", "overflow Ticket"}, admitted
    assert admitted.total() == 1000
    # counted server-side, across all four processes: the limit is reached, never passed
    span = limited[-1] - limited[0]
    arrived = Counter(model for model, _, _ in stub.log)
    assert max_in_any_window(limited) == 100, f"{len(limited)} requests over {span:.1f}s; {arrived}; {results}"
    assert all(r["shared"] for r in results)
    served: Counter[str] = Counter()
    tokens: Counter[str] = Counter()
    for r in results:
        served.update(r["served"])
        tokens.update(r["tokens"])
    server_requests = Counter(model for model, _, _ in stub.log)
    server_tokens: Counter[str] = Counter()
    for model, _, billed in stub.log:
        server_tokens[model] += billed
    assert sum(served.values()) == 1000
    assert served == server_requests  # no request lost, none sent twice
    assert tokens == server_tokens
    assert all(sum(r["served"].values()) == 250 for r in results)
    state = RedisState(redis_server.url, namespace=namespace)
    for name in ("limited", "overflow"):
        stats = state.stats(name, rpm=100)
        assert stats.in_flight == 0  # every admission, in every process, was released
        assert stats.successes == served[name]
    state.close()


def test_a_breaker_opened_in_one_process_stops_the_others_at_once(redis_server: RedisServer, stub: Stub) -> None:
    namespace = f"mp-{uuid.uuid4().hex[:8]}"
    job = {
        "redis_url": redis_server.url,
        "namespace": namespace,
        "base_url": stub.base_url,
        "deployments": ["flaky", "backup"],
        "breaker": {"cooldown": 120.0},  # no probe may fall inside the test
    }
    (opener,) = run_workers([{**job, "worker": 0, "until_open": True}])
    failures = len(stub.arrivals("flaky"))
    assert failures == 5  # the default threshold, all seen by the first process
    assert opener["served"] == {"backup": 5}
    others = run_workers([{**job, "worker": w, "calls": 25} for w in (1, 2, 3)])
    assert len(stub.arrivals("flaky")) == failures  # not one request from the other three
    assert [r["served"] for r in others] == [{"backup": 25}] * 3
