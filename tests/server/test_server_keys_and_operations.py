"""Virtual keys (401 / 403 / 429 per limit), admin API, body limit, metrics, health, and a client leaving mid-stream."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.server.conftest import MASTER_KEY, Gateway, wait_for


def chat(gateway: Gateway, key: str, model: str = "main", **extra: Any) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], **extra}
    return httpx.post(gateway.url + "/v1/chat/completions", json=body, headers=gateway.auth(key), timeout=30)


def test_rpm_limit_is_a_429_with_retry_after(gateway: Gateway) -> None:
    key = gateway.new_key("rpm-2", rpm=2)
    assert chat(gateway, key).status_code == 200
    assert chat(gateway, key).status_code == 200
    before = dict(gateway.upstream.stats.by_model)
    refused = chat(gateway, key)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "key_rpm_exceeded"
    assert "over its limit of 2 requests per minute" in refused.json()["error"]["message"]
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert dict(gateway.upstream.stats.by_model) == before  # refused before the upstream was called
    metrics = httpx.get(gateway.url + "/metrics").text
    assert 'multigateway_key_requests_total{key="rpm-2",outcome="refused"} 1.0' in metrics
    assert 'multigateway_key_requests_total{key="rpm-2",outcome="ok"} 2.0' in metrics


def test_tpm_limit_counts_tokens_used(gateway: Gateway) -> None:
    key = gateway.new_key("tpm-30", tpm=30)
    assert chat(gateway, key).status_code == 200  # 25 tokens
    assert chat(gateway, key).status_code == 200  # 50 >= 30 now
    refused = chat(gateway, key)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "key_tpm_exceeded"


def test_budget_exhausted_is_a_429_with_a_clear_message_and_usage_is_in_the_ledger(gateway: Gateway) -> None:
    # deployment "clean" costs 20 x $1000/M + 5 x $2000/M = $0.03 a call
    key = gateway.new_key("budget", budget_usd=0.05, period="30d", models=["main"])
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=key, max_retries=2)
    for _ in range(2):
        client.chat.completions.create(model="main", messages=[{"role": "user", "content": "x"}])
    calls_before = sum(gateway.upstream.stats.by_model.values())
    with pytest.raises(openai.RateLimitError) as refused:
        client.chat.completions.create(model="main", messages=[{"role": "user", "content": "x"}])
    assert "has spent $0.0600 of its $0.05 budget for this period" in refused.value.message
    assert refused.value.code == "budget_exceeded"
    assert refused.value.response.headers["x-should-retry"] == "false"
    assert sum(gateway.upstream.stats.by_model.values()) == calls_before  # no retries, no upstream call

    record = gateway.keys.get("budget")
    assert record is not None
    usage = httpx.get(
        f"{gateway.url}/admin/keys/{record.id}/usage", headers={"authorization": f"Bearer {MASTER_KEY}"}
    ).json()
    assert usage["total"]["requests"] == 2  # the refused call never reached a provider: not a call
    assert usage["total"]["errors"] == 0
    assert usage["total"]["cost_usd"] == pytest.approx(0.06)
    assert usage["by_model"][0]["key"] == "clean"


def test_revoked_and_expired_keys_get_401(gateway: Gateway) -> None:
    key = gateway.new_key("to-revoke")
    assert chat(gateway, key).status_code == 200
    gateway.keys.revoke("to-revoke")
    assert wait_for(lambda: chat(gateway, key).status_code == 401, 5)
    assert chat(gateway, key).json()["error"]["code"] == "revoked_api_key"

    expired = gateway.new_key("expired")
    with sqlite3.connect(gateway.directory / "keys.sqlite3") as db:
        db.execute("UPDATE keys SET expires_at = ? WHERE name = 'expired'", (time.time() - 1,))
    answer = chat(gateway, expired)
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "expired_api_key"
    anonymous = httpx.post(gateway.url + "/v1/chat/completions", json={"model": "main", "messages": []})
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"] == "missing_api_key"


def test_body_limit_and_bad_json(gateway: Gateway) -> None:
    huge = "x" * 70_000
    assert chat(gateway, gateway.key, messages=[{"role": "user", "content": huge}]).status_code == 413

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit holds while reading
        yield b'{"model": "main", "messages": [{"role": "user", "content": "'
        for _ in range(10):
            yield b"y" * 10_000
        yield b'"}]}'

    streamed = httpx.post(gateway.url + "/v1/chat/completions", content=chunks(), headers=gateway.auth())
    assert streamed.status_code == 413
    assert streamed.json()["error"]["code"] == "body_too_large"
    bad = httpx.post(gateway.url + "/v1/chat/completions", content=b"{nope", headers=gateway.auth())
    assert bad.status_code == 400
    assert "not valid JSON" in bad.json()["error"]["message"]


def test_admin_api_needs_the_master_key(gateway: Gateway) -> None:
    master = {"authorization": f"Bearer {MASTER_KEY}"}
    created = httpx.post(
        gateway.url + "/admin/keys", json={"name": "via-api", "models": ["main"], "rpm": 5}, headers=master
    )
    assert created.status_code == 201
    not_a_list = httpx.post(gateway.url + "/admin/keys", json={"name": "x", "models": "main"}, headers=master)
    assert not_a_list.status_code == 400
    secret = created.json()["key"]
    assert chat(gateway, secret).status_code == 200
    listed = httpx.get(gateway.url + "/admin/keys", headers=master).text
    assert secret not in listed
    assert "digest" not in listed
    assert httpx.get(gateway.url + "/admin/keys", headers=gateway.auth(secret)).status_code == 403
    revoked = httpx.post(f"{gateway.url}/admin/keys/{created.json()['id']}/revoke", headers=master)
    assert revoked.json()["state"] == "revoked"


def test_metrics_health_and_no_secret_anywhere(gateway: Gateway) -> None:
    key = gateway.new_key("metered")
    assert chat(gateway, key).status_code == 200
    metrics = httpx.get(gateway.url + "/metrics").text
    assert 'multigateway_key_requests_total{key="metered",outcome="ok"} 1.0' in metrics
    assert 'multigateway_requests_total{deployment="clean"' in metrics
    # A failover's failed try is counted against its own deployment (fed from the call's record).
    assert chat(gateway, key, "failover").status_code == 200
    metrics = httpx.get(gateway.url + "/metrics").text
    assert re.search(
        r'multigateway_requests_total\{deployment="primary-down",[^}]*outcome="error"[^}]*\} [1-9]', metrics
    )
    assert re.search(
        r'multigateway_errors_total\{deployment="primary-down",[^}]*error_type="\w+"[^}]*\} [1-9]', metrics
    )
    assert re.search(r'multigateway_requests_total\{deployment="backup",[^}]*outcome="ok"[^}]*\} [1-9]', metrics)
    assert 'multigateway_http_responses_total{route="chat_completions",status="200"}' in metrics
    assert httpx.get(gateway.url + "/health/liveness").json() == {"status": "ok"}
    ready = httpx.get(gateway.url + "/health/readiness").json()
    assert ready["routers"]["main"]["deployments"]["clean"]["breaker"] == "closed"
    for text in (metrics, (gateway.directory / "keys.sqlite3").read_bytes().decode("latin-1")):
        assert key not in text
    time.sleep(0.2)  # the ledger writes from its own thread
    for path in gateway.directory.glob("usage.sqlite3*"):
        assert key.encode() not in path.read_bytes()


def test_client_leaving_mid_stream_cancels_the_upstream_and_releases_everything(gateway: Gateway) -> None:
    upstream = gateway.upstream
    abandoned = upstream.stats.streams_abandoned
    body = {"model": "slow", "stream": True, "messages": [{"role": "user", "content": "long"}]}
    with httpx.stream("POST", gateway.url + "/v1/chat/completions", json=body, headers=gateway.auth()) as response:
        lines = response.iter_lines()
        received = [next(lines) for _ in range(4)]
        assert any('"0 "' in line for line in received)
    # the client is gone: the gateway must close the upstream stream long before its 5 s end
    assert wait_for(lambda: upstream.stats.streams_abandoned == abandoned + 1, 4)
    assert upstream.stats.streams_open == 0

    def idle() -> bool:
        ready = httpx.get(gateway.url + "/health/readiness").json()
        return ready["routers"]["slow"]["deployments"]["slow"]["in_flight"] == 0

    assert wait_for(idle, 4)

    def recorded() -> list[tuple[str, str]]:
        with sqlite3.connect(gateway.directory / "usage.sqlite3") as db:
            return db.execute(
                "SELECT outcome, error_type FROM calls WHERE deployment IS NULL AND model = 'slow'"
            ).fetchall()

    assert wait_for(lambda: recorded() == [("error", "ClientGoneError")], 4)


def test_upstream_failing_mid_stream_ends_the_stream_with_an_error_event(gateway: Gateway) -> None:
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=gateway.key, max_retries=0)
    received = ""
    with pytest.raises(openai.APIError) as failed:
        for chunk in client.chat.completions.create(
            model="cut", messages=[{"role": "user", "content": "x"}], stream=True
        ):
            received += chunk.choices[0].delta.content or "" if chunk.choices else ""
    assert received == "0 1 2 "  # what was sent before the failure reached the client, once
    assert "cut" in str(failed.value)  # the error names the upstream that failed

    def idle() -> bool:
        ready = httpx.get(gateway.url + "/health/readiness").json()
        return ready["routers"]["cut"]["deployments"]["cut"]["in_flight"] == 0

    assert wait_for(idle, 4)


def test_a_stream_failing_before_its_first_chunk_is_a_plain_error_with_its_status(gateway: Gateway) -> None:
    body = {"model": "down", "stream": True, "messages": [{"role": "user", "content": "x"}]}
    response = httpx.post(gateway.url + "/v1/chat/completions", json=body, headers=gateway.auth(), timeout=30)
    assert response.status_code == 502
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"]["code"] == "upstream_error"
    assert "stub outage" in response.json()["error"]["message"]
    anthropic = httpx.post(
        gateway.url + "/v1/messages",
        json={**body, "max_tokens": 5},
        headers={"x-api-key": gateway.key},
        timeout=30,
    )
    assert anthropic.status_code == 502
    assert anthropic.json()["error"]["type"] == "api_error"


async def test_concurrent_requests_never_pass_a_keys_rpm(gateway: Gateway) -> None:
    key = gateway.new_key("rpm-5-concurrent", rpm=5)
    async with httpx.AsyncClient(timeout=30) as client:
        body = {"model": "clean", "messages": [{"role": "user", "content": "x"}]}
        answers = await asyncio.gather(
            *(
                client.post(gateway.url + "/v1/chat/completions", json=body, headers=gateway.auth(key))
                for _ in range(20)
            )
        )
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [200] * 5 + [429] * 15
