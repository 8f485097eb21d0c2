"""A durable record of every call: SQLite by default (stdlib ``sqlite3``, WAL mode).

One writer thread owns the connection and takes records from a queue, committing
each record on its own, so a crash loses at most what was still queued (normally
only the call in flight). Producers (threads, asyncio tasks, callback handlers)
only enqueue, so they never block on disk. Reads go through the same thread,
which also lets ``":memory:"`` ledgers work.

Example:
    .. code-block:: python

        from langchain_multigateway.usage import Ledger, LedgerCallbackHandler

        ledger = Ledger("calls.sqlite3")
        llm.invoke("Hello", config={"callbacks": [LedgerCallbackHandler(ledger)]})
        ledger.totals(by="model")            # [{"key": "gpt-4o-mini", "requests": 1, ...}]
        ledger.records(tag="nightly", since=datetime(2025, 1, 1))
        ledger.export_csv("calls.csv")
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import queue
import sqlite3
import threading
import weakref
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any, Literal, TypeVar

from langchain_multigateway.usage.pricing import PriceTable
from langchain_multigateway.usage.records import CallRecord, CallRecorder

__all__ = ["Ledger", "LedgerCallbackHandler"]

T = TypeVar("T")
logger = logging.getLogger(__name__)
GroupBy = Literal["model", "day", "tag", "deployment", "provider", "outcome"]

COLUMNS = (
    "id",
    "ts",
    "day",
    "run_id",
    "parent_run_id",
    "deployment",
    "provider",
    "model",
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "cached_tokens",
    "reasoning_tokens",
    "cost_usd",
    "latency_ms",
    "outcome",
    "error_type",
    "tags",
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts REAL NOT NULL,
    day TEXT NOT NULL,
    run_id TEXT,
    parent_run_id TEXT,
    deployment TEXT,
    provider TEXT,
    model TEXT,
    input_tokens INTEGER NOT NULL DEFAULT 0,
    output_tokens INTEGER NOT NULL DEFAULT 0,
    total_tokens INTEGER NOT NULL DEFAULT 0,
    cached_tokens INTEGER NOT NULL DEFAULT 0,
    reasoning_tokens INTEGER NOT NULL DEFAULT 0,
    cost_usd REAL,
    latency_ms REAL,
    outcome TEXT NOT NULL,
    error_type TEXT,
    tags TEXT NOT NULL DEFAULT '[]'
);
CREATE TABLE IF NOT EXISTS call_tags (
    call_id INTEGER NOT NULL REFERENCES calls(id),
    tag TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS calls_ts ON calls(ts);
CREATE INDEX IF NOT EXISTS calls_model ON calls(model);
CREATE INDEX IF NOT EXISTS call_tags_tag ON call_tags(tag);
"""

_GROUPS: dict[str, str] = {
    "model": "c.model",
    "day": "c.day",
    "deployment": "c.deployment",
    "provider": "c.provider",
    "outcome": "c.outcome",
    "tag": "t.tag",
}

_STOP = object()


def _epoch(value: datetime | float | None) -> float | None:
    if value is None or isinstance(value, (int, float)):
        return value
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.timestamp()


def _worker(path: str, jobs: queue.Queue[Any], ready: Future[None]) -> None:
    try:
        conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.executescript(_SCHEMA)
    except BaseException as exc:
        ready.set_exception(exc)
        return
    ready.set_result(None)
    try:
        while True:
            job = jobs.get()
            if job is _STOP:
                break
            kind, payload, future = job
            try:
                if kind == "record":
                    _insert(conn, payload)
                else:
                    result = payload(conn)
                    if future is not None:
                        future.set_result(result)
            except Exception as exc:
                if future is not None:
                    future.set_exception(exc)
                else:
                    logger.warning("ledger %s: could not write a record: %r", path, exc)
    finally:
        conn.close()


def _insert(conn: sqlite3.Connection, record: CallRecord) -> None:
    day = datetime.fromtimestamp(record.ended_at, tz=timezone.utc).strftime("%Y-%m-%d")
    conn.execute("BEGIN")
    try:
        cursor = conn.execute(
            "INSERT INTO calls (ts, day, run_id, parent_run_id, deployment, provider, model, input_tokens,"
            " output_tokens, total_tokens, cached_tokens, reasoning_tokens, cost_usd, latency_ms, outcome,"
            " error_type, tags) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                record.ended_at,
                day,
                record.run_id,
                record.parent_run_id,
                record.deployment,
                record.provider,
                record.model,
                record.input_tokens,
                record.output_tokens,
                record.total_tokens,
                record.cached_tokens,
                record.reasoning_tokens,
                record.cost_usd,
                round(record.latency_ms, 3),
                record.outcome,
                record.error_type,
                json.dumps(list(record.tags)),
            ),
        )
        call_id = cursor.lastrowid
        if record.tags:
            conn.executemany(
                "INSERT INTO call_tags (call_id, tag) VALUES (?, ?)", [(call_id, t) for t in set(record.tags)]
            )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _stop_worker(jobs: queue.Queue[Any], thread: threading.Thread) -> None:
    if thread.is_alive():
        jobs.put(_STOP)
        thread.join(timeout=10)


class Ledger:
    """Every call's record in SQLite: time, run id, deployment, provider, model, tokens,
    cost, latency, outcome (ok / error and its type), tags.

    Key init args:
        path: Database file (created if missing), or ``":memory:"``.

    Use ``with Ledger(path) as ledger:`` or call :meth:`close`; a ledger left open
    is flushed and closed when it is garbage-collected or the interpreter exits.
    """

    def __init__(self, path: str | os.PathLike[str] = ":memory:") -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._jobs: queue.Queue[Any] = queue.Queue()
        ready: Future[None] = Future()
        self._thread = threading.Thread(
            target=_worker, args=(self.path, self._jobs, ready), name="multigateway-ledger", daemon=True
        )
        self._thread.start()
        ready.result()
        self._closed = False
        self._finalizer = weakref.finalize(self, _stop_worker, self._jobs, self._thread)

    # ------------------------------------------------------------------ writing
    def add(self, record: CallRecord) -> None:
        """Queue one record for writing (returns at once)."""
        if self._closed:
            msg = "this Ledger is closed"
            raise RuntimeError(msg)
        self._jobs.put(("record", record, None))

    def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._closed:
            msg = "this Ledger is closed"
            raise RuntimeError(msg)
        future: Future[T] = Future()
        self._jobs.put(("call", fn, future))
        return future.result()

    def flush(self) -> None:
        """Wait until every record queued so far is committed."""
        self._run(lambda conn: None)

    def close(self) -> None:
        """Write what is queued, then close the database."""
        if not self._closed:
            self._closed = True
            self._finalizer()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ reading
    @staticmethod
    def _where(
        since: datetime | float | None,
        until: datetime | float | None,
        model: str | None,
        tag: str | None,
        deployment: str | None,
        provider: str | None,
        outcome: str | None,
    ) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        for column, value in (("c.model", model), ("c.deployment", deployment), ("c.provider", provider)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if outcome is not None:
            clauses.append("c.outcome = ?")
            params.append(outcome)
        if since is not None:
            clauses.append("c.ts >= ?")
            params.append(_epoch(since))
        if until is not None:
            clauses.append("c.ts < ?")
            params.append(_epoch(until))
        if tag is not None:
            clauses.append("EXISTS (SELECT 1 FROM call_tags x WHERE x.call_id = c.id AND x.tag = ?)")
            params.append(tag)
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", params

    def records(
        self,
        *,
        since: datetime | float | None = None,
        until: datetime | float | None = None,
        model: str | None = None,
        tag: str | None = None,
        deployment: str | None = None,
        provider: str | None = None,
        outcome: str | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """Records in time order, filtered (``since`` inclusive, ``until`` exclusive)."""
        self.flush()
        where, params = self._where(since, until, model, tag, deployment, provider, outcome)
        sql = f"SELECT {', '.join('c.' + c for c in COLUMNS)} FROM calls c{where} ORDER BY c.ts, c.id"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))

        def query(conn: sqlite3.Connection) -> list[dict[str, Any]]:
            rows = conn.execute(sql, params).fetchall()
            out = [dict(zip(COLUMNS, row, strict=True)) for row in rows]
            for row in out:
                row["tags"] = json.loads(row["tags"])
            return out

        return self._run(query)

    def count(self, **filters: Any) -> int:
        """Number of records matching the filters of :meth:`records`."""
        self.flush()
        where, params = self._where(*(filters.pop(k, None) for k in _FILTERS))
        if filters:
            msg = f"unknown filters {sorted(filters)}"
            raise TypeError(msg)
        sql = f"SELECT COUNT(*) FROM calls c{where}"
        return int(self._run(lambda conn: conn.execute(sql, params).fetchone()[0]))

    def totals(
        self,
        by: GroupBy = "model",
        *,
        since: datetime | float | None = None,
        until: datetime | float | None = None,
        model: str | None = None,
        tag: str | None = None,
        deployment: str | None = None,
        provider: str | None = None,
    ) -> list[dict[str, Any]]:
        """Requests, errors, tokens, cost and mean latency per model, day, tag, deployment or provider."""
        if by not in _GROUPS:
            msg = f"by must be one of {sorted(_GROUPS)}, not {by!r}"
            raise ValueError(msg)
        self.flush()
        where, params = self._where(since, until, model, tag, deployment, provider, None)
        join = " JOIN call_tags t ON t.call_id = c.id" if by == "tag" else ""
        key = _GROUPS[by]
        sql = (
            f"SELECT {key} AS key, COUNT(*), SUM(c.outcome = 'error'), SUM(c.input_tokens), SUM(c.output_tokens),"
            " SUM(c.total_tokens), SUM(c.cached_tokens), SUM(c.reasoning_tokens), SUM(c.cost_usd),"
            f" SUM(c.cost_usd IS NULL AND c.total_tokens > 0), AVG(c.latency_ms) FROM calls c{join}{where}"
            f" GROUP BY {key} ORDER BY {key}"
        )
        names = (
            "key",
            "requests",
            "errors",
            "input_tokens",
            "output_tokens",
            "total_tokens",
            "cached_tokens",
            "reasoning_tokens",
            "cost_usd",
            "unpriced",
            "mean_latency_ms",
        )

        def query(conn: sqlite3.Connection) -> list[dict[str, Any]]:
            rows = conn.execute(sql, params).fetchall()
            return [dict(zip(names, row, strict=True)) for row in rows]

        return self._run(query)

    def export_csv(self, target: str | os.PathLike[str] | IO[str], **filters: Any) -> int:
        """Write matching records as CSV (a path or an open text file); returns the row count."""
        rows = self.records(**filters)
        if isinstance(target, (str, os.PathLike)):
            with open(target, "w", newline="", encoding="utf-8") as handle:
                _write_csv(handle, rows)
        else:
            _write_csv(target, rows)
        return len(rows)


_FILTERS = ("since", "until", "model", "tag", "deployment", "provider", "outcome")


def _write_csv(handle: IO[str], rows: list[dict[str, Any]]) -> None:
    writer = csv.DictWriter(handle, fieldnames=list(COLUMNS), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({**row, "tags": ";".join(row["tags"])})


def csv_text(ledger: Ledger, **filters: Any) -> str:
    """Matching records as one CSV string."""
    buffer = io.StringIO()
    ledger.export_csv(buffer, **filters)
    return buffer.getvalue()


class LedgerCallbackHandler(CallRecorder):
    """Writes one ledger row per call (per failed attempt too) on ``on_llm_end`` / ``on_llm_error``.

    Nested chat-model runs (a router and the deployment it called) give one row
    per served call, like :class:`~langchain_multigateway.usage.UsageCallbackHandler`.

    Key init args:
        ledger: A :class:`Ledger`, or a path to open one at.
        prices: Price table for the cost column (the default table when None).
    """

    def __init__(
        self, ledger: Ledger | str | os.PathLike[str], *, prices: PriceTable | Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(prices=prices)
        self.ledger = ledger if isinstance(ledger, Ledger) else Ledger(ledger)

    def _emit(self, records: list[CallRecord]) -> None:
        for record in records:
            self.ledger.add(record)


def rows_by(rows: list[dict[str, Any]], key: str = "key") -> dict[Any, dict[str, Any]]:
    """Index :meth:`Ledger.totals` rows by their key."""
    return {row[key]: row for row in rows}
