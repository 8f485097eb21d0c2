"""A response cache the router owns: scoped, exact first, then (opt-in) semantic; SQLite by default, Redis when shared.

.. code-block:: python

    from langchain_multigateway.cache import GatewayCache, SemanticCache, SQLiteCacheStore

    router = RoutingChatModel(deployments=[...], response_cache=GatewayCache())
    router.invoke("Hello", config={"metadata": {"cache_scope": "tenant-42"}})

See :class:`GatewayCache` for the scope rule, per-call modes and what a hit looks like.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from langchain_multigateway.cache.base import CacheStore, Found
    from langchain_multigateway.cache.policy import CacheScopeError, CacheStats, GatewayCache, SemanticCache
    from langchain_multigateway.cache.redis import RedisCacheStore
    from langchain_multigateway.cache.sqlite import SQLiteCacheStore

__all__ = [
    "CacheScopeError",
    "CacheStats",
    "CacheStore",
    "Found",
    "GatewayCache",
    "RedisCacheStore",
    "SQLiteCacheStore",
    "SemanticCache",
]

_WHERE = {
    "CacheStore": "base",
    "Found": "base",
    "CacheScopeError": "policy",
    "CacheStats": "policy",
    "GatewayCache": "policy",
    "SemanticCache": "policy",
    "RedisCacheStore": "redis",
    "SQLiteCacheStore": "sqlite",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(f"{__name__}.{module}"), name)
