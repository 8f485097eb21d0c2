"""RedisCacheStore against a real redis-server on loopback: shared by several stores (processes), TTLs,
eviction, vectors mirrored and re-mirrored after a trim, tenant isolation through the router, Redis down."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
import redis

from langchain_multigateway.cache import GatewayCache, RedisCacheStore
from langchain_multigateway.routing import Deployment, RoutingChatModel
from langchain_multigateway.testing import ScriptedChatModel
from tests.redis_server import RedisServer, free_port

pytest_plugins = ["tests.redis_fixtures"]  # redis_server, namespace

pytestmark = pytest.mark.redis


def unit(seed: int, dim: int = 24) -> Any:
    vector = np.random.default_rng(seed).standard_normal(dim)
    return vector / np.linalg.norm(vector)


def store(server: RedisServer, namespace: str, **kwargs: Any) -> RedisCacheStore:
    return RedisCacheStore(server.url, namespace=namespace, **kwargs)


def test_entries_are_shared_and_expire_with_their_ttl(redis_server: RedisServer, namespace: str) -> None:
    one, two = store(redis_server, namespace), store(redis_server, namespace)
    one.put("a" * 64, "shape", '"A"', ttl=30)
    one.put("b" * 64, "shape", '"B"', ttl=None)
    found = two.get("a" * 64)
    assert found is not None
    assert found.payload == '"A"'
    client = redis.Redis.from_url(redis_server.url)
    assert 0 < client.pttl(f"{namespace}:e:{'a' * 64}") <= 30_000
    assert client.pttl(f"{namespace}:e:{'b' * 64}") == -1
    # only hashes name keys: no scope, no prompt
    assert all(len(k.decode().rsplit(":", 1)[-1]) in (0, 5, 64) for k in client.scan_iter(f"{namespace}:*"))
    two.delete("a" * 64)
    assert one.get("a" * 64) is None
    assert one.count() == 1
    one.clear()
    assert one.count() == 0
    assert list(client.scan_iter(f"{namespace}:*")) == []


def test_max_entries_evicts_the_oldest(redis_server: RedisServer, namespace: str) -> None:
    cache = store(redis_server, namespace, max_entries=3)
    for i in range(5):
        cache.put(f"{i:064x}", "shape", json.dumps(i), ttl=60)
    assert cache.count() == 3
    assert cache.get(f"{0:064x}") is None
    assert cache.get(f"{4:064x}") is not None


def test_vectors_are_mirrored_by_every_store_and_again_after_a_trim(redis_server: RedisServer, namespace: str) -> None:
    writer = store(redis_server, namespace, max_entries=3)
    reader = store(redis_server, namespace, max_entries=3)
    writer.put("a" * 64, "shape", '"A"', ttl=60, vector=unit(1))
    found = reader.nearest("shape", unit(1), 0.99)
    assert found is not None
    assert found.payload == '"A"'
    assert found.similarity == pytest.approx(1.0, abs=1e-5)
    assert reader.nearest("other", unit(1), 0.5) is None
    for i in range(2, 6):  # the list is trimmed to 3: the reader re-reads it whole
        writer.put(f"{i:064x}", "shape", json.dumps(i), ttl=60, vector=unit(i))
    assert reader.nearest("shape", unit(1), 0.99) is None  # "a" evicted
    latest = reader.nearest("shape", unit(5), 0.99)
    assert latest is not None
    assert latest.payload == "5"
    writer.delete(f"{5:064x}")
    assert reader.nearest("shape", unit(5), 0.99) is None  # read back before it is served


def test_router_over_redis_keeps_tenants_apart(redis_server: RedisServer, namespace: str) -> None:
    cache = GatewayCache(store=store(redis_server, namespace))
    llm = ScriptedChatModel(steps=[f"answer {i}" for i in range(10)])
    router = RoutingChatModel(deployments=[Deployment(model=llm, name="dep")], response_cache=cache)
    a = {"metadata": {"cache_scope": "tenant-a"}}
    b = {"metadata": {"cache_scope": "tenant-b"}}
    assert router.invoke("policy?", config=a).content == "answer 0"
    assert router.invoke("policy?", config=b).content == "answer 1"
    again = router.invoke("policy?", config=a)
    assert (again.content, again.response_metadata["cache"]) == ("answer 0", "exact")
    other_process = GatewayCache(store=store(redis_server, namespace))
    router_two = RoutingChatModel(deployments=[Deployment(model=llm, name="dep")], response_cache=other_process)
    assert router_two.invoke("policy?", config=b).content == "answer 1"
    assert llm.call_count == 2


def test_redis_down_costs_hits_not_calls() -> None:
    cache = GatewayCache(store=RedisCacheStore(f"redis://127.0.0.1:{free_port()}/0", socket_timeout=0.5))
    llm = ScriptedChatModel(steps=["one", "two"])
    router = RoutingChatModel(deployments=[Deployment(model=llm, name="dep")], response_cache=cache)
    scope = {"metadata": {"cache_scope": "t"}}
    assert router.invoke("hello", config=scope).content == "one"
    assert router.invoke("hello", config=scope).content == "two"
    assert cache.stats.errors >= 3  # two lookups and one store, each logged and read as a miss


def test_a_large_backlog_is_mirrored_in_the_background(
    redis_server: RedisServer, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from langchain_multigateway.cache import redis as cache_redis

    monkeypatch.setattr(cache_redis, "INLINE_MIRROR_ROWS", 5)
    writer = store(redis_server, namespace)
    for i in range(20):
        writer.put(f"{i:064x}", "shape", json.dumps(i), ttl=60, vector=unit(i))
    reader = store(redis_server, namespace)
    assert reader.nearest("shape", unit(7), 0.99) is None  # not mirrored yet: a miss at once
    reader._warming["shape"].join(timeout=30)
    found = reader.nearest("shape", unit(7), 0.99)
    assert found is not None
    assert found.payload == "7"
