"""Adversarial pass on names the server puts in HTTP headers: a deployment named outside ASCII.

A config may name a deployment in any script (``clean-東京``); the server names the
deployment that served a call in the ``x-multigateway-deployment`` header, and HTTP
header values are bytes (Starlette encodes them as latin-1). A real gateway (uvicorn on
a loopback port) in front of the loopback STUB upstream serves such a router,
non-streamed and streamed: every call must be answered, name its deployment in a
header any client can read, be settled once and leave the deployment idle.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote

import httpx
import pytest

from langchain_multigateway.server import build_app
from tests.server.conftest import ThreadedServer, Upstream

NAME = "clean-東京"


@pytest.fixture(scope="module")
def named(upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    directory = tmp_path_factory.mktemp("names")
    config = directory / "gateway.yaml"
    config.write_text(
        "models:\n"
        f'  clean: {{model: "openai:clean", base_url: "{upstream.url}/v1", api_key: none}}\n'
        "routers:\n"
        "  tokyo:\n"
        "    deployments:\n"
        f'      - {{model: clean, name: "{NAME}", input_price: 1, output_price: 2}}\n'
    )
    ledger = directory / "usage.sqlite3"
    app = build_app(config, keys_path=directory / "keys.sqlite3", ledger_path=ledger, require_key=False)
    with ThreadedServer(app) as server:
        yield server.url, ledger


def _rows(ledger: Path) -> int:
    with sqlite3.connect(ledger) as db:
        return int(db.execute("SELECT COUNT(*) FROM calls").fetchone()[0])


@pytest.mark.parametrize("stream", [False, True])
def test_a_deployment_named_outside_ascii_is_named_in_a_readable_header_and_settled(
    named: tuple[str, Path], stream: bool
) -> None:
    url, ledger = named
    before = _rows(ledger)
    body = {"model": "tokyo", "messages": [{"role": "user", "content": "hi"}], "stream": stream}
    with httpx.Client(timeout=60) as client, client.stream("POST", url + "/v1/chat/completions", json=body) as answer:
        text = answer.read().decode()
        assert answer.status_code == 200, text
        header = answer.headers["x-multigateway-deployment"]
    assert header.isascii()
    assert unquote(header) == NAME  # percent-encoded UTF-8, as a URL path segment
    assert "echo: hi" in text or "echo" in text
    deadline = time.monotonic() + 10
    while _rows(ledger) != before + 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _rows(ledger) == before + 1
    ready = httpx.get(url + "/health/readiness", timeout=30).json()
    assert ready["routers"]["tokyo"]["deployments"][NAME]["in_flight"] == 0
