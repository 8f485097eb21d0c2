"""What a response-cache store does: keep answers by exact key, and vectors beside them for the semantic layer.

A store holds only hashes (key, shape) and the answer's JSON; it never sees a scope,
a prompt or a credential in the clear. Stores are synchronous (SQLite has no async API,
and a Redis round trip is short); the async path runs them in a worker thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

__all__ = ["CacheStore", "Found"]


@dataclass(frozen=True, slots=True)
class Found:
    """An entry a lookup found: its key, the stored answer's JSON and its similarity (1.0 for an exact hit)."""

    key: str
    payload: str
    similarity: float = 1.0


@runtime_checkable
class CacheStore(Protocol):
    """Where cached answers live (``SQLiteCacheStore`` by default, ``RedisCacheStore`` when shared)."""

    def get(self, key: str) -> Found | None:
        """The live entry under ``key``, or None (missing or expired)."""
        ...

    def put(
        self, key: str, shape: str, payload: str, *, ttl: float | None, vector: Sequence[float] | None = None
    ) -> None:
        """Store (or replace) an entry; ``ttl`` seconds to live (None: until evicted)."""
        ...

    def nearest(self, shape: str, vector: Sequence[float], threshold: float) -> Found | None:
        """The live entry of ``shape`` whose vector is most similar to ``vector``, if ≥ ``threshold``."""
        ...

    def delete(self, key: str) -> None:
        """Forget ``key`` (a corrupt entry is deleted when found)."""
        ...

    def clear(self) -> None:
        """Forget every entry."""
        ...

    def count(self) -> int:
        """Entries held (expired ones not yet purged included)."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...
