"""With ``state: {backend: redis}``, two gateway servers share each virtual key's rpm window (a real redis-server)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from langchain_multigateway.server import KeyStore, build_app
from tests.redis_server import RedisServer
from tests.server.conftest import ThreadedServer, Upstream, write_config

pytest_plugins = ["tests.redis_fixtures"]


async def test_two_servers_never_pass_a_keys_rpm_together(
    upstream: Upstream, redis_server: RedisServer, namespace: str, tmp_path: Path
) -> None:
    config = write_config(tmp_path, upstream.url)
    config.write_text(
        config.read_text()
        + f"state: {{backend: redis, url: '{redis_server.url}', namespace: {namespace}, timeout: 2}}\n"
    )
    keys = tmp_path / "keys.sqlite3"
    store = KeyStore(keys)
    secret, _ = store.create("shared-rpm", rpm=6, tpm=10_000)
    store.close()
    apps = [build_app(config, keys_path=keys, ledger_path=None) for _ in range(2)]
    with ThreadedServer(apps[0]) as first, ThreadedServer(apps[1]) as second:
        body = {"model": "clean", "messages": [{"role": "user", "content": "x"}]}
        headers = {"authorization": f"Bearer {secret}"}
        async with httpx.AsyncClient(timeout=30) as client:
            answers = await asyncio.gather(
                *(
                    client.post(server.url + "/v1/chat/completions", json=body, headers=headers)
                    for server in [first, second] * 10
                )
            )
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [200] * 6 + [429] * 14
    refused = next(a for a in answers if a.status_code == 429)
    assert refused.json()["error"]["code"] == "key_rpm_exceeded"
    assert "over its limit of 6 requests per minute" in refused.json()["error"]["message"]


async def test_two_servers_share_a_keys_budget(
    upstream: Upstream, redis_server: RedisServer, namespace: str, tmp_path: Path
) -> None:
    config = write_config(tmp_path, upstream.url)
    config.write_text(
        config.read_text()
        + f"state: {{backend: redis, url: '{redis_server.url}', namespace: {namespace}, timeout: 2}}\n"
    )
    keys = tmp_path / "keys.sqlite3"
    store = KeyStore(keys)
    # deployment "clean" of router main costs $0.03 a call: the budget holds three calls and a bit
    secret, _ = store.create("shared-budget", budget_usd=0.10, models=["main"])
    store.close()
    apps = [build_app(config, keys_path=keys, ledger_path=None) for _ in range(2)]
    body = {"model": "main", "messages": [{"role": "user", "content": "x"}]}
    headers = {"authorization": f"Bearer {secret}"}
    with ThreadedServer(apps[0]) as first, ThreadedServer(apps[1]) as second:
        async with httpx.AsyncClient(timeout=30) as client:
            # one call on each server first, so both know what a call costs
            for server in (first, second):
                answer = await client.post(server.url + "/v1/chat/completions", json=body, headers=headers)
                assert answer.status_code == 200, answer.text
            answers = await asyncio.gather(
                *(
                    client.post(server.url + "/v1/chat/completions", json=body, headers=headers)
                    for server in [first, second] * 8
                )
            )
            await asyncio.sleep(0.3)  # the last settlements reach Redis
            after = await client.post(second.url + "/v1/chat/completions", json=body, headers=headers)
    statuses = [a.status_code for a in answers]
    # $0.06 spent, $0.03 a call: across both servers one more fits in $0.10 and one may cross it
    # (each server judging alone would let two through, four in all)
    assert statuses.count(200) == 2, statuses
    assert after.status_code == 429
    assert after.json()["error"]["code"] == "budget_exceeded"
    assert "$0.1200 of its $0.10 budget" in after.json()["error"]["message"]


async def test_a_new_keys_first_calls_on_two_servers_at_once_stay_within_its_budget(
    upstream: Upstream, redis_server: RedisServer, namespace: str, tmp_path: Path
) -> None:
    config = write_config(tmp_path, upstream.url)
    config.write_text(
        config.read_text()
        + f"state: {{backend: redis, url: '{redis_server.url}', namespace: {namespace}, timeout: 2}}\n"
    )
    keys = tmp_path / "keys.sqlite3"
    store = KeyStore(keys)
    # $0.03 a call on "clean"; no server has seen a call of this key end, so none knows that yet
    secret, _ = store.create("fresh-budget", budget_usd=0.10, models=["main"])
    store.close()
    apps = [build_app(config, keys_path=keys, ledger_path=None) for _ in range(2)]
    # No max_tokens: each first call is held at 1,024 output tokens' price ($2.06), so until a call of
    # this key has ended on a server, that server's calls pass one at a time across both servers.
    body = {"model": "main", "messages": [{"role": "user", "content": "x"}]}
    headers = {"authorization": f"Bearer {secret}"}
    with ThreadedServer(apps[0]) as first, ThreadedServer(apps[1]) as second:
        async with httpx.AsyncClient(timeout=30) as client:
            answers = await asyncio.gather(
                *(
                    client.post(server.url + "/v1/chat/completions", json=body, headers=headers)
                    for server in [first, second] * 8
                )
            )
            await asyncio.sleep(0.3)  # the last settlements reach Redis
            after = await client.post(second.url + "/v1/chat/completions", json=body, headers=headers)
    served = [a for a in answers if a.status_code == 200]
    refused = [a for a in answers if a.status_code != 200]
    # Each call was held at its price estimate before it was sent: at most the budget and the one
    # call that crosses it were served ($0.12), never all sixteen ($0.48) as with no estimate held.
    assert 1 <= len(served) <= 4, [a.status_code for a in answers]
    assert {a.status_code for a in refused} == {429}
    assert {a.json()["error"]["code"] for a in refused} <= {"key_budget_reserved", "budget_exceeded"}
    if len(served) == 4:
        assert after.json()["error"]["code"] == "budget_exceeded"
