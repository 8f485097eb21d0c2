"""The default response-cache store: one SQLite file (stdlib ``sqlite3``), shared safely by threads and processes.

One table holds each entry: its key and shape (hashes), when it expires, the answer's
JSON and, for the semantic layer, its vector as float32 bytes. Ids are never reused
(``AUTOINCREMENT``), so each process mirrors the vectors into its in-memory
:class:`~langchain_multigateway.cache.vectors.VectorIndex` incrementally: only rows with
an id above the last one it read (a lookup does that itself for a few new rows; a large
backlog, such as a fresh process over a full file, is mirrored by a background thread while
lookups miss the semantic layer, so none waits seconds; ``warm()`` does it up front). WAL mode
and a busy timeout let several processes read and write one file; in a process, one connection
is shared under a lock.

Size is bounded: after each write, only entries among the newest ``max_entries``
writes are kept (the oldest go first), and expired ones are purged on the way.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from langchain_multigateway.cache.base import Found
from langchain_multigateway.cache.vectors import INLINE_MIRROR_ROWS, VectorIndex, numpy

__all__ = ["SQLiteCacheStore"]

logger = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS cache_entries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL UNIQUE,
    shape TEXT NOT NULL,
    created REAL NOT NULL,
    expires REAL,
    payload TEXT NOT NULL,
    vector BLOB
);
CREATE INDEX IF NOT EXISTS cache_entries_expires ON cache_entries(expires);
"""


class SQLiteCacheStore:
    """Cached answers in a SQLite file (``":memory:"``: this process only, gone when it ends).

    Key init args:
        path: The database file (created if missing); ``":memory:"`` by default.
        max_entries: At most this many entries after each write (oldest go first).
        busy_timeout: Seconds to wait for another process's write lock.

    Instantiate:
        .. code-block:: python

            from langchain_multigateway.cache import GatewayCache, SQLiteCacheStore

            cache = GatewayCache(store=SQLiteCacheStore("answers.sqlite3", max_entries=50_000))
    """

    def __init__(self, path: str | Path = ":memory:", *, max_entries: int = 100_000, busy_timeout: float = 5.0) -> None:
        if max_entries < 1:
            msg = f"max_entries must be at least 1, not {max_entries!r}"
            raise ValueError(msg)
        self.path = str(path)
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, timeout=busy_timeout, check_same_thread=False, isolation_level=None)
        if self.path != ":memory:":
            self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(_SCHEMA)
        self._busy_timeout = busy_timeout
        self._index: VectorIndex | None = None
        self._mirrored = 0
        """The highest id whose vector this process's index has read."""
        self._mirror_lock = self._lock
        self._warming: threading.Thread | None = None
        self._mirror_conn: sqlite3.Connection | None = None
        """A file's vectors are read on a connection of their own: mirroring many of them never holds up
        an exact lookup. (A ``":memory:"`` database exists on its one connection only.)"""

    def __repr__(self) -> str:
        return f"SQLiteCacheStore(path={self.path!r}, max_entries={self.max_entries})"

    # ------------------------------------------------------------------ exact
    def get(self, key: str) -> Found | None:
        with self._lock:
            row = self._conn.execute("SELECT payload, expires FROM cache_entries WHERE key = ?", (key,)).fetchone()
        if row is None or _expired(row[1]):
            return None
        return Found(key, _text(row[0]))

    def put(
        self, key: str, shape: str, payload: str, *, ttl: float | None, vector: Sequence[float] | None = None
    ) -> None:
        now = time.time()
        expires = None if ttl is None else now + ttl
        blob = None if vector is None else numpy().asarray(vector, dtype="<f4").tobytes()
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.execute(
                    # a rewrite takes a new id: it counts as the newest write (and is mirrored again)
                    "INSERT OR REPLACE INTO cache_entries (key, shape, created, expires, payload, vector)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (key, shape, now, expires, payload, blob),
                )
                self._evict(now)
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    def _evict(self, now: float) -> None:
        self._conn.execute("DELETE FROM cache_entries WHERE expires IS NOT NULL AND expires <= ?", (now,))
        # Ids only grow: keeping the entries among the newest max_entries ids bounds the count
        # (holes left by expiry only make it smaller) with one index range delete, no table scan.
        (newest,) = self._conn.execute("SELECT max(id) FROM cache_entries").fetchone()
        if newest is not None and newest > self.max_entries:
            self._conn.execute("DELETE FROM cache_entries WHERE id <= ?", (newest - self.max_entries,))

    def delete(self, key: str) -> None:
        with self._lock:
            self._conn.execute("DELETE FROM cache_entries WHERE key = ?", (key,))

    def clear(self) -> None:
        with self._lock:
            self._conn.execute("DELETE FROM cache_entries")
            if self._index is not None:
                self._index.clear()

    def count(self) -> int:
        with self._lock:
            (count,) = self._conn.execute("SELECT COUNT(*) FROM cache_entries").fetchone()
        return int(count)

    def close(self) -> None:
        with self._lock:
            self._conn.close()
        if self._mirror_conn is not None and self._mirror_conn is not self._conn:
            with self._mirror_lock:
                self._mirror_conn.close()

    # ------------------------------------------------------------------ semantic
    def nearest(self, shape: str, vector: Sequence[float], threshold: float) -> Found | None:
        index = self._ready_index()
        if index is None:
            return None  # the first mirror of a large file runs in the background: a miss, never a wait
        for entry_id, score in index.search(shape, vector, threshold):
            with self._lock:
                row = self._conn.execute(
                    "SELECT key, payload, expires FROM cache_entries WHERE id = ?", (entry_id,)
                ).fetchone()
            if row is None or _expired(row[2]):
                index.drop(shape, entry_id)  # evicted, expired or replaced since it was mirrored
                continue
            return Found(str(row[0]), _text(row[1]), score)
        return None

    def warm(self) -> None:
        """Mirror every stored vector now (at startup, say), instead of in the background on first use."""
        self._catch_up()

    def _ready_index(self) -> VectorIndex | None:
        """The index, caught up inline when few rows are new; else caught up by a background thread
        (a fresh process over 100k entries would otherwise hold its first semantic lookup for seconds)."""
        warming = self._warming
        if warming is not None and warming.is_alive():
            return self._index  # partly filled, or None: fewer hits meanwhile, never a wrong one
        with self._lock:
            (newest,) = self._conn.execute("SELECT coalesce(max(id), 0) FROM cache_entries").fetchone()
        if int(newest) - self._mirrored <= INLINE_MIRROR_ROWS:
            return self._catch_up()
        index = self._index  # as it stands before the background catch-up begins
        thread = threading.Thread(target=self._catch_up_quietly, name="multigateway-cache-mirror", daemon=True)
        self._warming = thread
        thread.start()
        return index

    def _catch_up_quietly(self) -> None:
        try:
            self._catch_up()
        except Exception as exc:  # a closed or broken file: the next lookup tries again
            logger.warning("response cache: mirroring vectors failed (%s)", type(exc).__name__)

    def _catch_up(self) -> VectorIndex:
        """The in-memory index, with every vector written since the last call (by this or another process)."""
        np = numpy()
        if self._mirror_conn is None:
            self._open_mirror()
        assert self._mirror_conn is not None
        with self._mirror_lock:
            if self._index is None or self._index.size > 2 * self.max_entries:
                self._index, self._mirrored = VectorIndex(), 0  # rebuilt: too many dead rows held
            index = self._index
            rows = self._mirror_conn.execute(
                "SELECT id, shape, vector FROM cache_entries WHERE id > ? AND vector IS NOT NULL ORDER BY id",
                (self._mirrored,),
            ).fetchall()
            batches: dict[tuple[str, int], tuple[list[int], list[bytes]]] = {}
            for entry_id, shape, blob in rows:
                self._mirrored = max(self._mirrored, int(entry_id))
                if isinstance(blob, bytes) and blob and len(blob) % 4 == 0 and isinstance(shape, str):
                    ids, blobs = batches.setdefault((shape, len(blob)), ([], []))
                    ids.append(int(entry_id))
                    blobs.append(blob)
            for (shape, size), (ids, blobs) in batches.items():
                index.add_many(shape, ids, np.frombuffer(b"".join(blobs), dtype="<f4").reshape(-1, size // 4))
        return index

    def _open_mirror(self) -> None:
        with self._lock:
            if self._mirror_conn is not None:
                return
            if self.path == ":memory:":
                self._mirror_conn = self._conn
                return
            self._mirror_lock = threading.Lock()
            self._mirror_conn = sqlite3.connect(
                self.path, timeout=self._busy_timeout, check_same_thread=False, isolation_level=None
            )


def _expired(expires: Any) -> bool:
    if expires is None:
        return False
    if not isinstance(expires, (int, float)):
        return True  # an unreadable expiry is treated as expired: a miss, never a crash
    return expires <= time.time()


def _text(payload: Any) -> str:
    if isinstance(payload, bytes):
        return payload.decode("utf-8", "replace")
    return payload if isinstance(payload, str) else ""
