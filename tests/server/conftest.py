"""Real servers on loopback ports for the server's tests.

``upstream``: the STUB upstream (``upstream_stub.py``) under uvicorn in a thread.
``gateway``: ``build_app`` (what ``multigateway serve`` runs) under uvicorn in a
thread, on a config whose deployments point at the stub, with a fresh key store and
ledger. Both are real HTTP servers: the clients under test connect over TCP.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

import uvicorn

from langchain_multigateway.server import KeyStore, build_app
from tests.server.upstream_stub import Stats, create_app

MASTER_KEY = "mg-master-test-" + "m4st3r" * 6


class ThreadedServer:
    """uvicorn serving ``app`` on 127.0.0.1 from a thread with its own event loop."""

    def __init__(self, app: Any, **options: Any) -> None:
        self.config = uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning", **options)
        self.server = uvicorn.Server(self.config)
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.run(self.server.serve())

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.config.port}"

    def __enter__(self) -> ThreadedServer:
        self.thread.start()
        deadline = time.monotonic() + 60  # a shared, busy machine can take long to start a thread's server
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Upstream:
    url: str
    stats: Stats

    def counts(self) -> dict[str, Any]:
        return dict(httpx.get(self.url + "/stats").json())


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    stats = Stats()
    with ThreadedServer(create_app(stats)) as server:
        yield Upstream(server.url, stats)


def write_config(directory: Path, upstream_url: str) -> Path:
    """Models on the stub; router ``main`` fails over from ``down`` to ``clean`` (priced, for budgets)."""
    base = f"{upstream_url}/v1"
    text = f"""
models:
  clean: {{model: "openai:clean", base_url: "{base}", api_key: none}}
  down: {{model: "openai:down", base_url: "{base}", api_key: none}}
  slow: {{model: "openai:slow", base_url: "{base}", api_key: none}}
  cut: {{model: "openai:cut", base_url: "{base}", api_key: none}}
routers:
  main:
    deployments:
      - {{model: down, name: down}}
      - {{model: clean, name: clean, input_price: 1000, output_price: 2000}}
  failover:
    deployments:
      - {{model: down, name: primary-down}}
      - {{model: clean, name: backup}}
"""
    path = directory / "gateway.yaml"
    path.write_text(text)
    return path


@dataclass
class Gateway:
    url: str
    keys: KeyStore
    key: str
    """A key for every model, no limits."""
    directory: Path
    upstream: Upstream

    def new_key(self, name: str, **limits: Any) -> str:
        secret, _ = self.keys.create(name, **limits)
        return secret

    def auth(self, key: str | None = None) -> dict[str, str]:
        return {"authorization": f"Bearer {key or self.key}"}


@pytest.fixture(scope="module")
def gateway(upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    directory = tmp_path_factory.mktemp("gateway")
    config = write_config(directory, upstream.url)
    keys_path = directory / "keys.sqlite3"
    mp = pytest.MonkeyPatch()
    mp.setenv("MULTIGATEWAY_MASTER_KEY", MASTER_KEY)
    app = build_app(config, keys_path=keys_path, ledger_path=directory / "usage.sqlite3", max_body_bytes=64_000)
    keys = KeyStore(keys_path)
    secret, _ = keys.create("tests")
    try:
        with ThreadedServer(app, timeout_graceful_shutdown=5) as server:
            yield Gateway(server.url, keys, secret, directory, upstream)
    finally:
        keys.close()
        mp.undo()


def wait_for(condition: Callable[[], bool], seconds: float = 10.0) -> bool:
    """Poll ``condition`` until it holds or ``seconds`` pass; its last answer."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def chat_scope(secret: str, body: bytes) -> dict[str, Any]:
    """The ASGI scope of ``POST /v1/chat/completions`` with ``body`` and key ``secret`` (in-process calls)."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/chat/completions",
        "raw_path": b"/v1/chat/completions",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"content-type", b"application/json"),
            (b"authorization", f"Bearer {secret}".encode()),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 2),
        "state": {},
    }
