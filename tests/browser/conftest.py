"""A real ``multigateway serve`` process over a real ledger, and Debian's chromium driven by Playwright.

The gateway's deployments are the server tests' loopback STUB upstream (``down`` answers
503, ``clean`` echoes with usage) and a port nothing listens on (connection refused):
real HTTP faults on loopback. Traffic is sent through the gateway with virtual keys, so
the ledger the page reads was written by the server itself; a few older rows (3 and 20
days ago) are added with a ``Ledger`` beside it, for the 7- and 30-day periods.

Chromium: ``.ci/run`` installs it. Without it the tests fail in CI (``CI`` set) and are
skipped elsewhere, saying how to install it.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.server.conftest import Upstream, free_port, upstream  # noqa: F401  (the STUB upstream fixture)

MASTER_KEY = "mg-master-browser-" + "Qz7" * 8
PLANTED_API_KEY = "sk-planted-upstream-secret-" + "9f" * 10
"""Sent to the upstream as the deployments' API key: must never reach the page."""
ROOT = Path(__file__).resolve().parents[2]


def chromium_path() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    message = "Debian's chromium is not installed: `apt-get install -y chromium` (.ci/run installs it)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def screenshot_dir() -> Path:
    """Where the panels' screenshots go (``$DASHBOARD_SCREENSHOTS``, else build/dashboard-screenshots)."""
    path = Path(os.environ.get("DASHBOARD_SCREENSHOTS") or ROOT / "build" / "dashboard-screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_config(directory: Path, upstream_url: str) -> Path:
    base = f"{upstream_url}/v1"
    closed = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens here: connection refused
    text = f"""
models:
  clean: {{model: "openai:clean", base_url: "{base}", api_key: "{PLANTED_API_KEY}"}}
  down: {{model: "openai:down", base_url: "{base}", api_key: "{PLANTED_API_KEY}"}}
  gone: {{model: "openai:gone", base_url: "{closed}", api_key: "{PLANTED_API_KEY}", max_retries: 0}}
routers:
  main:
    deployments:
      - {{model: down, name: primary, rpm: 600, tpm: 100000}}
      - {{model: clean, name: backup, input_price: 1000, output_price: 2000}}
  guarded:
    breaker: {{failure_threshold: 2, cooldown: 600}}
    deployments:
      - {{model: gone, name: unreachable}}
      - {{model: clean, name: fallback, input_price: 500, output_price: 500}}
"""
    path = directory / "gateway.yaml"
    path.write_text(text)
    return path


@dataclass
class Served:
    url: str
    ledger: Path
    keys: Path
    secrets: list[str]
    """Every secret that must not appear in the page, its JSON or its CSV."""
    key_ids: dict[str, str]
    rows: int = 0
    """Ledger rows there will be once the server has committed every call it answered."""

    def chat(self, key: str, model: str, text: str = "hello") -> httpx.Response:
        body = {"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": 8}
        response = httpx.post(
            self.url + "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}, timeout=60
        )
        self.rows += 1
        return response

    def settled(self) -> None:
        """Wait until the server's ledger writer has committed every call (it commits in batches)."""
        deadline = time.monotonic() + 30
        while True:
            with sqlite3.connect(self.ledger) as conn:
                if conn.execute("SELECT COUNT(*) FROM calls").fetchone()[0] >= self.rows:
                    return
            assert time.monotonic() < deadline, "the server's ledger never got its rows"
            time.sleep(0.05)


def _start(config: Path, env: dict[str, str], ledger: Path, keys: Path) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    command = [sys.executable, "-m", "langchain_multigateway", "serve", "--config", str(config)]
    command += ["--port", str(port), "--ledger", str(ledger), "--keys", str(keys), "--log-level", "warning"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"serve exited: {process.stderr.read() if process.stderr else ''}")
        try:
            if httpx.get(url + "/health/liveness", timeout=1).status_code == 200:
                return process, url
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("serve did not start")


def _old_rows(ledger_path: Path, key_id: str) -> None:
    """Rows from 3 and 20 days ago (one unpriced), written beside the server like a second process would."""
    from langchain_multigateway.usage import Ledger
    from langchain_multigateway.usage.records import CallRecord

    now = time.time()
    rows = [
        (3, "backup", "clean", 0.25, ("router:main", f"key:{key_id}")),
        (20, "backup", "clean", 1.5, ("router:main", f"key:{key_id}")),
        (20, "mystery", "mystery-model", None, ("router:main", "nightly")),
    ]
    with Ledger(ledger_path) as ledger:
        for i, (days, deployment, model, cost, tags) in enumerate(rows):
            ts = now - days * 86400
            ledger.add(
                CallRecord(
                    run_id=f"old-{i}", started_at=ts - 1, ended_at=ts, latency_ms=900.0, provider="openai",
                    model=model, deployment=deployment, outcome="ok", input_tokens=1000, output_tokens=500,
                    total_tokens=1500, cost_usd=cost, has_usage=True, tags=tags,
                )
            )  # fmt: skip


@pytest.fixture(scope="module")
def served(upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:  # noqa: F811
    directory = tmp_path_factory.mktemp("dashboard")
    ledger, keys = directory / "usage.sqlite3", directory / "keys.sqlite3"
    env = {**os.environ, "MULTIGATEWAY_MASTER_KEY": MASTER_KEY}
    process, url = _start(write_config(directory, upstream.url), env, ledger, keys)
    try:
        admin = {"authorization": f"Bearer {MASTER_KEY}"}
        made: dict[str, Any] = {}
        for name, budget in (("team-a", 1.0), ("=team-b", None)):  # a name a spreadsheet would run as a formula
            body = {"name": name, "budget_usd": budget, "period": "30d"} if budget else {"name": name}
            response = httpx.post(url + "/admin/keys", json=body, headers=admin, timeout=30)
            assert response.status_code == 201, response.text
            made[name] = response.json()
        served = Served(
            url,
            ledger,
            keys,
            [MASTER_KEY, PLANTED_API_KEY, *(m["key"] for m in made.values())],
            {name: m["id"] for name, m in made.items()},
        )
        team_a, team_b = made["team-a"]["key"], made["=team-b"]["key"]
        for i in range(3):  # each fails over: primary answers 503 (twice: one retry), backup serves
            assert served.chat(team_a, "main", f"a{i}").status_code == 200
        for i in range(2):
            assert served.chat(team_b, "main", f"b{i}").status_code == 200
        assert served.chat(team_b, "clean").status_code == 200  # no price known for "clean": n/a
        _old_rows(ledger, made["team-a"]["id"])
        served.rows += 3
        yield served
    finally:
        process.terminate()
        try:
            logs = process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            logs = process.communicate()
    # The server's own output (its warnings: failed tries, fallbacks) names no secret either.
    for secret in served.secrets:
        assert secret not in "".join(logs)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = chromium_path()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        message = "playwright is not installed: pip install -e '.[dev]'"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()
