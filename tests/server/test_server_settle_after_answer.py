"""An answered call is settled (ledger row, key spend, metrics) after its answer is written, and always.

The app is driven in-process through its ASGI interface with a ``send`` the test controls,
in front of the loopback stub upstream (a real HTTP server): the test can see what was
settled at the moment the answer was written, and make writing the answer fail.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import orjson
import pytest

from langchain_multigateway.server.keys import KeyStore
from langchain_multigateway.server.runtime import build_app
from tests.server.conftest import Upstream, chat_scope, write_config


def _ledger_count(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM calls").fetchone()[0])


@pytest.mark.parametrize("writing", ["succeeds", "fails"])
async def test_an_answered_call_is_settled_after_its_answer_is_written(
    upstream: Upstream, tmp_path: Path, writing: str
) -> None:
    app = build_app(
        write_config(tmp_path, upstream.url), keys_path=tmp_path / "keys.sqlite3", ledger_path=tmp_path / "u.sqlite3"
    )
    store = KeyStore(tmp_path / "keys.sqlite3")
    secret, record = store.create("settle", budget_usd=100.0)
    store.close()
    server = app.state.server
    body = orjson.dumps({"model": "main", "messages": [{"role": "user", "content": "say req-settle"}]})
    delivered = False
    seen_at_answer: dict[str, Any] = {}

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            seen_at_answer["status"] = message["status"]
            seen_at_answer["metrics"] = server.gateway.metrics.render()
        if message["type"] == "http.response.body" and writing == "fails":
            raise OSError("the client's socket broke while the answer was written")

    async with app.router.lifespan_context(app):
        if writing == "fails":
            with pytest.raises(OSError):
                await app(chat_scope(secret, body), receive, send)
        else:
            await app(chat_scope(secret, body), receive, send)
        assert seen_at_answer["status"] == 200
        # When the answer went out, this call was not yet counted: the client did not wait for that.
        assert b'key_requests_total{key="settle",outcome="ok"}' not in seen_at_answer["metrics"]
        # Once the ASGI call returned (the answer written, or its writing failed), it was settled.
        after = server.gateway.metrics.render()
        assert b'multigateway_key_requests_total{key="settle",outcome="ok"} 1.0' in after
        assert b'multigateway_http_responses_total{route="chat_completions",status="200"} 1.0' in after
        assert server.gateway.limits.spent(record) > 0  # the key's spend counts the call
        server.gateway.ledger.flush()  # the batching writer commits everything added so far
        assert _ledger_count(tmp_path / "u.sqlite3") == 1  # one row: settled once, not lost, not twice
