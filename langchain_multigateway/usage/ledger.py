"""A durable record of every call: SQLite by default (stdlib ``sqlite3``, WAL mode).

One writer thread owns the connection. Producers (threads, asyncio tasks,
callback handlers) only append a record to a list and return, so they never wait
for the disk nor for a lock: a busy server's request path pays no commit. The
writer commits what has been added in one transaction every
``BATCH_SECONDS`` (50 ms), or at once when ``BATCH_RECORDS`` (256) are waiting; a
record SQLite refuses inside a batch is retried on its own (and kept in the
sidecar if it still fails), so one bad record never costs the others. A crash
(``kill -9``) loses at most the last 50 ms of records; :meth:`Ledger.flush`,
:meth:`Ledger.close`, every read, and interpreter exit write everything first.
Reads go through the same thread, which also lets ``":memory:"`` ledgers work.

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
import os
import queue
import sqlite3
import threading
import weakref
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from contextlib import suppress
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Literal, TypeVar

from langchain_multigateway._redact import redact_fields
from langchain_multigateway.usage._ledger_sql import (
    COLUMNS,
    FILTERS,
    GROUPS,
    TOTALS_FIELDS,
    Queued,
    records_sql,
    totals_sql,
    where,
)
from langchain_multigateway.usage._ledger_writer import (
    BATCH_RECORDS,
    STOP,
    WAKE,
    Writer,
    logger,
    stop_worker,
    worker,
)
from langchain_multigateway.usage._ledger_writer import BATCH_SECONDS as BATCH_SECONDS  # named in the docs here
from langchain_multigateway.usage.pricing import PriceTable
from langchain_multigateway.usage.records import CallRecord, CallRecorder

__all__ = ["Ledger", "LedgerCallbackHandler", "LedgerWriteError"]

T = TypeVar("T")
GroupBy = Literal["model", "day", "tag", "deployment", "provider", "outcome"]


class LedgerWriteError(RuntimeError):
    """Records that the ledger could neither commit nor keep in its sidecar file.

    Attributes:
        lost: How many records are gone.
        spill_path: The sidecar file (None for an in-memory ledger).
    """

    def __init__(self, message: str, *, lost: int, spill_path: str | None) -> None:
        super().__init__(message)
        self.lost = lost
        self.spill_path = spill_path


_OPEN_LEDGERS: weakref.WeakSet[Ledger] = weakref.WeakSet()
"""Every ledger of this process, so a forked child gives each its own writer (:meth:`Ledger._forked`)."""
_INHERITED: list[Writer] = []
"""In a forked child: the parent's writers, kept unused (see :meth:`Ledger._forked`)."""


def _after_fork_in_child() -> None:
    for ledger in list(_OPEN_LEDGERS):
        ledger._forked()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class Ledger:
    """Every call's record in SQLite: time, run id, deployment, provider, model, tokens,
    cost, latency, outcome (ok / error and its type), tags.

    Key init args:
        path: Database file (created if missing), or ``":memory:"``.
        busy_timeout: Seconds a record waits for a database locked by another
            connection (a backup, a long read, another process writing) before it
            is kept in the sidecar file instead. Default 30: long enough to ride
            out a backup or a ``VACUUM``, and callers never wait (records are queued).
        spill_path: The sidecar file (default ``<path>.spill.jsonl``). Records
            that cannot be committed go there, and are imported, once each, as
            soon as the database takes writes again or when a ledger next opens.

    Use ``with Ledger(path) as ledger:`` or call :meth:`close`; a ledger left open
    is flushed and closed when it is garbage-collected or the interpreter exits.
    Nothing is dropped silently: :meth:`close` warns about records left in the
    sidecar and raises :class:`LedgerWriteError` for any it could not keep at all.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] = ":memory:",
        *,
        busy_timeout: float = 30.0,
        spill_path: str | os.PathLike[str] | None = None,
    ) -> None:
        if busy_timeout < 0:
            msg = f"busy_timeout must be >= 0 seconds, got {busy_timeout}"
            raise ValueError(msg)
        self.path = str(path)
        self.busy_timeout = float(busy_timeout)
        memory = self.path == ":memory:" or self.path.startswith("file::memory:")
        if not memory:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self.spill_path: str | None = (
            str(spill_path) if spill_path is not None else None if memory else self.path + ".spill.jsonl"
        )
        self._closed = False
        self._orphaned = False
        """A forked child's copy whose writer is not started yet (see :meth:`_forked`)."""
        self._start_writer()
        _OPEN_LEDGERS.add(self)

    def _start_writer(self) -> None:
        """A writer thread with its own connection, and an empty queue for it."""
        self._jobs: queue.Queue[Any] = queue.Queue()
        # Records waiting for the writer: deque.append is atomic, so adding one takes no lock.
        self._pending: deque[Queued] = deque()
        ready: Future[Writer] = Future()
        self._thread = threading.Thread(
            target=worker,
            args=(self.path, self.busy_timeout, self.spill_path, self._jobs, self._pending, ready),
            name="multigateway-ledger",
            daemon=True,
        )
        self._thread.start()
        self._writer = ready.result()
        self._late_lock = threading.Lock()
        # The worker needs one busy_timeout for the record in hand, then spills the rest at once.
        wait = 2 * self.busy_timeout + 30
        self._finalizer = weakref.finalize(
            self, stop_worker, self._jobs, self._pending, self._thread, self._writer, wait
        )

    def _forked(self) -> None:
        """Right after ``fork``, in the child: the parent's writer thread did not come along.

        Only marked here (a child that never uses the ledger, or one about to ``exec``,
        starts nothing); its first use starts this process's own writer (:meth:`_adopt`).
        The parent's exit hook is dropped: the parent writes what it had queued.
        """
        self._finalizer.detach()
        self._fork_lock = threading.Lock()
        self._orphaned = not self._closed

    def _adopt(self) -> None:
        """Start this (forked) process's writer, with its own connection and an empty queue.

        The parent's connection is kept, unused and never closed: closing a connection
        carried across ``fork`` may checkpoint and delete the WAL file the parent still writes.
        """
        with self._fork_lock:
            if not self._orphaned:
                return
            _INHERITED.append(self._writer)
            try:
                self._start_writer()
            except Exception:
                self._closed = True  # its calls now say so, rather than queue records nobody writes
                logger.exception("ledger %s: no writer could be started in this forked process", self.path)
            self._orphaned = False

    # ------------------------------------------------------------------ writing
    def add(self, record: CallRecord, *, failed: Sequence[Mapping[str, Any]] = ()) -> None:
        """Queue one record for writing (returns at once; committed within ``BATCH_SECONDS``).

        ``failed``: the tries that failed before the call's last one, as the router's
        ``failed_attempts`` metadata gives them (``deployment``, ``error_type``,
        ``status_code``, ``latency_ms``); kept in ``call_attempts`` with the call.
        """
        entry = (record, tuple(failed))
        if self._orphaned:
            self._adopt()
        if self._closed:
            msg = "this Ledger is closed"
            raise RuntimeError(msg)
        pending = self._pending
        pending.append(entry)
        if self._closed:
            # close() began between the check and the append: the writer may have drained for the last time.
            self._keep_late()
        elif len(pending) == BATCH_RECORDS:
            self._jobs.put(WAKE)  # a full batch: commit now rather than at the next tick

    def _keep_late(self) -> None:
        """Once the writer stopped, put what it left queued in the sidecar (the next open imports it)."""
        self._thread.join(timeout=2 * self.busy_timeout + 30)
        if self._thread.is_alive():
            return  # still writing: it drains the queue before it stops, or close() reports what it left
        writer = self._writer
        with self._late_lock:
            lost = writer.lost
            while self._pending:
                record, failed = self._pending.popleft()
                writer.spill(redact_fields(record), failed)
            lost = writer.lost - lost
        if lost:
            msg = f"ledger {self.path}: {lost} record(s) added as it closed could not be kept"
            raise LedgerWriteError(msg, lost=lost, spill_path=self.spill_path)

    def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._orphaned:
            self._adopt()
        if self._closed:
            msg = "this Ledger is closed"
            raise RuntimeError(msg)
        future: Future[T] = Future()
        self._jobs.put((fn, future))
        return future.result()

    def flush(self) -> None:
        """Wait until every record queued so far is committed (or kept in the sidecar).

        Records waiting in the sidecar are imported first if the database takes writes.
        """
        writer = self._writer
        self._run(lambda conn: writer.import_spill(wait=False))

    @property
    def spilled(self) -> int:
        """Records this ledger kept in the sidecar file that are not imported yet."""
        return self._writer.spilled

    def close(self) -> None:
        """Write what is queued, then close the database.

        Raises:
            LedgerWriteError: Records could be neither committed nor kept in the
                sidecar file (or were still queued when the writer gave up).
        """
        if self._orphaned:
            self._adopt()
        if self._closed:
            return
        self._closed = True
        self._finalizer.detach()
        self._jobs.put(STOP)
        with suppress(LedgerWriteError):  # counted in writer.lost, reported below
            self._keep_late()  # the writer drains on its way out; a record added meanwhile goes to the sidecar
        writer = self._writer
        lost = writer.lost + (len(self._pending) if self._thread.is_alive() else 0)
        if writer.spilled:
            logger.warning(
                "ledger %s: %d record(s) could not be written to the database and are kept in %s;"
                " the next Ledger opened on this file imports them",
                self.path,
                writer.spilled,
                self.spill_path,
            )
        if lost:
            where = f"nor kept in {self.spill_path}" if self.spill_path else "(an in-memory ledger keeps no sidecar)"
            msg = f"ledger {self.path}: {lost} record(s) could not be written to the database {where}"
            raise LedgerWriteError(msg, lost=lost, spill_path=self.spill_path)

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ reading
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
        clause, params = where(since, until, model, tag, deployment, provider, outcome)
        sql = records_sql(clause, limit=limit is not None)
        if limit is not None:
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
        clause, params = where(*(filters.pop(k, None) for k in FILTERS))
        if filters:
            msg = f"unknown filters {sorted(filters)}"
            raise TypeError(msg)
        sql = f"SELECT COUNT(*) FROM calls c{clause}"
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
        """Requests, errors, tokens, cost, mean latency and response-cache hits per model, day, tag, deployment
        or provider."""
        if by not in GROUPS:
            msg = f"by must be one of {sorted(GROUPS)}, not {by!r}"
            raise ValueError(msg)
        self.flush()
        clause, params = where(since, until, model, tag, deployment, provider, None)
        sql = totals_sql(by, clause)

        def query(conn: sqlite3.Connection) -> list[dict[str, Any]]:
            rows = conn.execute(sql, params).fetchall()
            return [dict(zip(TOTALS_FIELDS, row, strict=True)) for row in rows]

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
