"""The server's lean non-streamed path (``server/passthrough.py``) against the loopback STUB upstream.

A non-streamed chat call to a router of OpenAI-compatible deployments is routed by the
router's own engine and sent without the SDK; the upstream's JSON is passed on. These
tests run the real server (uvicorn on a loopback port) and check what that path must
keep: the upstream's answer, the router's failover and headers, usage in the ledger,
typed upstream errors, and a client that hangs up cancelling the upstream call with
nothing left held.
"""

from __future__ import annotations

import socket
import sqlite3
import time
from typing import Any

import httpx
import orjson

from tests.server.conftest import Gateway


def post(gateway: Gateway, body: dict[str, Any], key: str | None = None) -> httpx.Response:
    return httpx.post(gateway.url + "/v1/chat/completions", json=body, headers=gateway.auth(key), timeout=30)


def ledger_rows(gateway: Gateway, name: str) -> list[tuple[Any, ...]]:
    """The ledger's rows for key ``name`` (the batching writer commits within 50 ms: wait for them)."""
    tag = next(k.tag for k in gateway.keys.list() if k.name == name)
    query = (
        "SELECT c.deployment, c.outcome, c.error_type, c.total_tokens FROM calls c JOIN call_tags t "
        "ON t.call_id = c.id WHERE t.tag = ? ORDER BY c.id"
    )
    deadline = time.monotonic() + 10
    while True:
        with sqlite3.connect(gateway.directory / "usage.sqlite3") as conn:
            rows = conn.execute(query, (tag,)).fetchall()
        if rows or time.monotonic() > deadline:
            return rows


def test_the_upstreams_own_answer_is_passed_on_under_the_routers_name(gateway: Gateway) -> None:
    key = gateway.new_key("passthrough-plain")
    body = {"model": "clean", "messages": [{"role": "user", "content": "hi there"}], "seed": 3, "user": "u-1"}
    response = post(gateway, body, key)
    assert response.status_code == 200, response.text
    data = response.json()
    # The STUB's own fields (a rendered answer would carry the gateway's clock in "created").
    assert data["id"] == "chatcmpl-stub"
    assert data["created"] == 0
    assert data["model"] == "clean"
    assert data["choices"][0]["message"]["content"] == "echo: hi there"
    assert data["usage"] == {"prompt_tokens": 20, "completion_tokens": 5, "total_tokens": 25}
    assert response.headers["x-multigateway-deployment"] == "clean"
    assert response.headers["x-multigateway-attempts"] == "1"
    sent = gateway.upstream.stats.bodies[-1]
    assert sent["seed"] == 3
    assert sent["user"] == "u-1"  # OpenAI-only parameters reach an OpenAI-only router
    rows = ledger_rows(gateway, "passthrough-plain")
    assert rows == [("clean", "ok", None, 25)]


def test_failover_through_the_lean_path_names_the_backup_and_counts_both_tries(gateway: Gateway) -> None:
    before = gateway.upstream.counts()["by_model"]
    response = post(gateway, {"model": "failover", "messages": [{"role": "user", "content": "x"}]})
    assert response.status_code == 200, response.text
    assert response.headers["x-multigateway-deployment"] == "backup"
    after = gateway.upstream.counts()["by_model"]
    tried_down = after.get("down", 0) - before.get("down", 0)
    assert tried_down >= 1  # the primary was really tried (503), and retried as its policy says
    assert int(response.headers["x-multigateway-attempts"]) == tried_down + 1
    assert after["clean"] == before.get("clean", 0) + 1


def test_tools_and_structured_output_go_through_the_providers_request_builder(gateway: Gateway) -> None:
    tool = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }
    body = {"model": "clean", "messages": [{"role": "user", "content": "weather?"}], "tools": [tool]}
    response = post(gateway, {**body, "tool_choice": "required"})
    assert response.status_code == 200, response.text
    call = response.json()["choices"][0]["message"]["tool_calls"][0]
    assert call["function"]["name"] == "get_weather"
    assert orjson.loads(call["function"]["arguments"]) == {"city": "Paris"}
    assert gateway.upstream.stats.bodies[-1]["tool_choice"] == "required"
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    fmt = {"type": "json_schema", "json_schema": {"name": "count", "schema": schema}}
    response = post(
        gateway, {"model": "clean", "messages": [{"role": "user", "content": "n?"}], "response_format": fmt}
    )
    assert response.status_code == 200, response.text
    assert orjson.loads(response.json()["choices"][0]["message"]["content"]) == {"n": 7}
    sent = gateway.upstream.stats.bodies[-1]["response_format"]
    assert sent["type"] == "json_schema"
    assert sent["json_schema"]["schema"]["properties"] == schema["properties"]


def test_an_upstream_refusal_is_typed_and_holds_no_credential(gateway: Gateway) -> None:
    response = post(gateway, {"model": "down", "messages": [{"role": "user", "content": "x"}]})
    assert response.status_code in (502, 503), response.text
    assert response.json()["error"]["message"]


def test_a_client_that_hangs_up_cancels_the_upstream_call_and_releases_everything(gateway: Gateway) -> None:
    # A budgeted key: while a call of it is held (its first, of unknown cost) the next gets 429 key_budget_pending.
    key = gateway.new_key("passthrough-hangup", budget_usd=5.0, rpm=100)
    body = orjson.dumps({"model": "slow", "messages": [{"role": "user", "content": "take your time"}]})
    host, port = gateway.url.removeprefix("http://").split(":")
    before = gateway.upstream.counts()
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\n"
            + f"authorization: Bearer {key}\r\ncontent-length: {len(body)}\r\n\r\n".encode()
            + body
        )
        deadline = time.monotonic() + 10
        while gateway.upstream.counts()["calls_open"] <= before["calls_open"]:  # the upstream call is running
            assert time.monotonic() < deadline, "the gateway never called the upstream"
            time.sleep(0.02)
    # The client is gone: the gateway must cut its upstream request (the stub sees the hang-up).
    deadline = time.monotonic() + 10
    while gateway.upstream.counts()["calls_abandoned"] <= before["calls_abandoned"]:
        assert time.monotonic() < deadline, "the upstream call was not cancelled"
        time.sleep(0.02)
    rows = ledger_rows(gateway, "passthrough-hangup")
    assert rows == [(None, "error", "ClientGoneError", 0)]
    ready = httpx.get(gateway.url + "/health/readiness").json()
    held = {name: d["in_flight"] for name, d in ready["routers"]["slow"]["deployments"].items()}
    assert held == {"slow": 0}
    # The key's limits hold nothing either: its budget reservation was given back, so it is served at once.
    assert post(gateway, {"model": "clean", "messages": [{"role": "user", "content": "again"}]}, key).status_code == 200
