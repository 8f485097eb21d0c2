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
