"""A response-cache store in Redis, for several processes and hosts (``pip install 'langchain-multigateway[redis]'``).

Layout under ``namespace`` (only hashes in key names, never a scope or a prompt):

* ``{ns}:e:<key>``: the answer's JSON, expiring with the entry's TTL (Redis drops it);
* ``{ns}:order``: a sorted set of keys by write time; past ``max_entries`` the oldest go;
* ``{ns}:v:<shape>``: a list of ``<key><float32 vector>`` records, appended on each write
  (trimmed to ``max_entries``, its own TTL refreshed), with ``{ns}:g:<shape>`` counting trims.

Each process mirrors a shape's list into its in-memory
:class:`~langchain_multigateway.cache.vectors.VectorIndex` incrementally (the records past
the ones it has read; all of them again after a trim; a large backlog in a background thread,
while lookups miss), and a semantic hit is read back
from its ``e:`` entry, so an expired or evicted answer is never served.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

from langchain_multigateway.cache.base import Found
from langchain_multigateway.cache.vectors import INLINE_MIRROR_ROWS, VectorIndex, numpy

__all__ = ["RedisCacheStore"]

logger = logging.getLogger(__name__)

_KEY_BYTES = 64
"""A key is a SHA-256 in hex: the first 64 bytes of each vector record."""


class RedisCacheStore:
    """Cached answers in Redis, shared by every process that names the same server and namespace.

    Key init args:
        url: ``redis://host:port/db`` (or pass ``client=``, a ``redis.Redis``).
        namespace: Prefix of every key (default ``"multigateway:cache"``).
        max_entries: Entries kept (oldest evicted first).

    Instantiate:
        .. code-block:: python

            from langchain_multigateway.cache import GatewayCache, RedisCacheStore

            cache = GatewayCache(store=RedisCacheStore("redis://127.0.0.1:6379/0"), ttl=3600)
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        client: Any = None,
        namespace: str = "multigateway:cache",
        max_entries: int = 100_000,
        socket_timeout: float = 2.0,
    ) -> None:
        if max_entries < 1:
            msg = f"max_entries must be at least 1, not {max_entries!r}"
            raise ValueError(msg)
        if client is None:
            if url is None:
                msg = "RedisCacheStore needs url= (redis://host:port/db) or client="
                raise ValueError(msg)
            import redis

            client = redis.Redis.from_url(url, socket_timeout=socket_timeout, socket_connect_timeout=socket_timeout)
        self.client = client
        self.namespace = namespace
        self.max_entries = max_entries
        self._index: VectorIndex | None = None
        self._seen: dict[str, tuple[int, int]] = {}
        """Per shape: (trim generation, records read) of the list this process has mirrored."""
        self._lock = threading.Lock()
        self._warming: dict[str, threading.Thread] = {}

    def __repr__(self) -> str:  # never the URL (it may hold a password)
        return f"RedisCacheStore(namespace={self.namespace!r}, max_entries={self.max_entries})"

    def _k(self, kind: str, name: str = "") -> str:
        return f"{self.namespace}:{kind}:{name}" if name else f"{self.namespace}:{kind}"

    # ------------------------------------------------------------------ exact
    def get(self, key: str) -> Found | None:
        payload = self.client.get(self._k("e", key))
        if payload is None:
            return None
        return Found(key, payload.decode("utf-8", "replace") if isinstance(payload, bytes) else str(payload))

    def put(
        self, key: str, shape: str, payload: str, *, ttl: float | None, vector: Sequence[float] | None = None
    ) -> None:
        entry, order = self._k("e", key), self._k("order")
        pipe = self.client.pipeline(transaction=True)
        if ttl is None:
            pipe.set(entry, payload)
        else:
            pipe.set(entry, payload, px=max(1, int(ttl * 1000)))
        pipe.zadd(order, {key: time.time()})
        pipe.zcard(order)
        if vector is not None:
            vectors = self._k("v", shape)
            record = key.encode() + numpy().asarray(vector, dtype="<f4").tobytes()
            pipe.rpush(vectors, record)
            if ttl is not None:
                pipe.pexpire(vectors, max(1, int(ttl * 1000)))
        replies = pipe.execute()
        count = int(replies[2])
        if count > self.max_entries:
            self._evict(count - self.max_entries)
        if vector is not None and int(replies[3]) > self.max_entries:
            pipe = self.client.pipeline(transaction=True)
            pipe.ltrim(self._k("v", shape), -self.max_entries, -1)
            pipe.incr(self._k("g", shape))
            pipe.execute()

    def _evict(self, excess: int) -> None:
        oldest = self.client.zpopmin(self._k("order"), excess)
        if oldest:
            self.client.delete(*(self._k("e", _str(member)) for member, _ in oldest))

    def delete(self, key: str) -> None:
        pipe = self.client.pipeline(transaction=True)
        pipe.delete(self._k("e", key))
        pipe.zrem(self._k("order"), key)
        pipe.execute()

    def clear(self) -> None:
        names = list(self.client.scan_iter(match=f"{self.namespace}:*", count=500))
        for start in range(0, len(names), 500):
            self.client.delete(*names[start : start + 500])
        with self._lock:
            self._index, self._seen = None, {}

    def count(self) -> int:
        return int(self.client.zcard(self._k("order")))

    def close(self) -> None:
        self.client.close()

    # ------------------------------------------------------------------ semantic
    def nearest(self, shape: str, vector: Sequence[float], threshold: float) -> Found | None:
        index = self._ready_index(shape)
        if index is None:
            return None  # the shape's first mirror runs in the background: a miss, never a wait
        for key, score in index.search(shape, vector, threshold):
            found = self.get(key)
            if found is None:
                index.drop(shape, key)  # expired or evicted since it was mirrored
                continue
            return Found(key, found.payload, score)
        return None

    def _ready_index(self, shape: str) -> VectorIndex | None:
        """The index, caught up inline when few of the shape's records are new, else by a background thread."""
        warming = self._warming.get(shape)
        if warming is not None and warming.is_alive():
            return self._index
        length = int(self.client.llen(self._k("v", shape)))
        seen = self._seen.get(shape, (0, 0))[1]
        pending = length if length < seen else length - seen
        if pending <= INLINE_MIRROR_ROWS:
            return self._mirror(shape)
        index = self._index  # as it stands before the background catch-up begins
        thread = threading.Thread(target=self._mirror_quietly, args=(shape,), name="multigateway-cache-mirror")
        thread.daemon = True
        self._warming[shape] = thread
        thread.start()
        return index

    def _mirror_quietly(self, shape: str) -> None:
        try:
            self._mirror(shape)
        except Exception as exc:  # Redis gone meanwhile: the next lookup tries again
            logger.warning("response cache: mirroring vectors failed (%s)", type(exc).__name__)

    def _mirror(self, shape: str) -> VectorIndex:
        """The index, with the shape's vectors appended since the last read (all of them after a trim)."""
        np = numpy()
        vectors = self._k("v", shape)
        pipe = self.client.pipeline(transaction=True)
        pipe.get(self._k("g", shape))
        pipe.llen(vectors)
        generation_raw, length = pipe.execute()
        generation = int(generation_raw or 0)
        with self._lock:
            if self._index is None:
                self._index = VectorIndex()
            index = self._index
            seen_generation, seen = self._seen.get(shape, (generation, 0))
            if seen_generation != generation or length < seen:
                index.forget(shape)
                seen = 0
        records = self.client.lrange(vectors, seen, -1) if length > seen else []
        with self._lock:
            batches: dict[int, tuple[list[str], list[bytes]]] = {}
            for record in records:
                if isinstance(record, bytes) and len(record) > _KEY_BYTES and (len(record) - _KEY_BYTES) % 4 == 0:
                    keys, blobs = batches.setdefault(len(record), ([], []))
                    keys.append(record[:_KEY_BYTES].decode("ascii", "replace"))
                    blobs.append(record[_KEY_BYTES:])
            for size, (keys, blobs) in batches.items():
                vectors = np.frombuffer(b"".join(blobs), dtype="<f4").reshape(-1, (size - _KEY_BYTES) // 4)
                index.add_many(shape, keys, vectors)
            self._seen[shape] = (generation, seen + len(records))
        return index


def _str(member: Any) -> str:
    return member.decode() if isinstance(member, bytes) else str(member)
