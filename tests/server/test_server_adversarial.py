"""Adversarial pass on ``multigateway serve``: what a hostile or broken client sends.

Every attack runs against the real server (uvicorn on a loopback port, the STUB
upstream behind it). Each must end in a clear 4xx (never a 500, never a hang), and
leave nothing held: no deployment in flight, no key slot taken, no secret in any log.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import sqlite3
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from langchain_multigateway._redact import redact
from langchain_multigateway.server import KeyStore, build_app
from tests.server.conftest import MASTER_KEY, Gateway, ThreadedServer, wait_for, write_config

USER = [{"role": "user", "content": "hi"}]


def idle(gateway: Gateway) -> bool:
    """No deployment of any router has a call in flight."""
    ready = httpx.get(gateway.url + "/health/readiness").json()
    return all(dep["in_flight"] == 0 for router in ready["routers"].values() for dep in router["deployments"].values())


def post_raw(gateway: Gateway, path: str, content: bytes, key: str | None = None) -> httpx.Response:
    headers = {**gateway.auth(key), "content-type": "application/json"}
    return httpx.post(gateway.url + path, content=content, headers=headers, timeout=30)


def deep(levels: int) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(levels):
        schema = {"type": "object", "properties": {"x": schema}}
    return schema


def tool(parameters: Any, name: Any = "t") -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, "parameters": parameters}}


# Each body is sent to both endpoints' model "clean"; none may get a 500.
HOSTILE_OPENAI: list[Any] = [
    [],
    None,
    "a string",
    12,
    {"model": ["clean"], "messages": USER},
    {"model": "clean", "messages": "hi"},
    {"model": "clean", "messages": [1, 2]},
    {"model": "clean", "messages": [{"role": "user", "content": {"text": "hi"}}]},
    {"model": "clean", "messages": [{"role": "user", "content": [{"type": 5}]}]},
    {"model": "clean", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
    {"model": "clean", "messages": [{"role": "user", "content": None}]},
    {"model": "clean", "messages": [{"role": "assistant", "content": "x", "tool_calls": "x"}]},
    {"model": "clean", "messages": [{"role": "assistant", "tool_calls": [{"function": {"name": 1, "arguments": 5}}]}]},
    {"model": "clean", "messages": [{"role": "assistant", "tool_calls": [{"id": "a", "function": {"name": "f"}}]}]},
    {"model": "clean", "messages": [{"role": "tool", "tool_call_id": "a", "content": {"x": 1}}]},
    {"model": "clean", "messages": [{"role": "user", "content": "hi", "name": {"x": 1}}]},
    {"model": "clean", "messages": USER, "stream": "yes please"},
    {"model": "clean", "messages": USER, "stream": True, "stream_options": "include"},
    {"model": "clean", "messages": USER, "temperature": "hot"},
    {"model": "clean", "messages": USER, "max_tokens": 10**30},
    {"model": "clean", "messages": USER, "max_tokens": 1.5},
    {"model": "clean", "messages": USER, "stop": [1]},
    {"model": "clean", "messages": USER, "seed": "x"},
    {"model": "clean", "messages": USER, "user": {"id": 1}},
    {"model": "clean", "messages": USER, "tools": "x"},
    {"model": "clean", "messages": USER, "tools": [tool("not a schema")]},
    {"model": "clean", "messages": USER, "tools": [tool([1, 2])]},
    {"model": "clean", "messages": USER, "tools": [tool({"type": "object", "properties": "x"})]},
    {"model": "clean", "messages": USER, "tools": [tool({"$ref": "#/$defs/a", "$defs": {"a": {"$ref": "#/$defs/a"}}})]},
    {"model": "clean", "messages": USER, "tools": [tool(deep(400))]},
    {"model": "clean", "messages": USER, "tools": [tool({}, name="x" * 5000)]},
    {"model": "clean", "messages": USER, "tools": [tool({}, name="a b\u0000c")]},
    {"model": "clean", "messages": USER, "tools": [tool({})], "tool_choice": {"type": "function"}},
    {"model": "clean", "messages": USER, "tools": [tool({})], "tool_choice": 5},
    {"model": "clean", "messages": USER, "response_format": "json"},
    {"model": "clean", "messages": USER, "response_format": {"type": "json_schema", "json_schema": {"name": 1}}},
    {
        "model": "clean",
        "messages": USER,
        "response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": 5}}},
    },
    {
        "model": "clean",
        "messages": USER,
        "response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": deep(400)}},
    },
]

HOSTILE_ANTHROPIC: list[Any] = [
    [],
    {"model": "clean", "max_tokens": "many", "messages": USER},
    {"model": "clean", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "tool_result"}]}]},
    {"model": "clean", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "image"}]}]},
    {"model": "clean", "max_tokens": 5, "messages": [{"role": "assistant", "content": [{"type": "tool_use"}]}]},
    {"model": "clean", "max_tokens": 5, "messages": USER, "system": 5},
    {"model": "clean", "max_tokens": 5, "messages": USER, "system": [{"type": "text"}]},
    {"model": "clean", "max_tokens": 5, "messages": USER, "tools": [{"name": "t", "input_schema": "x"}]},
    {"model": "clean", "max_tokens": 5, "messages": USER, "tools": [{"name": "t", "input_schema": deep(400)}]},
    {"model": "clean", "max_tokens": 5, "messages": USER, "tool_choice": {"type": "tool"}},
    {"model": "clean", "max_tokens": 5, "messages": USER, "stop_sequences": "x"},
    {"model": "clean", "max_tokens": 5, "messages": USER, "tool_choice": 5},
    {"model": "clean", "max_tokens": 5, "messages": USER, "tools": [{"name": "a b", "input_schema": {}}]},
]


def _refused_clearly(response: httpx.Response) -> None:
    assert response.status_code < 500, response.text
    if response.status_code != 200:
        assert response.status_code == 400, response.text
        assert response.json()["error"]["message"]


@pytest.mark.parametrize("body", HOSTILE_OPENAI)
def test_hostile_openai_bodies_get_a_clear_400_never_a_500(gateway: Gateway, body: Any) -> None:
    _refused_clearly(post_raw(gateway, "/v1/chat/completions", json.dumps(body).encode()))


@pytest.mark.parametrize("body", HOSTILE_ANTHROPIC)
def test_hostile_anthropic_bodies_get_a_clear_400_never_a_500(gateway: Gateway, body: Any) -> None:
    _refused_clearly(post_raw(gateway, "/v1/messages", json.dumps(body).encode()))


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"{",
        b"\xff\xfe{}",
        b'{"model": "clean", "messages": [{"role": "user", "content": "\\ud800"}]}',  # lone surrogate
        b"[" * 5000 + b"]" * 5000,  # nested past any parser's depth
        b'{"model": "clean", "messages": [{"role": "user", "content": "hi"}], "temperature": 1e999}',
        b'{"model": "clean", "model": "main", "messages": []}',
    ],
)
def test_malformed_json_is_a_400(gateway: Gateway, raw: bytes) -> None:
    for path in ("/v1/chat/completions", "/v1/messages"):
        response = post_raw(gateway, path, raw)
        assert response.status_code == 400, response.text
    assert idle(gateway)


def test_a_chunked_body_past_the_limit_is_a_413_without_reading_it_all(gateway: Gateway) -> None:
    sent = 0

    def pieces() -> Iterator[bytes]:
        nonlocal sent
        for _ in range(1000):  # 8 MB offered; the gateway's limit is 64 kB
            sent += 8192
            yield b" " * 8192

    response = httpx.post(gateway.url + "/v1/chat/completions", content=pieces(), headers=gateway.auth(), timeout=30)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "body_too_large"


def test_a_declared_content_length_past_the_limit_is_refused_before_the_body(gateway: Gateway) -> None:
    with socket.create_connection(("127.0.0.1", int(gateway.url.rsplit(":", 1)[1])), timeout=10) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            + f"authorization: Bearer {gateway.key}\r\ncontent-length: 999999999\r\n\r\n".encode()
        )
        head = sock.recv(4096)
    assert head.startswith(b"HTTP/1.1 413")


def _gateway_with(directory: Any, upstream_url: str, **options: Any) -> tuple[ThreadedServer, KeyStore, str]:
    config = write_config(directory, upstream_url)
    keys_path = directory / "keys.sqlite3"
    app = build_app(config, keys_path=keys_path, ledger_path=directory / "usage.sqlite3", **options)
    keys = KeyStore(keys_path)
    secret, _ = keys.create("adversary")
    return ThreadedServer(app), keys, secret


def test_a_body_sent_too_slowly_is_a_408_and_frees_the_connection(upstream: Any, tmp_path: Any) -> None:
    server, keys, secret = _gateway_with(tmp_path, upstream.url, body_timeout=0.5)
    with server, socket.create_connection(("127.0.0.1", server.config.port), timeout=10) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            + f"authorization: Bearer {secret}\r\ncontent-length: 1000\r\n\r\n".encode()
            + b'{"model": '
        )
        answer = b""  # slowloris: the rest of the body never comes
        while piece := sock.recv(4096):  # until the server closes the connection
            answer += piece
        assert answer.startswith(b"HTTP/1.1 408"), answer
        assert b"connection: close" in answer
        assert b"body_timeout" in answer
    keys.close()


def test_a_client_leaving_mid_request_leaves_nothing_held(gateway: Gateway) -> None:
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", int(gateway.url.rsplit(":", 1)[1])), timeout=10) as sock:
            sock.sendall(
                b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                + f"authorization: Bearer {gateway.key}\r\ncontent-length: 500\r\n\r\n".encode()
                + b'{"model": "clean", "mess'
            )
    assert wait_for(lambda: idle(gateway), 4)
    assert httpx.post(
        gateway.url + "/v1/chat/completions", json={"model": "clean", "messages": USER}, headers=gateway.auth()
    ).is_success


async def test_many_clients_leaving_mid_stream_leave_every_deployment_idle(gateway: Gateway) -> None:
    body = {"model": "slow", "stream": True, "messages": USER}

    async def leave(client: httpx.AsyncClient) -> None:
        async with client.stream("POST", gateway.url + "/v1/chat/completions", json=body, headers=gateway.auth()) as r:
            async for line in r.aiter_lines():
                if '"0 "' in line:
                    return  # leave after the first piece of text

    async with httpx.AsyncClient(timeout=30) as client:
        await asyncio.gather(*(leave(client) for _ in range(10)))
    assert await asyncio.to_thread(wait_for, lambda: idle(gateway), 6)
    assert gateway.upstream.stats.streams_open == 0


def test_concurrent_calls_never_pass_a_keys_budget_by_more_than_one_call(gateway: Gateway) -> None:
    # deployment "clean" of router main costs $0.03 a call; the budget allows two calls and a bit
    key = gateway.new_key("budget-race", budget_usd=0.07, models=["main"])
    body = {"model": "main", "messages": USER}

    async def race() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=30) as client:
            return list(
                await asyncio.gather(
                    *(
                        client.post(gateway.url + "/v1/chat/completions", json=body, headers=gateway.auth(key))
                        for _ in range(12)
                    )
                )
            )

    # A fresh key: what a call costs is unknown until one ends, so only one runs.
    first = asyncio.run(race())
    assert [a.status_code for a in first].count(200) == 1
    assert {a.json()["error"]["code"] for a in first if a.status_code == 429} == {"key_budget_pending"}
    # $0.03 spent, $0.03 a call known: of 12 at once, one more fits and one may cross the budget.
    second = asyncio.run(race())
    assert [a.status_code for a in second].count(200) == 2
    third = chat_status(gateway, key, "main")
    assert third.status_code == 429
    assert third.json()["error"]["code"] == "budget_exceeded"
    assert "$0.0900 of its $0.07 budget" in third.json()["error"]["message"]
    assert wait_for(lambda: idle(gateway), 4)


def chat_status(gateway: Gateway, key: str, model: str) -> httpx.Response:
    body = {"model": model, "messages": USER}
    return httpx.post(gateway.url + "/v1/chat/completions", json=body, headers=gateway.auth(key), timeout=30)


def test_a_key_revoked_while_its_calls_run_is_refused_at_once(gateway: Gateway) -> None:
    key = gateway.new_key("revoked-racing")
    body = {"model": "slow", "stream": True, "messages": USER}
    with httpx.stream("POST", gateway.url + "/v1/chat/completions", json=body, headers=gateway.auth(key)) as stream:
        next(stream.iter_lines())
        revoked = httpx.post(
            gateway.url + "/admin/keys/revoked-racing/revoke", headers={"authorization": f"Bearer {MASTER_KEY}"}
        )
        assert revoked.status_code == 200, revoked.text
        again = httpx.post(
            gateway.url + "/v1/chat/completions", json={"model": "clean", "messages": USER}, headers=gateway.auth(key)
        )
        assert again.status_code == 401
    assert wait_for(lambda: idle(gateway), 6)


def test_planted_keys_are_masked_in_logs_and_never_written(gateway: Gateway, caplog: pytest.LogCaptureFixture) -> None:
    key = gateway.new_key("planted")
    assert httpx.post(
        gateway.url + "/v1/chat/completions", json={"model": "clean", "messages": USER}, headers=gateway.auth(key)
    ).is_success
    # A key the gateway has seen, and its master key, are masked in whatever any logger writes.
    with caplog.at_level(logging.INFO):
        for name in ("langchain_multigateway.server", "uvicorn.error", "uvicorn.access"):
            logging.getLogger(name).warning("echo %s and %s", key, MASTER_KEY)
    assert caplog.records
    for record in caplog.records:
        assert key not in record.getMessage()
        assert MASTER_KEY not in record.getMessage()
    assert key not in redact(f"Authorization: {key}")
    # Nothing the gateway writes holds the key.
    time.sleep(0.2)
    for path in gateway.directory.iterdir():
        if path.is_file():
            assert key.encode() not in path.read_bytes(), path
    with sqlite3.connect(gateway.directory / "keys.sqlite3") as db:
        assert key not in repr(db.execute("SELECT * FROM keys").fetchall())
    for path in ("/metrics", "/health/readiness", "/v1/models"):
        assert key not in httpx.get(gateway.url + path, headers=gateway.auth(key)).text


def test_unknown_keys_sent_by_the_thousand_are_not_remembered_as_secrets(gateway: Gateway) -> None:
    from langchain_multigateway import _redact

    before = len(_redact._VAULT.secrets)
    with httpx.Client(timeout=30) as client:
        for i in range(50):
            answer = client.post(
                gateway.url + "/v1/chat/completions",
                json={"model": "clean", "messages": USER},
                headers={"authorization": f"Bearer guess-{i:04d}-" + "x" * 30},
            )
            assert answer.status_code == 401
    assert len(_redact._VAULT.secrets) == before  # only keys that authenticated are registered


def test_the_state_url_password_is_masked(upstream: Any, tmp_path: Any) -> None:
    # The Redis password is registered when the app is built (no Redis needed to build it).
    config = write_config(tmp_path, upstream.url)
    password = "r3dis-Pa55word-planted-xyz"
    text = config.read_text() + f'state: {{backend: redis, url: "redis://:{password}@127.0.0.1:1/0"}}\n'
    config.write_text(text)
    app = build_app(config, keys_path=tmp_path / "keys.sqlite3", ledger_path=None)
    assert app is not None
    assert password not in redact(f"cannot reach redis://:{password}@127.0.0.1:1/0 ({password})")


def test_an_upstream_quoting_the_gateways_provider_key_leaks_it_nowhere(
    upstream: Any, tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    planted = "sk-upstream-planted-" + "k3y" * 8
    config = tmp_path / "gateway.yaml"
    config.write_text(
        f'models:\n  leaky: {{model: "openai:leaky", base_url: "{upstream.url}/v1", api_key: "{planted}"}}\n'
    )
    keys = KeyStore(tmp_path / "keys.sqlite3")
    secret, _ = keys.create("victim")
    app = build_app(config, keys_path=tmp_path / "keys.sqlite3", ledger_path=tmp_path / "usage.sqlite3")
    # the access log on, uvicorn's loggers left to propagate to the test's capture
    server = ThreadedServer(app, access_log=True, log_config=None)
    bodies = []
    access = logging.getLogger("uvicorn.access")
    with caplog.at_level(logging.DEBUG), caplog.at_level(logging.INFO, logger=access.name), server:
        for path, body in (
            ("/v1/chat/completions", {"model": "leaky", "messages": USER}),
            ("/v1/chat/completions", {"model": "leaky", "messages": USER, "stream": True}),
            ("/v1/messages", {"model": "leaky", "max_tokens": 5, "messages": USER}),
        ):
            answer = httpx.post(server.url + path, json=body, headers={"x-api-key": secret}, timeout=30)
            assert answer.status_code == 502, answer.text
            bodies.append(answer.text + repr(answer.headers))
        bodies.append(httpx.get(server.url + "/metrics").text)
        bodies.append(httpx.get(server.url + "/health/readiness").text)
    keys.close()
    time.sleep(0.2)
    written = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.is_file() and p != config)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "Incorrect API key" in bodies[0]  # the upstream's message is passed on, masked
    assert any(r.name == "uvicorn.access" for r in caplog.records)  # the access log was read too
    for text in (*bodies, logged):
        assert planted not in text
        assert secret not in text
    assert planted.encode() not in written
    assert secret.encode() not in written


def test_an_unreachable_shared_budget_store_refuses_budgeted_calls_with_a_503() -> None:
    pytest.importorskip("redis")
    from langchain_multigateway.server.errors import ApiError
    from langchain_multigateway.server.limits import KeyLimits
    from langchain_multigateway.state.spend_redis import RedisSpendStore

    store = KeyStore(":memory:")
    _, budgeted = store.create("budgeted", budget_usd=1.0)
    _, free = store.create("free")
    limits = KeyLimits(spend=RedisSpendStore("redis://127.0.0.1:1/0", timeout=0.2))  # nothing listens there
    limits.admit(budgeted)
    with pytest.raises(ApiError) as refused:
        asyncio.run(limits.ahold(budgeted))
    assert refused.value.status == 503
    assert refused.value.code == "budget_store_unavailable"
    assert asyncio.run(limits.ahold(free)) is None  # a key without a budget does not need the store


@pytest.mark.parametrize(
    "fields",
    [
        {"rpm": 10**30},
        {"rpm": 1.5},
        {"rpm": True},
        {"tpm": "many"},
        {"budget_usd": "ten"},
        {"budget_usd": 1e300},
        {"budget_usd": -1},
        {"period": ["30d"]},
        {"expires": {"days": 3}},
        {"models": "main"},
        {"name": 5},
    ],
)
def test_hostile_admin_key_requests_are_a_400(gateway: Gateway, fields: dict[str, Any]) -> None:
    body = {"name": "hostile", **fields}
    answer = httpx.post(
        gateway.url + "/admin/keys", json=body, headers={"authorization": f"Bearer {MASTER_KEY}"}, timeout=30
    )
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["message"]
