"""A router's ``cache:`` section in YAML: SQLite and Redis stores, the semantic layer, mistakes with their key path."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from langchain_multigateway.cache import GatewayCache, RedisCacheStore, SQLiteCacheStore
from langchain_multigateway.cache.settings import CacheSettingsError, cache_from_settings
from langchain_multigateway.config import load_config
from langchain_multigateway.errors import ConfigurationError
from langchain_multigateway.routing import router_from_config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gateway.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_a_router_with_a_cache_section_caches(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"""
        models:
          fast: {{provider: scripted, model: s-fast}}
        routers:
          main:
            cache: {{path: {tmp_path / "answers.sqlite3"}, ttl: 60, max_entries: 10}}
            deployments: [{{model: fast}}]
        """,
    )
    router = router_from_config(load_config(path), "main")
    cache = router.response_cache
    assert isinstance(cache, GatewayCache)
    assert isinstance(cache.store, SQLiteCacheStore)
    assert (cache.ttl, cache.store.max_entries) == (60, 10)
    scope = {"metadata": {"cache_scope": "t"}}
    first = router.invoke("hello", config=scope)
    assert router.invoke("hello", config=scope).content == first.content
    assert router.invoke("hello", config=scope).response_metadata["cache"] == "exact"
    assert (tmp_path / "answers.sqlite3").exists()


def test_redis_cache_takes_the_state_url() -> None:
    from pydantic import SecretStr

    cache = cache_from_settings({"backend": "redis"}, state={"url": SecretStr("redis://:pw@127.0.0.1:1/0")})
    assert isinstance(cache.store, RedisCacheStore)
    assert "pw" not in repr(cache)
    with pytest.raises(CacheSettingsError, match="url"):
        cache_from_settings({"backend": "redis"})


@pytest.mark.parametrize(
    ("section", "where", "what"),
    [
        ("{pth: x}", "routers.main.cache.pth", "unknown key"),
        ("{backend: memcached}", "routers.main.cache.backend", "sqlite or redis"),
        ("{max_entries: 0}", "routers.main.cache.max_entries", "positive integer"),
        ("{ttl: -1}", "routers.main.cache.ttl", "greater than 0"),
        ("{mode: sometimes}", "routers.main.cache.mode", "readwrite"),
        ("{semantic: {threshold: 0.9}}", "routers.main.cache.semantic", "embeddings"),
        ("[1, 2]", "routers.main.cache", "expected a mapping"),
    ],
)
def test_cache_section_mistakes_name_their_key(tmp_path: Path, section: str, where: str, what: str) -> None:
    path = write(
        tmp_path,
        f"""
        models:
          fast: {{provider: scripted, model: s-fast}}
        routers:
          main:
            cache: {section}
            deployments: [{{model: fast}}]
        """,
    )
    with pytest.raises(ConfigurationError) as info:
        router_from_config(load_config(path), "main")
    assert where in str(info.value)
    assert what in str(info.value)
