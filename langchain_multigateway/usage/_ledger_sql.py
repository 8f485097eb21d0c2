"""The ledger's SQLite side: the schema, how one record becomes rows, and the filters reads build.

The statements run on the ledger's writer thread (:mod:`._ledger_writer`), which owns the one
connection; a read only builds its query here and hands it to that thread.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from langchain_multigateway.usage.records import CallRecord

COLUMNS = (
    "id",
    "ts",
    "day",
    "run_id",
    "parent_run_id",
    "deployment",
    "provider",
    "model",
    "served_model",
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
    "cache",
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
    served_model TEXT,
    input_tokens INTEGER NOT NULL DEFAULT 0,
    output_tokens INTEGER NOT NULL DEFAULT 0,
    total_tokens INTEGER NOT NULL DEFAULT 0,
    cached_tokens INTEGER NOT NULL DEFAULT 0,
    reasoning_tokens INTEGER NOT NULL DEFAULT 0,
    cost_usd REAL,
    latency_ms REAL,
    outcome TEXT NOT NULL,
    error_type TEXT,
    tags TEXT NOT NULL DEFAULT '[]',
    cache TEXT
);
CREATE TABLE IF NOT EXISTS call_tags (
    call_id INTEGER NOT NULL REFERENCES calls(id),
    tag TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS calls_ts ON calls(ts);
CREATE INDEX IF NOT EXISTS calls_model ON calls(model);
CREATE INDEX IF NOT EXISTS call_tags_tag ON call_tags(tag);
CREATE INDEX IF NOT EXISTS call_tags_call ON call_tags(call_id, tag);
CREATE TABLE IF NOT EXISTS call_attempts (
    call_id INTEGER NOT NULL REFERENCES calls(id),
    deployment TEXT,
    error_type TEXT,
    status_code INTEGER,
    latency_ms REAL
);
CREATE INDEX IF NOT EXISTS call_attempts_call ON call_attempts(call_id);
"""
# call_attempts: the failed tries before a call's last one (a failover), as the router's
# ``failed_attempts`` metadata states them (no message text: it may quote the input).

GROUPS: dict[str, str] = {
    "model": "c.model",
    "day": "c.day",
    "deployment": "c.deployment",
    "provider": "c.provider",
    "outcome": "c.outcome",
    "tag": "t.tag",
}
"""What :meth:`Ledger.totals` groups on, by its ``by`` argument (``t``: the tags joined in)."""

_IMPORTED = "CREATE TABLE IF NOT EXISTS spill_imports (spill_id TEXT PRIMARY KEY)"
# spill_imports: the sidecar lines already imported, so a line is stored once however often it is read.

FILTERS = ("since", "until", "model", "tag", "deployment", "provider", "outcome")
"""The filters :meth:`Ledger.records` and :meth:`Ledger.count` take, in :func:`where`'s order."""

Queued = tuple[CallRecord, tuple[Mapping[str, Any], ...]]
"""A record waiting for the writer, with the failed tries before it."""
Spilled = tuple[str, CallRecord, tuple[Mapping[str, Any], ...], str]
"""A sidecar line read back: its id, the record, its failed tries, and the line itself."""


def connect(path: str, busy_timeout: float) -> sqlite3.Connection:
    """The writer's connection (WAL, autocommit: each batch opens its own transaction), schema in place."""
    conn = sqlite3.connect(path, timeout=busy_timeout, check_same_thread=False, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.executescript(_SCHEMA + _IMPORTED + ";")
        _add_served_model_column(conn)
    except BaseException:
        conn.close()
        raise
    return conn


def _add_served_model_column(conn: sqlite3.Connection) -> None:
    """Ledgers written before ``served_model`` existed get the column (empty for old rows)."""
    names = {row[1] for row in conn.execute("PRAGMA table_info(calls)")}
    if "served_model" not in names:
        conn.execute("ALTER TABLE calls ADD COLUMN served_model TEXT")
    if "cache" not in names:  # a response-cache hit (exact / semantic) or miss, since issue 16
        conn.execute("ALTER TABLE calls ADD COLUMN cache TEXT")


def insert(conn: sqlite3.Connection, batch: Sequence[Queued]) -> None:
    """Commit ``batch`` in one transaction (all of it or none)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        for record, failed in batch:
            _insert_row(conn, record, failed)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _attempt_fields(attempt: Mapping[str, Any]) -> tuple[str | None, str | None, int | None, float | None]:
    status, latency = attempt.get("status_code"), attempt.get("latency_ms")
    return (
        str(attempt.get("deployment") or "") or None,
        str(attempt.get("error_type") or "") or None,
        status if isinstance(status, int) and not isinstance(status, bool) else None,
        float(latency) if isinstance(latency, (int, float)) else None,
    )


def _insert_row(conn: sqlite3.Connection, record: CallRecord, failed: tuple[Mapping[str, Any], ...] = ()) -> None:
    day = datetime.fromtimestamp(record.ended_at, tz=UTC).strftime("%Y-%m-%d")
    cursor = conn.execute(
        "INSERT INTO calls (ts, day, run_id, parent_run_id, deployment, provider, model, served_model,"
        " input_tokens, output_tokens, total_tokens, cached_tokens, reasoning_tokens, cost_usd, latency_ms,"
        " outcome, error_type, tags, cache) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            record.ended_at,
            day,
            record.run_id,
            record.parent_run_id,
            record.deployment,
            record.provider,
            record.model,
            record.served_model,
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
            record.cache,
        ),
    )
    call_id = cursor.lastrowid
    if record.tags:
        conn.executemany("INSERT INTO call_tags (call_id, tag) VALUES (?, ?)", [(call_id, t) for t in set(record.tags)])
    if failed:
        conn.executemany(
            "INSERT INTO call_attempts (call_id, deployment, error_type, status_code, latency_ms)"
            " VALUES (?, ?, ?, ?, ?)",
            [(call_id, *_attempt_fields(a)) for a in failed],
        )


def insert_spilled(conn: sqlite3.Connection, entries: list[Spilled]) -> list[str]:
    """Insert spilled records once each (the ids imported are committed with the rows).

    A locked database aborts the import (it is tried again later); a record SQLite
    refuses for its values is returned, to be set aside, so it cannot block the rest.
    """
    refused: list[str] = []
    conn.execute("BEGIN IMMEDIATE")
    try:
        for spill_id, record, failed, line in entries:
            if conn.execute("SELECT 1 FROM spill_imports WHERE spill_id = ?", (spill_id,)).fetchone():
                continue
            conn.execute("SAVEPOINT one")
            try:
                _insert_row(conn, record, failed)
            except sqlite3.OperationalError:
                raise
            except Exception:
                conn.execute("ROLLBACK TO one")
                refused.append(line)
                continue
            finally:
                conn.execute("RELEASE one")
            conn.execute("INSERT INTO spill_imports (spill_id) VALUES (?)", (spill_id,))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return refused


def _epoch(value: datetime | float | None) -> float | None:
    if value is None or isinstance(value, (int, float)):
        return value
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


def where(
    since: datetime | float | None,
    until: datetime | float | None,
    model: str | None,
    tag: str | None,
    deployment: str | None,
    provider: str | None,
    outcome: str | None,
) -> tuple[str, list[Any]]:
    """The WHERE clause and its parameters for the filters (``since`` inclusive, ``until`` exclusive)."""
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


def records_sql(where: str, *, limit: bool) -> str:
    """Records in time order (``COLUMNS``), with a ``LIMIT ?`` parameter when ``limit``."""
    sql = f"SELECT {', '.join('c.' + c for c in COLUMNS)} FROM calls c{where} ORDER BY c.ts, c.id"
    return sql + " LIMIT ?" if limit else sql


TOTALS_FIELDS = (
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
    "cache_hits",
)
"""The fields of one :meth:`Ledger.totals` row, in :func:`totals_sql`'s column order."""


def totals_sql(by: str, where: str) -> str:
    """One row of ``TOTALS_FIELDS`` per group of ``GROUPS[by]``, in key order."""
    join = " JOIN call_tags t ON t.call_id = c.id" if by == "tag" else ""
    key = GROUPS[by]
    return (
        f"SELECT {key} AS key, COUNT(*), SUM(c.outcome = 'error'), SUM(c.input_tokens), SUM(c.output_tokens),"
        " SUM(c.total_tokens), SUM(c.cached_tokens), SUM(c.reasoning_tokens), SUM(c.cost_usd),"
        f" SUM(c.cost_usd IS NULL), AVG(c.latency_ms), SUM(c.cache IN ('exact', 'semantic'))"
        f" FROM calls c{join}{where}"
        f" GROUP BY {key} ORDER BY {key}"
    )
