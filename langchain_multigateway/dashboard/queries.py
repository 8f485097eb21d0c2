"""What the dashboard reads from the ledger, aggregated in SQL on a read-only connection.

Each query opens its own read-only connection (``mode=ro``): the dashboard can never
write the ledger, and in WAL mode it reads beside the ledger's writer without
blocking it. Every figure is summed by SQLite over indexed time ranges (``calls.ts``),
so what the ledger holds before the last 30 days costs nothing; the sums of the days
before today are kept between pages while no row is added to them.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from langchain_multigateway.dashboard.failovers import recent_failovers

__all__ = ["GROUPS", "PERIODS", "LedgerReader", "LedgerUnavailableError", "period_starts"]

PERIODS = ("today", "7d", "30d")
"""Today, and the last 7 and 30 days counting today (UTC calendar days)."""
GROUPS = ("model", "deployment", "key", "tag")
"""Usage is broken down by these. ``key``: the server's virtual keys (tag ``key:<id>``);
``tag``: every other tag (``router:<name>``, a library user's own tags)."""

_DAY = 86400.0
_USAGE_FIELDS = ("requests", "errors", "input_tokens", "output_tokens", "total_tokens", "cost_usd", "unpriced")


class LedgerUnavailableError(RuntimeError):
    """The ledger file cannot be read (missing, not a ledger, or locked for too long)."""


def period_starts(now: float) -> dict[str, float]:
    """Epoch seconds each period starts at, for ``now``: UTC midnight today, 6 and 29 days before it."""
    midnight = datetime.fromtimestamp(now, tz=UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    today = midnight.timestamp()
    return {"today": today, "7d": today - 6 * _DAY, "30d": today - 29 * _DAY}


_SUMS = (
    "COUNT(*), SUM(c.outcome = 'error'), SUM(c.input_tokens), SUM(c.output_tokens), SUM(c.total_tokens),"
    " SUM(c.cost_usd), SUM(c.cost_usd IS NULL)"
)


def _day_sums(conn: sqlite3.Connection, since: float, until: float | None) -> list[tuple[Any, ...]]:
    """``(day, group, name, *figures)`` for the calls in ``[since, until)``: two scans, one per table."""
    where, params = ("c.ts >= ?", [since]) if until is None else ("c.ts >= ? AND c.ts < ?", [since, until])
    by_call = conn.execute(
        f"SELECT c.day, COALESCE(c.model, '(unknown)'), COALESCE(c.deployment, '(none)'), {_SUMS}"
        f" FROM calls c WHERE {where} GROUP BY 1, 2, 3",
        params,
    ).fetchall()
    by_tag = conn.execute(
        f"SELECT c.day, t.tag, {_SUMS} FROM calls c JOIN call_tags t ON t.call_id = c.id WHERE {where} GROUP BY 1, 2",
        params,
    ).fetchall()
    out: list[tuple[Any, ...]] = []
    for day, model, deployment, *figures in by_call:
        out.append((day, "model", model, *figures))
        out.append((day, "deployment", deployment, *figures))
    for day, tag, *figures in by_tag:
        out.append((day, "key", tag[4:], *figures) if tag.startswith("key:") else (day, "tag", tag, *figures))
    return out


_Totals = dict[tuple[str, str], dict[str, list[Any]]]
"""``{(group, period): {name: figures}}``."""


def _fold(totals: _Totals, day_sums: list[tuple[Any, ...]], since: dict[str, str]) -> _Totals:
    """Add ``_day_sums`` rows to ``totals``, each to every period its day is in."""
    for day, group, name, *figures in day_sums:
        for period in PERIODS:
            if day >= since[period]:
                _add(totals.setdefault((group, period), {}).setdefault(name, [0, 0, 0, 0, 0, None, 0]), figures)
    return totals


def _copy(totals: _Totals) -> _Totals:
    return {key: {name: list(figures) for name, figures in names.items()} for key, names in totals.items()}


def _add(total: list[Any], figures: list[Any]) -> None:
    """Add one day's figures to a running total (a cost stays None until something was priced)."""
    for i, value in enumerate(figures):
        if value is not None:
            total[i] = value if total[i] is None else total[i] + value


class LedgerReader:
    """Aggregates over one ledger file (never writes it); keep one per file, for its cache of past days."""

    def __init__(self, path: Path, busy_timeout: float = 5.0) -> None:
        self.path = path
        self.busy_timeout = busy_timeout
        self._lock = threading.Lock()
        self._past_key: tuple[Any, ...] | None = None
        self._past: _Totals = {}
        """The days before today, summed per group, period and name (see :meth:`usage`)."""

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

    def failovers(self, now: float, limit: int = 20) -> list[dict[str, Any]]:
        """The most recent calls that failed over, newest first, each with its failed tries (see ``failovers``)."""
        with self._connect() as conn:
            return recent_failovers(conn, now, limit)

    # ------------------------------------------------------------------ usage and cost
    def usage(self, now: float) -> dict[str, dict[str, list[dict[str, Any]]]]:
        """``{group: {period: rows}}``: requests, errors, tokens and USD per model, deployment, key and tag.

        ``cost_usd`` sums the priced calls only and is None when none was priced;
        ``unpriced`` counts the calls whose price is unknown (shown as "n/a", never 0).
        SQL sums the calls per UTC day and name; the days before today are kept until
        a row is added to them (checked each time by the count and highest id of their
        rows, an index-only read), so a page costs a scan of today's calls only.
        """
        starts = period_starts(now)
        today, first = starts["today"], starts["30d"]
        days = {p: datetime.fromtimestamp(starts[p], tz=UTC).strftime("%Y-%m-%d") for p in PERIODS}
        with self._connect() as conn:
            fingerprint = conn.execute(
                "SELECT COUNT(*), MAX(id) FROM calls WHERE ts >= ? AND ts < ?", (first, today)
            ).fetchone()
            with self._lock:
                past = self._past if self._past_key == (first, today, fingerprint) else None
            if past is None:
                past = _fold({}, _day_sums(conn, first, today), days)
                with self._lock:
                    self._past_key, self._past = (first, today, fingerprint), past
            totals = _fold(_copy(past), _day_sums(conn, today, None), days)
        return {
            group: {
                period: [
                    {"key": name, **dict(zip(_USAGE_FIELDS, figures, strict=True))}
                    for name, figures in sorted(totals.get((group, period), {}).items())
                ]
                for period in PERIODS
            }
            for group in GROUPS
        }

    def spent(self, tag: str, since: float) -> tuple[float, int]:
        """USD recorded under ``tag`` since ``since`` (priced calls only), and how many calls had no price."""
        sql = (
            "SELECT SUM(c.cost_usd), SUM(c.cost_usd IS NULL) FROM calls c JOIN call_tags t ON t.call_id = c.id"
            " WHERE t.tag = ? AND c.ts >= ?"
        )
        with self._connect() as conn:
            value, unpriced = conn.execute(sql, (tag, since)).fetchone()
        return float(value or 0.0), int(unpriced or 0)

    def row_count(self) -> int:
        """Calls recorded in all (shown in the page's header)."""
        with self._connect() as conn:
            return int(conn.execute("SELECT COUNT(*) FROM calls").fetchone()[0])
