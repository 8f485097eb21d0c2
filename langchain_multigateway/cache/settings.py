"""A router's ``cache:`` section (YAML or dict) → :class:`GatewayCache`.

.. code-block:: yaml

    routers:
      main:
        cache:                       # SQLite: a file (or ":memory:", the default)
          path: answers.sqlite3
          ttl: 3600                  # seconds; null: until evicted
          max_entries: 50000
          default_scope: null        # set only if every caller may share answers
          semantic:                  # opt-in; needs `pip install langchain` for init_embeddings
            embeddings: openai:text-embedding-3-small
            threshold: 0.92
            last_turns: 1
      shared:
        cache: {backend: redis}      # the url of the state: section, or url: redis://...
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import SecretStr, ValidationError

from langchain_multigateway.cache.policy import GatewayCache, SemanticCache

__all__ = ["CACHE_KEYS", "CacheSettingsError", "cache_from_settings"]

CACHE_KEYS = ("backend", "path", "url", "namespace", "ttl", "max_entries", "mode", "default_scope", "semantic")
SEMANTIC_KEYS = ("embeddings", "threshold", "last_turns")


class CacheSettingsError(ValueError):
    """A mistake in a ``cache:`` section; ``key`` names the offending key (None: the section itself)."""

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


def _secret(value: Any) -> str | None:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    return value if isinstance(value, str) else None


def cache_from_settings(raw: Any, *, state: Mapping[str, Any] | None = None) -> GatewayCache:
    """The cache a ``cache:`` section describes (``state`` is the config's ``state:`` section, for Redis's url)."""
    if raw is True:
        raw = {}
    if not isinstance(raw, Mapping):
        msg = "expected a mapping such as {path: answers.sqlite3, ttl: 3600} or {backend: redis}"
        raise CacheSettingsError(msg)
    for key in raw:
        if key not in CACHE_KEYS:
            raise CacheSettingsError(f"unknown key; expected one of: {', '.join(CACHE_KEYS)}", str(key))
    backend = raw.get("backend", "sqlite")
    max_entries = raw.get("max_entries", 100_000)
    if not isinstance(max_entries, int) or isinstance(max_entries, bool) or max_entries < 1:
        raise CacheSettingsError(f"expected a positive integer (got {max_entries!r})", "max_entries")
    store: Any
    if backend == "sqlite":
        from langchain_multigateway.cache.sqlite import SQLiteCacheStore

        path = raw.get("path", ":memory:")
        if not isinstance(path, str) or not path:
            raise CacheSettingsError("expected a file path or ':memory:'", "path")
        store = SQLiteCacheStore(path, max_entries=max_entries)
    elif backend == "redis":
        from langchain_multigateway.cache.redis import RedisCacheStore

        url = _secret(raw.get("url")) or _secret((state or {}).get("url"))
        if not url:
            raise CacheSettingsError("a redis cache needs url: (or a state: section with a url)", "url")
        store = RedisCacheStore(url, namespace=str(raw.get("namespace", "multigateway:cache")), max_entries=max_entries)
    else:
        raise CacheSettingsError(f"expected sqlite or redis (got {backend!r})", "backend")
    settings: dict[str, Any] = {"store": store}
    for key in ("ttl", "mode", "default_scope"):
        if key in raw:
            settings[key] = raw[key]
    if raw.get("semantic"):
        settings["semantic"] = _semantic(raw["semantic"])
    try:
        return GatewayCache(**settings)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise CacheSettingsError(str(first["msg"]), ".".join(map(str, first["loc"]))) from None


def _semantic(raw: Any) -> SemanticCache:
    if not isinstance(raw, Mapping) or "embeddings" not in raw:
        raise CacheSettingsError("expected a mapping with embeddings: provider:model", "semantic")
    for key in raw:
        if key not in SEMANTIC_KEYS:
            raise CacheSettingsError(f"unknown key; expected one of: {', '.join(SEMANTIC_KEYS)}", f"semantic.{key}")
    embeddings = raw["embeddings"]
    if isinstance(embeddings, str):
        try:
            from langchain.embeddings import init_embeddings
        except ImportError:
            msg = "naming embeddings as 'provider:model' needs LangChain's init_embeddings: pip install langchain"
            raise CacheSettingsError(msg, "semantic.embeddings") from None
        try:
            embeddings = init_embeddings(embeddings)
        except Exception as exc:
            raise CacheSettingsError(f"cannot build {embeddings!r}: {exc}", "semantic.embeddings") from None
    options = {k: v for k, v in raw.items() if k != "embeddings"}
    try:
        return SemanticCache(embeddings=embeddings, **options)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise CacheSettingsError(str(first["msg"]), "semantic." + ".".join(map(str, first["loc"]))) from None
