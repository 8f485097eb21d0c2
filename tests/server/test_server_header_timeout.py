"""Slow request headers are bounded (``server/protocol.py``): a real uvicorn server with the serve CLI's protocol.

A client that sends its request line and headers too slowly (or connects and sends
nothing) must not hold the connection: the request begun gets a 408 and the connection
is closed; a normal request on the same server is served as usual.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

pytest.importorskip("httptools")

from langchain_multigateway.server import build_app
from langchain_multigateway.server.protocol import BoundedHttpToolsProtocol
from langchain_multigateway.server.runtime import ENV
from tests.server.conftest import ThreadedServer, Upstream, write_config


@pytest.fixture
def server(upstream: Upstream, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ThreadedServer]:
    monkeypatch.setenv(ENV["header_timeout"], "0.5")
    app = build_app(write_config(tmp_path, upstream.url), keys_path=tmp_path / "keys.sqlite3", require_key=False)
    with ThreadedServer(app, http=BoundedHttpToolsProtocol) as running:
        yield running


def connect(server: ThreadedServer) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.config.port))
    sock.settimeout(30)  # far past the deadline: the server closes first, or the test fails
    return sock


def read_all(sock: socket.socket) -> bytes:
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def test_headers_that_never_finish_get_a_408_and_the_connection_closed(server: ThreadedServer) -> None:
    with connect(server) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: gateway\r\ncontent-type: appl")  # then nothing
        answer = read_all(sock)  # returns only once the server closed the connection
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert b'"code":"header_timeout"' in answer


def test_a_connection_that_sends_nothing_is_closed(server: ThreadedServer) -> None:
    with connect(server) as sock:
        assert read_all(sock) == b""


def test_a_kept_alive_connection_is_bounded_again_for_its_next_request(server: ThreadedServer) -> None:
    with connect(server) as sock:
        sock.sendall(b"GET /health/liveness HTTP/1.1\r\nhost: gateway\r\n\r\n")
        first = b""
        while not first.endswith(b'{"status":"ok"}'):  # the whole first answer
            first += sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 200 ")
        sock.sendall(b"GET /health/liveness HTTP/1.1\r\nhost: gate")  # the second request stalls
        assert read_all(sock).startswith(b"HTTP/1.1 408 ")


def test_requests_sent_at_once_are_served(server: ThreadedServer) -> None:
    body = {"model": "clean", "messages": [{"role": "user", "content": "quick"}]}
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for _ in range(3):
            answer = client.post("/v1/chat/completions", json=body)
            assert answer.status_code == 200, answer.text
            assert answer.json()["choices"][0]["message"]["content"] == "echo: quick"


def test_a_stalled_request_pipelined_behind_a_stream_never_cuts_into_it(server: ThreadedServer) -> None:
    body = b'{"model": "slow", "stream": true, "messages": [{"role": "user", "content": "take your time"}]}'
    with connect(server) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nhost: gateway\r\ncontent-type: application/json\r\n"
            + f"content-length: {len(body)}\r\n\r\n".encode()
            + body
        )
        sock.sendall(b"GET /health/liveness HTTP/1.1\r\nhost: gate")  # pipelined behind the stream, then stalls
        answer = read_all(sock)
    # The stream (5 s, ten times the header deadline) is whole; the stalled request's 408 comes after it.
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert b"data: [DONE]" in answer
    assert answer.index(b"data: [DONE]") < answer.index(b"HTTP/1.1 408 ")
