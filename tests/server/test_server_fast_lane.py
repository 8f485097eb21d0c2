"""The chat endpoints' fast lane (``_GatewayApp``) and the request steps it runs, driven in-process.

The app is called through its ASGI interface in front of the loopback stub upstream
(a real HTTP server), so the test controls what the client sends and when it leaves.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest

from langchain_multigateway.server.keys import KeyStore
from langchain_multigateway.server.runtime import build_app
from tests.server.conftest import Upstream, chat_scope, write_config

_BODY = orjson.dumps({"model": "clean", "messages": [{"role": "user", "content": "say req-lane"}]})


def _app_and_key(upstream: Upstream, tmp_path: Path) -> tuple[Any, str]:
    app = build_app(
        write_config(tmp_path, upstream.url), keys_path=tmp_path / "keys.sqlite3", ledger_path=tmp_path / "u.sqlite3"
    )
    store = KeyStore(tmp_path / "keys.sqlite3")
    secret, _ = store.create("lane")
    store.close()
    return app, secret


async def _call(
    app: Any, scope: dict[str, Any], pieces: list[bytes], then_leave: bool = False, whole: bool = True
) -> list[dict[str, Any]]:
    """Send ``pieces`` as the body's messages (``whole``: the last ends the body); after them the client
    waits for its answer, or leaves."""
    queue = [
        {"type": "http.request", "body": piece, "more_body": not whole or i < len(pieces) - 1}
        for i, piece in enumerate(pieces)
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if queue:
            return queue.pop(0)
        if then_leave:
            return {"type": "http.disconnect"}
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


async def test_middleware_a_user_adds_sees_the_chat_calls_too(upstream: Upstream, tmp_path: Path) -> None:
    app, secret = _app_and_key(upstream, tmp_path)
    seen: list[str] = []

    class Recorder:
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "http":
                seen.append(f"{scope['method']} {scope['path']}")
            await self.inner(scope, receive, send)

    app.add_middleware(Recorder)
    async with app.router.lifespan_context(app):
        sent = await _call(app, chat_scope(secret, _BODY), [_BODY])
    assert sent[0]["status"] == 200
    assert orjson.loads(sent[1]["body"])["choices"][0]["message"]["content"]
    assert seen == ["POST /v1/chat/completions"]


async def test_the_fast_lane_answers_the_chat_post_and_starlette_the_rest(upstream: Upstream, tmp_path: Path) -> None:
    app, secret = _app_and_key(upstream, tmp_path)
    async with app.router.lifespan_context(app):
        answered = await _call(app, chat_scope(secret, _BODY), [_BODY])
        wrong_method = await _call(app, {**chat_scope(secret, b""), "method": "GET"}, [b""])
        unknown = await _call(app, {**chat_scope(secret, b""), "path": "/v1/chat/completion"}, [b""])
    assert answered[0]["status"] == 200
    headers = dict(answered[0]["headers"])
    assert headers[b"x-multigateway-deployment"] == b"clean"
    assert wrong_method[0]["status"] == 405  # Starlette's routing, as before the lane
    assert unknown[0]["status"] == 404


async def test_a_body_in_pieces_is_read_whole(upstream: Upstream, tmp_path: Path) -> None:
    app, secret = _app_and_key(upstream, tmp_path)
    cut = len(_BODY) // 3
    async with app.router.lifespan_context(app):
        sent = await _call(app, chat_scope(secret, _BODY), [_BODY[:cut], b"", _BODY[cut:]])
    assert sent[0]["status"] == 200, sent


async def test_a_client_leaving_while_it_sends_its_body_gets_499_and_nothing_is_sent_upstream(
    upstream: Upstream, tmp_path: Path
) -> None:
    app, secret = _app_and_key(upstream, tmp_path)
    before = upstream.counts()
    async with app.router.lifespan_context(app):
        sent = await _call(app, chat_scope(secret, _BODY), [_BODY[:10]], then_leave=True, whole=False)
        router = app.state.server.gateway.routers["clean"]
        assert all(h.in_flight == 0 for h in router.health().values())
    assert sent[0]["status"] == 499
    assert upstream.counts() == before


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages"])
async def test_a_client_leaving_a_slow_call_cancels_it_after_the_watch_starts(
    upstream: Upstream, tmp_path: Path, path: str
) -> None:
    """The hang-up watcher starts 20 ms into a call; a client leaving a call that runs longer cancels it."""
    app, secret = _app_and_key(upstream, tmp_path)
    body = orjson.dumps({"model": "slow", "max_tokens": 16, "messages": [{"role": "user", "content": "say slow"}]})
    scope = {**chat_scope(secret, body), "path": path, "raw_path": path.encode()}
    async with app.router.lifespan_context(app):
        started = asyncio.get_running_loop().time()
        sent = await _call(app, scope, [body], then_leave=True)
        took = asyncio.get_running_loop().time() - started
        router = app.state.server.gateway.routers["slow"]
        assert all(h.in_flight == 0 for h in router.health().values())
    assert sent[0]["status"] == 499
    assert took < 2.5  # the stub's slow model answers after 5 s: the call was cut, not waited out


async def test_behind_a_root_path_the_fast_lane_routes_as_starlette_does(upstream: Upstream, tmp_path: Path) -> None:
    """uvicorn (``--root-path``) puts the proxy's prefix in ``path``; the route is what follows it. With the prefix
    ``/v1``, ``/v1/messages`` is the route ``/messages``, which does not exist (404, as Starlette's routing says),
    and ``/v1/chat/completions`` is ``/chat/completions``, which does."""
    app, secret = _app_and_key(upstream, tmp_path)

    def behind(root: str, route: str) -> dict[str, Any]:
        return {**chat_scope(secret, _BODY), "root_path": root, "path": root + route, "raw_path": route.encode()}

    async with app.router.lifespan_context(app):
        not_a_route = await _call(app, behind("/v1", "/messages"), [_BODY])
        prefixed = await _call(app, behind("/gateway", "/v1/chat/completions"), [_BODY])
        short = await _call(app, behind("/v1", "/chat/completions"), [_BODY])
    assert not_a_route[0]["status"] == 404
    assert prefixed[0]["status"] == 200
    assert short[0]["status"] == 200
