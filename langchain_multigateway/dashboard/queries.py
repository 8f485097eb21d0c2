"""What the dashboard reads from the ledger, aggregated in SQL on a read-only connection.

Each query opens its own read-only connection (``mode=ro``): the dashboard can never
write the ledger, and in WAL mode it reads beside the ledger's writer without
blocking it. Every figure is summed by SQLite over indexed time ranges, so the page
costs a few scans of the last 30 days whatever the ledger holds before them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

__all__ = ["GROUPS", "PERIODS", "LedgerReader", "LedgerUnavailableError", "period_starts"]

PERIODS = ("today", "7d", "30d")
"""Today (since UTC midnight), the last 7 days and the last 30 days."""
GROUPS = ("model", "deployment", "key", "tag")
"""Usage is broken down by these. ``key``: the server's virtual keys (tag ``key:<id>``);
``tag``: every other tag (``router:<name>``, a library user's own tags)."""

_DAY = 86400.0
_USAGE_FIELDS = ("requests", "errors", "input_tokens", "output_tokens", "total_tokens", "cost_usd", "unpriced")


class LedgerUnavailableError(RuntimeError):
    """The ledger file cannot be read (missing, not a ledger, or locked for too long)."""


def period_starts(now: float) -> dict[str, float]:
    """Epoch seconds each period starts at, for ``now``."""
    midnight = datetime.fromtimestamp(now, tz=timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    return {"today": midnight.timestamp(), "7d": now - 7 * _DAY, "30d": now - 30 * _DAY}


@dataclass(frozen=True)
class LedgerReader:
    """Aggregates over one ledger file (never writes it)."""

    path: Path
    busy_timeout: float = 5.0

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        if not self.path.exists():
            msg = f"no ledger at {self.path}: pass the path the gateway records to (--ledger FILE)"
            raise LedgerUnavailableError(msg)
        try:
            conn = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, timeout=self.busy_timeout)
        except sqlite3.Error as exc:
            raise LedgerUnavailableError(f"cannot open the ledger {self.path}: {exc}") from None
        try:
            yield conn
        except sqlite3.DatabaseError as exc:
            raise LedgerUnavailableError(f"cannot read the ledger {self.path}: {exc}") from None
        finally:
            conn.close()

    def _has_table(self, conn: sqlite3.Connection, name: str) -> bool:
        found = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone()
        return found is not None

    # ------------------------------------------------------------------ traffic
    def traffic(self, now: float, minutes: int = 60) -> list[dict[str, Any]]:
        """Requests per minute (epoch minute), deployment and outcome over the last ``minutes``."""
        since = (int(now // 60) - minutes + 1) * 60
        sql = (
            "SELECT CAST(ts / 60 AS INTEGER) AS minute, COALESCE(deployment, '(none)'), outcome, COUNT(*)"
            " FROM calls WHERE ts >= ? GROUP BY minute, 2, 3 ORDER BY minute, 2, 3"
        )
        with self._connect() as conn:
            rows = conn.execute(sql, (since,)).fetchall()
        return [{"minute": m, "deployment": d, "outcome": o, "requests": n} for m, d, o, n in rows]

    def failovers(self, limit: int = 20) -> list[dict[str, Any]]:
        """The most recent calls that had failed tries, newest first, each with its tries in order."""
        with self._connect() as conn:
            if not self._has_table(conn, "call_attempts"):  # a ledger older than failed-try recording
                return []
            calls = conn.execute(
                "SELECT c.id, c.ts, c.model, c.deployment, c.outcome, c.error_type, c.latency_ms FROM calls c"
                " WHERE c.id IN (SELECT DISTINCT call_id FROM call_attempts ORDER BY call_id DESC LIMIT ?)"
                " ORDER BY c.id DESC",
                (limit,),
            ).fetchall()
            ids = [row[0] for row in calls]
            marks = ",".join("?" * len(ids))
            tries = conn.execute(
                "SELECT call_id, deployment, error_type, status_code, latency_ms FROM call_attempts"
                f" WHERE call_id IN ({marks}) ORDER BY call_id, rowid",
                ids,
            ).fetchall()
        by_call: dict[int, list[dict[str, Any]]] = {i: [] for i in ids}
        for call_id, deployment, error_type, status, latency in tries:
            by_call[call_id].append(
                {"deployment": deployment, "error_type": error_type, "status_code": status, "latency_ms": latency}
            )
        return [
            {
                "id": cid,
                "ts": ts,
                "model": model,
                "served_by": deployment,
                "outcome": outcome,
                "error_type": error_type,
                "latency_ms": latency,
                "failed": by_call[cid],
            }
            for cid, ts, model, deployment, outcome, error_type, latency in calls
        ]

    # ------------------------------------------------------------------ usage and cost
    def usage(self, now: float) -> dict[str, dict[str, list[dict[str, Any]]]]:
        """``{group: {period: rows}}``: requests, errors, tokens and USD per model, deployment, key and tag.

        ``cost_usd`` sums the priced calls only and is None when none was priced;
        ``unpriced`` counts the calls whose price is unknown (shown as "n/a", never 0).
        One pass per group over the last 30 days: each period is a conditional sum.
        """
        starts = period_starts(now)
        first = min(starts.values())
        sums = []
        params: list[float] = []
        for period in PERIODS:
            inside = "c.ts >= ?"
            params.extend([starts[period]] * 7)
            sums.append(
                f"SUM({inside}), SUM(CASE WHEN {inside} THEN c.outcome = 'error' END),"
                f" SUM(CASE WHEN {inside} THEN c.input_tokens END), SUM(CASE WHEN {inside} THEN c.output_tokens END),"
                f" SUM(CASE WHEN {inside} THEN c.total_tokens END), SUM(CASE WHEN {inside} THEN c.cost_usd END),"
                f" SUM(CASE WHEN {inside} THEN c.cost_usd IS NULL END)"
            )
        columns = ", ".join(sums)
        sources = {
            "model": ("COALESCE(c.model, '(unknown)')", "calls c", ""),
            "deployment": ("COALESCE(c.deployment, '(none)')", "calls c", ""),
            "key": ("substr(t.tag, 5)", "calls c JOIN call_tags t ON t.call_id = c.id", " AND t.tag LIKE 'key:%'"),
            "tag": ("t.tag", "calls c JOIN call_tags t ON t.call_id = c.id", " AND t.tag NOT LIKE 'key:%'"),
        }
        out: dict[str, dict[str, list[dict[str, Any]]]] = {}
        with self._connect() as conn:
            for group in GROUPS:
                key, source, extra = sources[group]
                sql = f"SELECT {key} AS k, {columns} FROM {source} WHERE c.ts >= ?{extra} GROUP BY k ORDER BY k"
                rows = conn.execute(sql, [*params, first]).fetchall()
                out[group] = {p: [] for p in PERIODS}
                for row in rows:
                    for i, period in enumerate(PERIODS):
                        values = row[1 + i * 7 : 8 + i * 7]
                        if not values[0]:
                            continue
                        entry = dict(zip(_USAGE_FIELDS, values, strict=True))
                        entry = {name: (value or 0) for name, value in entry.items()}
                        entry["cost_usd"] = values[5]  # None stays None: nothing priced
                        out[group][period].append({"key": row[0], **entry})
        return out

    def spent(self, tag: str, since: float) -> float:
        """USD recorded under ``tag`` since ``since`` (priced calls only)."""
        sql = "SELECT SUM(c.cost_usd) FROM calls c JOIN call_tags t ON t.call_id = c.id WHERE t.tag = ? AND c.ts >= ?"
        with self._connect() as conn:
            value = conn.execute(sql, (tag, since)).fetchone()[0]
        return float(value or 0.0)

    def row_count(self) -> int:
        """Calls recorded in all (shown in the page's header)."""
        with self._connect() as conn:
            return int(conn.execute("SELECT COUNT(*) FROM calls").fetchone()[0])
