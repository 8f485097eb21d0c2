"""Recent failovers from a ledger, whichever way it recorded the failed tries.

* ``multigateway serve`` keeps each call's failed tries in ``call_attempts`` beside the
  call (deployment, error class, HTTP status, latency).
* A library user's ``LedgerCallbackHandler`` writes each failed try as its own ``error``
  row whose ``parent_run_id`` is the router's run; the router's served call (when one
  deployment answered) is the row whose ``run_id`` that is. Its status is not recorded.
  A group counts as a failover when the router's row is there, or its tries went to
  two deployments or more (a router that failed on every one); a lone failed call
  inside a chain is not a failover. These are read from the last 24 hours only: the
  ledger has no index on run ids, and the time index bounds the scan.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

__all__ = ["recent_failovers"]

_LIBRARY_WINDOW = 86400.0
_IN_CHUNK = 900
"""Run ids per ``IN (...)``: SQLite builds older than 3.32 (some systems' own) allow 999 variables."""


def router_of(tags: str | None) -> str | None:
    """The router a call went through, from its ``router:<name>`` tag (the server tags every call)."""
    try:
        names = json.loads(tags or "[]")
    except ValueError:
        return None
    found = [t[7:] for t in names if isinstance(t, str) and t.startswith("router:")] if isinstance(names, list) else []
    return found[0] if found else None


def _has_table(conn: sqlite3.Connection, name: str) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone() is not None


def _entry(row: tuple[Any, ...], failed: list[dict[str, Any]]) -> dict[str, Any]:
    cid, ts, model, deployment, outcome, error_type, latency, tags = row
    return {
        "id": cid,
        "ts": ts,
        "model": model,
        "router": router_of(tags),
        "served_by": deployment,
        "outcome": outcome,
        "error_type": error_type,
        "latency_ms": latency,
        "failed": failed,
    }


def _tried(deployment: Any, error_type: Any, status: Any, latency: Any) -> dict[str, Any]:
    return {"deployment": deployment, "error_type": error_type, "status_code": status, "latency_ms": latency}


def _served(conn: sqlite3.Connection, limit: int) -> list[dict[str, Any]]:
    if not _has_table(conn, "call_attempts"):  # a ledger written before failed tries were kept
        return []
    calls = conn.execute(
        "SELECT c.id, c.ts, c.model, c.deployment, c.outcome, c.error_type, c.latency_ms, c.tags FROM calls c"
        " WHERE c.id IN (SELECT DISTINCT call_id FROM call_attempts ORDER BY call_id DESC LIMIT ?)",
        (limit,),
    ).fetchall()
    ids = [row[0] for row in calls]
    tries = conn.execute(
        "SELECT call_id, deployment, error_type, status_code, latency_ms FROM call_attempts"
        f" WHERE call_id IN ({','.join('?' * len(ids))}) ORDER BY call_id, rowid",
        ids,
    ).fetchall()
    by_call: dict[int, list[dict[str, Any]]] = {i: [] for i in ids}
    for call_id, *fields in tries:
        by_call[call_id].append(_tried(*fields))
    return [_entry(row, by_call[row[0]]) for row in calls]


def _library(conn: sqlite3.Connection, now: float) -> list[dict[str, Any]]:
    since = now - _LIBRARY_WINDOW
    rows = conn.execute(
        "SELECT parent_run_id, id, ts, model, deployment, error_type, latency_ms, tags FROM calls"
        " WHERE ts >= ? AND outcome = 'error' AND parent_run_id IS NOT NULL",
        (since,),
    ).fetchall()
    rows.sort(key=lambda row: row[1])  # in the order written (sorting in SQL would scan the table by id)
    groups: dict[str, list[tuple[Any, ...]]] = {}
    for row in rows:
        groups.setdefault(row[0], []).append(row[1:])
    if not groups:
        return []
    parents = list(groups)
    served = {}
    for start in range(0, len(parents), _IN_CHUNK):
        chunk = parents[start : start + _IN_CHUNK]
        for row in conn.execute(
            "SELECT run_id, id, ts, model, deployment, outcome, error_type, latency_ms, tags FROM calls"
            f" WHERE ts >= ? AND run_id IN ({','.join('?' * len(chunk))})",
            [since - 3600, *chunk],  # the router's row ends after its tries: never long before them
        ):
            served[row[0]] = row[1:]
    out = []
    for parent, tries in groups.items():
        failed = [
            _tried(deployment, error_type, None, latency) for _, _, _, deployment, error_type, latency, _ in tries
        ]
        if parent in served:
            out.append(_entry(served[parent], failed))
        elif len({t["deployment"] for t in failed}) >= 2:
            last = tries[-1]  # every try failed: the call is shown at its last try
            out.append(_entry((last[0], last[1], last[2], None, "error", last[4], None, last[6]), failed))
    return out


def recent_failovers(conn: sqlite3.Connection, now: float, limit: int = 20) -> list[dict[str, Any]]:
    """The ``limit`` most recent calls that failed over, newest first, each with its failed tries in order."""
    found = _served(conn, limit) + _library(conn, now)
    found.sort(key=lambda f: (f["ts"], f["id"]), reverse=True)
    return found[:limit]
