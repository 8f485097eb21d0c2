"""A stream cut by the server stopping is recorded as the server's doing; one its client left, as the client's.

The gateway runs under uvicorn with the protocol ``multigateway serve`` uses
(``BoundedHttpToolsProtocol``), in front of the loopback stub, whose ``slow`` model streams
50 pieces 0.1 s apart: long enough to be mid-stream when the server stops.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from langchain_multigateway.server.keys import KeyStore
from langchain_multigateway.server.protocol import BoundedHttpToolsProtocol
from langchain_multigateway.server.runtime import build_app
from tests.server.conftest import ThreadedServer, Upstream, wait_for, write_config

pytest.importorskip("httptools")

_STREAM = {"model": "slow", "stream": True, "messages": [{"role": "user", "content": "a long one"}]}


def _rows(ledger: Path) -> list[tuple[str, str | None]]:
    with sqlite3.connect(ledger) as db:
        return [(str(o), e) for o, e in db.execute("SELECT outcome, error_type FROM calls")]


def _read_until_first_piece(lines: Iterator[str]) -> None:
    for line in lines:
        if '"0 "' in line:  # the upstream's first piece reached the client
            return
    raise AssertionError("the stream ended before its first piece")


@pytest.mark.parametrize("cut_by", ["the server stopping", "the client leaving"])
def test_a_stream_cut_mid_way_is_recorded_as_whoever_cut_it(upstream: Upstream, tmp_path: Path, cut_by: str) -> None:
    ledger = tmp_path / "usage.sqlite3"
    app = build_app(write_config(tmp_path, upstream.url), keys_path=tmp_path / "keys.sqlite3", ledger_path=ledger)
    store = KeyStore(tmp_path / "keys.sqlite3")
    secret, _ = store.create("stopping")
    store.close()
    abandoned = upstream.stats.streams_abandoned
    server = ThreadedServer(app, http=BoundedHttpToolsProtocol, timeout_graceful_shutdown=1)
    reading = threading.Event()
    ended: list[str] = []

    def stream() -> None:
        try:
            with httpx.stream(
                "POST", server.url + "/v1/chat/completions", json=_STREAM, headers={"authorization": f"Bearer {secret}"}
            ) as response:
                lines = response.iter_lines()
                _read_until_first_piece(lines)
                reading.set()
                if cut_by == "the client leaving":
                    return
                for _ in lines:
                    pass
            ended.append("read to its end")
        except httpx.HTTPError as exc:
            ended.append(type(exc).__name__)

    with server:
        client = threading.Thread(target=stream)
        client.start()
        assert reading.wait(30)
        if cut_by == "the server stopping":
            server.server.should_exit = True
        client.join(30)
        # The upstream stream (5 s long) is closed as soon as the gateway's is cut.
        assert wait_for(lambda: upstream.stats.streams_abandoned == abandoned + 1, 4)
        if cut_by == "the client leaving":
            app.state.server.gateway.ledger.flush()
    assert not client.is_alive()
    expected = "ServerStoppingError" if cut_by == "the server stopping" else "ClientGoneError"
    assert wait_for(lambda: _rows(ledger) == [("error", expected)], 5), _rows(ledger)
