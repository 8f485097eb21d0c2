"""``GatewayCache``: a router's response cache, scoped per tenant: exact first, then (opt-in) semantic.

Every decision of a lookup and a store is made here, once: which scope, which mode,
exact then semantic, what a corrupt or unreachable store means (a miss, logged: a
cache never fails a call), and when an answer is worth keeping. The sync and async
methods differ only in I/O (the async ones run the store in a worker thread and await
the embeddings).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from langchain_core.embeddings import Embeddings
from langchain_core.messages import AIMessage, BaseMessage
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator

from langchain_multigateway._redact import redact
from langchain_multigateway.cache.answers import CorruptEntryError, Hit, dump_answer, load_answer
from langchain_multigateway.cache.base import CacheStore, Found
from langchain_multigateway.cache.keys import RequestKeys, request_keys
from langchain_multigateway.errors import InvalidRequestError

__all__ = ["CACHE_MODES", "CacheMode", "CacheScopeError", "CacheStats", "GatewayCache", "Lookup", "SemanticCache"]

logger = logging.getLogger(__name__)

CacheMode = Literal["off", "read", "write", "readwrite"]
CACHE_MODES: tuple[str, ...] = ("off", "read", "write", "readwrite")
DEFAULT_THRESHOLD = 0.92


class CacheScopeError(InvalidRequestError, ValueError):
    """A cached call named no scope (whose answers may it share?) or a mode that is none: raised before
    anything is sent; the request is at fault (an HTTP server answers 400)."""


class SemanticCache(BaseModel):
    """The opt-in semantic layer: on an exact miss, a paraphrase of a cached request in the same shape answers.

    Key init args:
        embeddings: Any LangChain ``Embeddings`` (e.g. ``OpenAIEmbeddings``).
        threshold: Cosine similarity at or above which a cached answer is served (default 0.92).
        last_turns: How many of the last non-system messages are embedded (default 1); every
            earlier turn, the system prompt, tools and response format must match exactly.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    embeddings: Embeddings
    threshold: float = Field(default=DEFAULT_THRESHOLD, gt=0.0, le=1.0)
    last_turns: int = Field(default=1, ge=1)


@dataclass
class CacheStats:
    """Lookups since the cache was built: hits per layer, misses, and store errors (each one a miss)."""

    exact: int = 0
    semantic: int = 0
    misses: int = 0
    errors: int = 0
    stored: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def count(self, name: str) -> None:
        with self.lock:
            setattr(self, name, getattr(self, name) + 1)


@dataclass(slots=True)
class Lookup:
    """One call's dealings with the cache: its keys, its mode, and the vector a semantic miss computed."""

    cache: GatewayCache
    keys: RequestKeys
    mode: str
    vector: list[float] | None = None

    @property
    def reads(self) -> bool:
        return self.mode in ("read", "readwrite")

    @property
    def writes(self) -> bool:
        return self.mode in ("write", "readwrite")

    def lookup(self) -> Hit | None:
        """The cached answer (exact, then semantic), or None."""
        return self.cache._answer(self, self.cache._find(self)) if self.reads else None

    async def alookup(self) -> Hit | None:
        if not self.reads:
            return None
        return self.cache._answer(self, await self.cache._afind(self))

    def store(self, message: AIMessage) -> None:
        """Keep a completed answer (when this call writes, and the answer is one worth keeping)."""
        if self.writes and keepable(message):
            if self.vector is None and self.cache.semantic is not None and self.keys.text:
                self.vector = self.cache._embed(self.keys.text)
            self.cache._put(self, message)

    async def astore(self, message: AIMessage) -> None:
        if self.writes and keepable(message):
            if self.vector is None and self.cache.semantic is not None and self.keys.text:
                self.vector = await self.cache._aembed(self.keys.text)
            await asyncio.to_thread(self.cache._put, self, message)


def _default_store() -> CacheStore:
    from langchain_multigateway.cache.sqlite import SQLiteCacheStore  # imported when a cache is built

    return SQLiteCacheStore()


def keepable(message: AIMessage) -> bool:
    """Whether an answer may be cached: a served, whole answer (no cache hit, no broken tool call, not empty)."""
    meta = message.response_metadata
    if meta.get("cache") in ("exact", "semantic") or message.invalid_tool_calls:
        return False
    return bool(message.content) or bool(message.tool_calls)


class GatewayCache(BaseModel):
    """A response cache a router owns, keyed on the request (never the deployment) within a caller's scope.

    Exact layer: a hash of the scope, the messages, tools, tool choice, response format
    and the generation parameters that change the answer. Semantic layer (opt-in): on an
    exact miss, the last turn(s) are embedded and compared with cached requests of the
    same scope and shape; a cosine at or above the threshold answers.

    A hit comes back with ``response_metadata["cache"] = "exact" | "semantic"``,
    ``["cache_similarity"]``, ``usage_metadata`` of zero tokens (nothing was billed),
    and streams back as chunks; a call that consulted the cache and missed carries
    ``response_metadata["cache"] = "miss"``. Only completed answers are stored: never a
    stream cut short, an error, or an answer whose tool call did not parse.

    **Scope is mandatory.** Pass it per call (``config={"metadata": {"cache_scope":
    "tenant-42"}}`` or ``cache_scope=`` as a kwarg); the HTTP server sets it to the
    virtual key. A call with no scope raises :class:`CacheScopeError` before anything
    is sent, unless ``default_scope`` is set: a shared default would silently serve one
    tenant's answer to another, so a single-tenant application says so once, explicitly.

    Setup:
        SQLite (stdlib) needs nothing; the semantic layer needs NumPy
        (``pip install 'langchain-multigateway[cache]'``); Redis needs ``[redis]``.

    Key init args:
        store: Where entries live: ``SQLiteCacheStore()`` (in memory) by default; a
            ``SQLiteCacheStore("file.sqlite3")`` survives restarts and is shared by the
            processes of one host; a ``RedisCacheStore`` by several hosts.
        ttl: Seconds an entry lives (default 86400: one day; None: until evicted).
        mode: Default per-call mode, ``"readwrite"``; per call ``cache="off" | "read" |
            "write" | "readwrite"`` (a kwarg, or ``config={"metadata": {"cache": ...}}``).
        semantic: A :class:`SemanticCache` to turn the semantic layer on (default off).
        default_scope: The scope of calls that name none (default None: such a call raises).

    Instantiate:
        .. code-block:: python

            from langchain_openai import OpenAIEmbeddings
            from langchain_multigateway.cache import GatewayCache, SemanticCache, SQLiteCacheStore

            cache = GatewayCache(
                store=SQLiteCacheStore("answers.sqlite3", max_entries=50_000),
                ttl=3600,
                semantic=SemanticCache(embeddings=OpenAIEmbeddings(model="text-embedding-3-small")),
            )
            router = RoutingChatModel(deployments=[...], response_cache=cache)

    Invoke:
        .. code-block:: python

            config = {"metadata": {"cache_scope": "tenant-42"}}
            router.invoke("What is the capital of France?", config=config)   # served, stored
            msg = router.invoke("What's France's capital city?", config=config)
            msg.response_metadata["cache"], msg.response_metadata["cache_similarity"]
            # ('semantic', 0.95)
            router.invoke("Hello", config=config, cache="read")   # look up, never store

    Stream:
        .. code-block:: python

            for chunk in router.stream("What is the capital of France?", config=config):
                print(chunk.content, end="")   # a hit streams back in chunks

    Async:
        .. code-block:: python

            await router.ainvoke("Hello", config=config)

    Token usage:
        .. code-block:: python

            msg.usage_metadata                    # zero tokens: a hit costs nothing
            msg.response_metadata["cached_usage"] # what the original call was billed
            cache.stats                           # CacheStats(exact=.., semantic=.., misses=.., ...)
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    store: Any = Field(default_factory=lambda: _default_store())
    ttl: float | None = Field(default=86400.0, gt=0, allow_inf_nan=False)
    mode: CacheMode = "readwrite"
    semantic: SemanticCache | None = None
    default_scope: str | None = None

    _stats: CacheStats = PrivateAttr(default_factory=CacheStats)

    @property
    def stats(self) -> CacheStats:
        """Hits per layer, misses, store errors and answers stored since this cache was built."""
        return self._stats

    @field_validator("store")
    @classmethod
    def _a_store(cls, value: Any) -> Any:
        if not isinstance(value, CacheStore):
            msg = f"store must be a CacheStore (SQLiteCacheStore, RedisCacheStore), not {type(value).__name__}"
            raise ValueError(msg)
        return value

    def __repr__(self) -> str:
        semantic = None if self.semantic is None else self.semantic.threshold
        return f"GatewayCache(store={self.store!r}, ttl={self.ttl}, mode={self.mode!r}, semantic={semantic})"

    # ------------------------------------------------------------------ the call's lookup
    def begin(
        self,
        messages: Sequence[BaseMessage],
        *,
        scope: Any,
        mode: Any,
        params: Mapping[str, Any],
        tools: Sequence[Any] | None = None,
        tool_kwargs: Mapping[str, Any] | None = None,
        response_format: Any = None,
        stop: Sequence[str] | None = None,
        router: str = "",
    ) -> Lookup | None:
        """This call's :class:`Lookup`; None when its mode is ``"off"``. Raises on a bad mode or no scope.

        ``router`` names the router asked: answers are shared across its deployments, never across routers."""
        mode = self.mode if mode is None else mode
        if mode not in CACHE_MODES:
            msg = f"cache must be one of {list(CACHE_MODES)}, not {mode!r}"
            raise CacheScopeError(msg)
        if mode == "off":
            return None
        scope = self.default_scope if scope is None or scope == "" else scope
        if not isinstance(scope, str) or not scope:
            msg = (
                "this router caches answers per scope, and the call named none: pass "
                'config={"metadata": {"cache_scope": "<tenant or user id>"}} (or cache_scope=...), '
                'set GatewayCache(default_scope="...") if every caller may share answers, or cache="off"'
            )
            raise CacheScopeError(msg)
        keys = request_keys(
            scope,
            messages,
            params=params,
            tools=tools,
            tool_kwargs=tool_kwargs,
            response_format=response_format,
            stop=stop,
            last_turns=self.semantic.last_turns if self.semantic is not None else 1,
            router=router,
        )
        return Lookup(self, keys, mode)

    # ------------------------------------------------------------------ decisions, once
    def _find(self, lookup: Lookup) -> Found | None:
        found: Found | None = self._guarded(self.store.get, lookup.keys.exact)
        if found is not None or not self._semantic_wanted(lookup):
            return found
        lookup.vector = self._embed(lookup.keys.text)
        return self._nearest(lookup)

    async def _afind(self, lookup: Lookup) -> Found | None:
        found: Found | None = await asyncio.to_thread(self._guarded, self.store.get, lookup.keys.exact)
        if found is not None or not self._semantic_wanted(lookup):
            return found
        lookup.vector = await self._aembed(lookup.keys.text)
        return await asyncio.to_thread(self._nearest, lookup)

    def _semantic_wanted(self, lookup: Lookup) -> bool:
        return self.semantic is not None and bool(lookup.keys.text)

    def _nearest(self, lookup: Lookup) -> Found | None:
        if lookup.vector is None or self.semantic is None:
            return None
        found: Found | None = self._guarded(
            self.store.nearest, lookup.keys.shape, lookup.vector, self.semantic.threshold
        )
        return found

    def _answer(self, lookup: Lookup, found: Found | None) -> Hit | None:
        """A hit as the call's result; a corrupt entry is deleted and counted a miss."""
        if found is not None:
            try:
                data = load_answer(found.payload)
            except CorruptEntryError as exc:
                logger.warning("response cache: dropping a corrupt entry (%s)", exc)
                self.stats.count("errors")
                self._guarded(self.store.delete, found.key)
            else:
                layer = "exact" if found.key == lookup.keys.exact else "semantic"
                self.stats.count(layer)
                return Hit(data, layer, found.similarity)
        self.stats.count("misses")
        return None

    def _put(self, lookup: Lookup, message: AIMessage) -> None:
        vector = lookup.vector if lookup.keys.text else None
        stored = self._guarded(self._put_entry, lookup.keys, dump_answer(message), vector)
        if stored:  # a store that failed counts an error, not an answer kept
            self.stats.count("stored")

    def _put_entry(self, keys: RequestKeys, payload: str, vector: list[float] | None) -> bool:
        self.store.put(keys.exact, keys.shape, payload, ttl=self.ttl, vector=vector)
        return True

    def _embed(self, text: str) -> list[float] | None:
        assert self.semantic is not None
        try:
            return list(self.semantic.embeddings.embed_query(text))
        except Exception as exc:  # an embeddings outage costs the semantic layer, never the call
            logger.warning("response cache: embedding failed, semantic layer skipped (%s)", type(exc).__name__)
            self.stats.count("errors")
            return None

    async def _aembed(self, text: str) -> list[float] | None:
        assert self.semantic is not None
        try:
            return list(await self.semantic.embeddings.aembed_query(text))
        except Exception as exc:
            logger.warning("response cache: embedding failed, semantic layer skipped (%s)", type(exc).__name__)
            self.stats.count("errors")
            return None

    def _guarded(self, operation: Any, *args: Any, **kwargs: Any) -> Any:
        """A store operation; a store that fails (corrupt file, Redis down) is logged and reads as a miss."""
        try:
            return operation(*args, **kwargs)
        except Exception as exc:
            what = redact(str(exc))
            logger.warning("response cache: store %s failed (%s: %s)", operation.__name__, type(exc).__name__, what)
            self.stats.count("errors")
            return None

    def clear(self) -> None:
        """Forget every cached answer."""
        self.store.clear()
