"""Budget spend in SQLite (the usage ledger's file by default): shared by the processes of one
host, and kept across restarts, so a daily budget is not reset by a redeploy.

Each reservation is judged and written inside one ``BEGIN IMMEDIATE`` transaction, so two
processes cannot both pass on the same remaining spend.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from langchain_multigateway.state.spend import (
    RESERVATION_LEASE,
    Hold,
    SpendStore,
    SpendStoreError,
    SpendTotals,
    buckets,
    judge,
    nano,
)

__all__ = ["SQLiteSpendStore", "default_path"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS budget_spend (
    budget TEXT NOT NULL, bucket TEXT NOT NULL, tokens INTEGER NOT NULL DEFAULT 0, nano_usd INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (budget, bucket));
CREATE TABLE IF NOT EXISTS budget_reservations (
    budget TEXT NOT NULL, key TEXT NOT NULL, tokens INTEGER NOT NULL, nano_usd INTEGER NOT NULL, expires REAL NOT NULL,
    PRIMARY KEY (budget, key));
"""


def default_path() -> str:
    """``$MULTIGATEWAY_LEDGER``, else ``~/.multigateway/usage.sqlite3`` (the usage ledger's file)."""
    return os.environ.get("MULTIGATEWAY_LEDGER") or str(Path.home() / ".multigateway" / "usage.sqlite3")


class SQLiteSpendStore(SpendStore):
    """Budget spend in a SQLite file (see :class:`~langchain_multigateway.state.spend.SpendStore`).

    Args:
        path: The database file (the usage ledger's by default; its own tables).
        busy_timeout: Seconds to wait for another process's transaction.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *, busy_timeout: float = 5.0) -> None:
        self.path = str(path) if path is not None else default_path()
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, timeout=busy_timeout, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.executescript(_SCHEMA)

    def _read(self, budget: str, summed: list[str], now: float) -> SpendTotals:
        conn = self._conn
        conn.execute("DELETE FROM budget_reservations WHERE budget = ? AND expires <= ?", (budget, now))
        reserved = conn.execute(
            "SELECT COALESCE(SUM(tokens), 0), COALESCE(SUM(nano_usd), 0) FROM budget_reservations WHERE budget = ?",
            (budget,),
        ).fetchone()
        marks = ",".join("?" * len(summed))
        spent = conn.execute(
            "SELECT COALESCE(SUM(tokens), 0), COALESCE(SUM(nano_usd), 0) FROM budget_spend "
            f"WHERE budget = ? AND bucket IN ({marks})",
            (budget, *summed),
        ).fetchone()
        return SpendTotals(int(spent[0]), spent[1] / 1e9, int(reserved[0]), reserved[1] / 1e9)

    def _reserve(self, budget: str, period: str | None, hold: Hold) -> tuple[str | None, SpendTotals]:
        now = time.time()
        with self._lock, self._transaction(budget):
            totals = self._read(budget, buckets(period, now)[1], now)
            over = judge(totals, hold)
            if over is None:
                self._conn.execute(
                    "INSERT OR REPLACE INTO budget_reservations VALUES (?, ?, ?, ?, ?)",
                    (budget, hold.key, hold.tokens, nano(hold.cost), now + RESERVATION_LEASE),
                )
        return over, totals

    @contextmanager
    def _transaction(self, budget: str) -> Iterator[None]:
        """One ``BEGIN IMMEDIATE`` transaction; SQLite failures become :class:`SpendStoreError`."""
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise SpendStoreError(f"budget {budget!r}: its SQLite store {self.path} failed ({exc})") from exc
        try:
            yield
            self._conn.execute("COMMIT")
        except BaseException as exc:
            self._conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise SpendStoreError(f"budget {budget!r}: its SQLite store {self.path} failed ({exc})") from exc
            raise

    def settle(self, budget: str, period: str | None, key: str, tokens: int, cost: float) -> None:
        with self._lock, self._transaction(budget):
            self._conn.execute("DELETE FROM budget_reservations WHERE budget = ? AND key = ?", (budget, key))
            self._conn.execute(
                "INSERT INTO budget_spend VALUES (?, ?, ?, ?) ON CONFLICT (budget, bucket) DO UPDATE SET "
                "tokens = tokens + excluded.tokens, nano_usd = nano_usd + excluded.nano_usd",
                (budget, buckets(period)[0], int(tokens), nano(cost)),
            )

    def totals(self, budget: str, period: str | None) -> SpendTotals:
        now = time.time()
        with self._lock, self._transaction(budget):
            return self._read(budget, buckets(period, now)[1], now)

    def reset(self, budget: str, period: str | None) -> None:
        summed = buckets(period)[1]
        with self._lock:
            marks = ",".join("?" * len(summed))
            self._conn.execute(f"DELETE FROM budget_spend WHERE budget = ? AND bucket IN ({marks})", (budget, *summed))

    def close(self) -> None:
        with self._lock:
            self._conn.close()
