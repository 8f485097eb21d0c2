"""``multigateway serve`` with a cached router: each virtual key is its own cache scope, over real HTTP.

The gateway (``build_app``) and the upstream STUB run under uvicorn on loopback (the fixtures of
``tests/server/conftest.py``); a router with ``cache:`` in its YAML serves two keys.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.redis_server import wait_until
from tests.server.conftest import MASTER_KEY, ThreadedServer, Upstream
from tests.server.upstream_stub import Stats, create_app

pytest.importorskip("starlette")

from langchain_multigateway.server import KeyStore, build_app
from langchain_multigateway.usage import Ledger


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, KeyStore, Upstream, Path]]:
    directory = tmp_path_factory.mktemp("cached-gateway")
    stats = Stats()
    with ThreadedServer(create_app(stats)) as upstream_server:
        upstream = Upstream(upstream_server.url, stats)
        config = directory / "gateway.yaml"
        config.write_text(
            f"""
models:
  clean: {{model: "openai:clean", base_url: "{upstream.url}/v1", api_key: none}}
routers:
  cached:
    cache: {{path: "{directory / "answers.sqlite3"}", ttl: 600}}
    deployments:
      - {{model: clean, name: clean, input_price: 1000, output_price: 2000}}
"""
        )
        keys_path = directory / "keys.sqlite3"
        mp = pytest.MonkeyPatch()
        mp.setenv("MULTIGATEWAY_MASTER_KEY", MASTER_KEY)
        app = build_app(config, keys_path=keys_path, ledger_path=directory / "usage.sqlite3")
        keys = KeyStore(keys_path)
        try:
            with ThreadedServer(app, timeout_graceful_shutdown=5) as gateway:
                yield gateway.url, keys, upstream, directory
        finally:
            keys.close()
            mp.undo()


def ask(url: str, key: str, text: str, *, stream: bool = False) -> httpx.Response:
    body = {"model": "cached", "messages": [{"role": "user", "content": text}], "stream": stream}
    return httpx.post(url + "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}, timeout=30)


def upstream_calls(upstream: Upstream) -> int:
    return sum(upstream.stats.by_model.values())


def test_each_virtual_key_is_its_own_cache_scope(served: tuple[str, KeyStore, Upstream, Path]) -> None:
    url, keys, upstream, directory = served
    key_a, _ = keys.create("tenant-a")
    key_b, _ = keys.create("tenant-b")
    first = ask(url, key_a, "What is our refund policy?")
    assert first.status_code == 200
    calls = upstream_calls(upstream)
    again = ask(url, key_a, "What is our refund policy?")
    assert again.status_code == 200
    assert again.json()["choices"][0]["message"]["content"] == first.json()["choices"][0]["message"]["content"]
    assert upstream_calls(upstream) == calls  # served from the cache
    assert (first.headers["x-multigateway-cache"], again.headers["x-multigateway-cache"]) == ("miss", "exact")
    streamed = ask(url, key_a, "What is our refund policy?", stream=True)
    assert streamed.status_code == 200
    assert "data: [DONE]" in streamed.text
    assert upstream_calls(upstream) == calls  # a hit streams back too
    other = ask(url, key_b, "What is our refund policy?")
    assert other.status_code == 200
    assert upstream_calls(upstream) == calls + 1  # another key: never the first key's answer
    assert other.headers["x-multigateway-cache"] == "miss"
    ledger = Ledger(str(directory / "usage.sqlite3"))
    try:  # the server's ledger commits in batches: wait for its four rows (a hang guard, not a timing assertion)
        assert wait_until(lambda: ledger.count() >= 4)
        rows = [(r["cache"], r["cost_usd"]) for r in ledger.records()]
    finally:
        ledger.close()
    assert rows[:2] == [("miss", pytest.approx(rows[0][1])), ("exact", 0.0)]
    assert rows[0][1] > 0
    assert ("miss", pytest.approx(rows[0][1])) in rows[2:]  # key B's call was billed


def test_a_request_body_cannot_name_another_keys_scope(served: tuple[str, KeyStore, Upstream, Path]) -> None:
    """Key B asks with key A's scope in the body (cache_scope, metadata, user): never A's cached answer."""
    url, keys, upstream, _ = served
    key_a, record_a = keys.create("victim")
    key_b, _ = keys.create("attacker")
    headers = {"authorization": f"Bearer {key_b}"}
    extras = ({"cache_scope": record_a.tag}, {"metadata": {"cache_scope": record_a.tag}}, {"user": record_a.tag})
    for i, extra in enumerate(extras):
        question = f"What is the victim's account number? ({i})"
        assert ask(url, key_a, question).status_code == 200
        calls = upstream_calls(upstream)
        body = {"model": "cached", "messages": [{"role": "user", "content": question}], **extra}
        answer = httpx.post(url + "/v1/chat/completions", json=body, headers=headers, timeout=30)
        if "cache_scope" in extra:
            assert answer.status_code == 400  # not a parameter this API takes
            continue
        assert answer.status_code == 200
        assert answer.headers["x-multigateway-cache"] == "miss"
        assert upstream_calls(upstream) == calls + 1
