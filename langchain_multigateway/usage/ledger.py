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
import logging
import os
import queue
import sqlite3
import threading
import time
import uuid
import weakref
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from contextlib import contextmanager, suppress
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any, Literal, TypeVar

from langchain_multigateway._redact import redact_fields
from langchain_multigateway.usage.pricing import PriceTable
from langchain_multigateway.usage.records import CallRecord, CallRecorder

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["Ledger", "LedgerCallbackHandler", "LedgerWriteError"]

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

_GROUPS: dict[str, str] = {
    "model": "c.model",
    "day": "c.day",
    "deployment": "c.deployment",
    "provider": "c.provider",
    "outcome": "c.outcome",
    "tag": "t.tag",
}

_STOP = object()
_WAKE = object()
BATCH_SECONDS = 0.05
"""The longest a record waits before it is committed (with the others added meanwhile)."""
BATCH_RECORDS = 256
"""Records that make the writer commit at once instead of waiting for ``BATCH_SECONDS``."""
_IMPORT_RETRY_SECONDS = 1.0
_IMPORTED = "CREATE TABLE IF NOT EXISTS spill_imports (spill_id TEXT PRIMARY KEY)"


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


def _epoch(value: datetime | float | None) -> float | None:
    if value is None or isinstance(value, (int, float)):
        return value
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.timestamp()


@contextmanager
def _locked(handle: IO[str]) -> Iterator[None]:
    """Hold an exclusive lock on the sidecar (other processes append to it too)."""
    if fcntl is None:  # pragma: no cover - Windows: one process per ledger file
        yield
        return
    fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


class _Writer:
    """The writer thread's side: the connection, the sidecar, and what could not be written.

    A record waits for the database up to ``busy_timeout`` (SQLite's own busy
    handler). If it still cannot be committed it goes to the sidecar, and so do the
    records after it (keeping their order) until the sidecar can be imported, which
    is tried, without waiting, before each later record and when the ledger opens.
    """

    def __init__(self, path: str, busy_timeout: float, spill_path: str | None) -> None:
        self.path = path
        self.busy_timeout = busy_timeout
        self.spill_path = spill_path
        self.spilled = 0
        """Records this ledger put in the sidecar that are still there."""
        self.lost = 0
        self._next_import = 0.0
        self.conn = sqlite3.connect(path, timeout=busy_timeout, check_same_thread=False, isolation_level=None)
        try:
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
            self.conn.executescript(_SCHEMA + _IMPORTED + ";")
            _add_served_model_column(self.conn)
        except BaseException:
            self.conn.close()
            raise
        self.import_spill(wait=True)

    def _spill_pending(self) -> bool:
        return self.spill_path is not None and os.path.exists(self.spill_path)

    def write(self, record: CallRecord, failed: tuple[Mapping[str, Any], ...] = ()) -> None:
        record = redact_fields(record)  # no credential in a row, on this thread, off the call path
        if self._spill_pending() and not self._try_import():
            self._spill(record, failed)
            return
        try:
            _insert(self.conn, [(record, failed)])
        except Exception as exc:  # a locked or broken database, or a value SQLite cannot bind
            logger.warning("ledger %s: could not write a record: %s", self.path, exc)
            self._spill(record, failed)

    def write_batch(self, batch: list[_Queued]) -> None:
        """Commit ``batch`` in one transaction; if that fails, each record on its own (or to the sidecar)."""
        if len(batch) > 1 and not self._spill_pending():
            try:
                _insert(self.conn, [(redact_fields(record), failed) for record, failed in batch])
                return
            except Exception as exc:  # one record SQLite refuses, or a locked database: find out which
                logger.debug("ledger %s: a batch of %d failed (%s); writing one by one", self.path, len(batch), exc)
        for record, failed in batch:
            try:
                self.write(record, failed)
            except Exception:  # never let one record stop the others
                self.lost += 1
                logger.exception("ledger %s: a record was lost", self.path)

    def _try_import(self) -> bool:
        """Import the sidecar without waiting, at most once a second while the database stays locked
        (each try reads the whole sidecar)."""
        now = time.monotonic()
        if now < self._next_import:
            return False
        if self.import_spill(wait=False):
            return True
        self._next_import = now + _IMPORT_RETRY_SECONDS
        return False

    def _spill(self, record: CallRecord, failed: tuple[Mapping[str, Any], ...] = ()) -> None:
        if self.spill_path is None:
            self.lost += 1
            logger.error("ledger %s: a record was lost (an in-memory ledger has no sidecar file)", self.path)
            return
        entry = {"spill_id": uuid.uuid4().hex, "record": record.to_dict(), "failed": [dict(a) for a in failed]}
        line = json.dumps(entry, default=str) + "\n"
        try:
            while True:
                with open(self.spill_path, "a", encoding="utf-8") as handle, _locked(handle):
                    # An import (another ledger, maybe another process) may have removed the file
                    # between our open and our lock: a line written then would go to a deleted file.
                    if _is_current(handle, self.spill_path):
                        handle.write(line)
                        break
        except OSError as exc:
            self.lost += 1
            logger.error(
                "ledger %s: a record was lost: the sidecar %s cannot be written: %s", self.path, self.spill_path, exc
            )
            return
        self.spilled += 1

    def import_spill(self, *, wait: bool) -> bool:
        """Move the sidecar's records into the database; True when none is left."""
        if not self._spill_pending():
            return True
        assert self.spill_path is not None
        if not wait:
            self.conn.execute("PRAGMA busy_timeout = 0")
        try:
            # errors="replace": a corrupt byte spoils its own line (set aside below), not the whole import.
            with open(self.spill_path, "r+", encoding="utf-8", errors="replace") as handle, _locked(handle):
                entries, bad = _read_spill(handle.read())
                bad += _insert_spilled(self.conn, entries)
                if bad:
                    with open(self.spill_path + ".rejected", "a", encoding="utf-8") as rejected:
                        rejected.writelines(line + "\n" for line in bad)
                    logger.error(
                        "ledger %s: %d line(s) of %s that cannot be read or stored moved to %s.rejected",
                        self.path,
                        len(bad),
                        self.spill_path,
                        self.spill_path,
                    )
                os.unlink(self.spill_path)
        except FileNotFoundError:
            return True
        except (sqlite3.Error, OSError) as exc:
            if wait:
                logger.warning("ledger %s: the sidecar %s stays for later: %s", self.path, self.spill_path, exc)
            return False
        finally:
            if not wait:
                self.conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
        logger.info("ledger %s: imported %d record(s) from %s", self.path, len(entries), self.spill_path)
        self.spilled = 0
        return True

    def close(self) -> None:
        self.import_spill(wait=False)
        self.conn.close()


def _is_current(handle: IO[str], path: str) -> bool:
    """Whether ``handle`` is still the file at ``path`` (not one an import removed)."""
    try:
        found = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(handle.fileno())
    return (mine.st_dev, mine.st_ino) == (found.st_dev, found.st_ino)


def _add_served_model_column(conn: sqlite3.Connection) -> None:
    """Ledgers written before ``served_model`` existed get the column (empty for old rows)."""
    names = {row[1] for row in conn.execute("PRAGMA table_info(calls)")}
    if "served_model" not in names:
        conn.execute("ALTER TABLE calls ADD COLUMN served_model TEXT")
    if "cache" not in names:  # a response-cache hit (exact / semantic) or miss, since issue 16
        conn.execute("ALTER TABLE calls ADD COLUMN cache TEXT")


_Spilled = tuple[str, CallRecord, tuple[Mapping[str, Any], ...], str]
_Queued = tuple[CallRecord, tuple[Mapping[str, Any], ...]]
_OPEN_LEDGERS: weakref.WeakSet[Ledger] = weakref.WeakSet()
"""Every ledger of this process, so a forked child gives each its own writer (:meth:`Ledger._forked`)."""
_INHERITED: list[_Writer] = []
"""In a forked child: the parent's writers, kept unused (see :meth:`Ledger._forked`)."""


def _read_spill(text: str) -> tuple[list[_Spilled], list[str]]:
    entries: list[_Spilled] = []
    bad: list[str] = []
    for line in text.split("\n"):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            fields = dict(data["record"])
            fields["tags"] = tuple(fields.get("tags") or ())
            failed = tuple(dict(a) for a in data.get("failed") or ())
            entries.append((str(data["spill_id"]), CallRecord(**fields), failed, line))
        except (ValueError, KeyError, TypeError):
            bad.append(line)
    return entries, bad


def _insert_spilled(conn: sqlite3.Connection, entries: list[_Spilled]) -> list[str]:
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


def _worker(
    path: str,
    busy_timeout: float,
    spill_path: str | None,
    jobs: queue.Queue[Any],
    pending: deque[_Queued],
    ready: Future[_Writer],
) -> None:
    try:
        writer = _Writer(path, busy_timeout, spill_path)
    except BaseException as exc:
        ready.set_exception(exc)
        return
    ready.set_result(writer)
    try:
        while True:
            try:
                job = jobs.get(timeout=BATCH_SECONDS)
            except queue.Empty:
                job = None
            _write_pending(writer, pending)  # before any read or the stop: they see every record added
            if job is None or job is _WAKE:
                continue
            if job is _STOP:
                break
            fn, future = job
            try:
                future.set_result(fn(writer.conn))
            except Exception as exc:
                future.set_exception(exc)
    finally:
        _write_pending(writer, pending)
        writer.close()


def _write_pending(writer: _Writer, pending: deque[_Queued]) -> None:
    """Write what producers appended so far, ``BATCH_RECORDS`` per transaction."""
    while pending:
        batch: list[_Queued] = []
        while pending and len(batch) < BATCH_RECORDS:
            batch.append(pending.popleft())
        writer.write_batch(batch)


def _insert(conn: sqlite3.Connection, batch: Sequence[_Queued]) -> None:
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
    day = datetime.fromtimestamp(record.ended_at, tz=timezone.utc).strftime("%Y-%m-%d")
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


def _stop_worker(
    jobs: queue.Queue[Any], pending: deque[_Queued], thread: threading.Thread, writer: _Writer, wait: float
) -> None:
    if thread.is_alive():
        jobs.put(_STOP)
        thread.join(timeout=wait)
    unwritten = writer.lost + (len(pending) if thread.is_alive() else 0)
    if unwritten:
        logger.error("ledger %s: %d record(s) could not be written and are lost", writer.path, unwritten)


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
        self._pending: deque[_Queued] = deque()
        ready: Future[_Writer] = Future()
        self._thread = threading.Thread(
            target=_worker,
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
            self, _stop_worker, self._jobs, self._pending, self._thread, self._writer, wait
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
            self._jobs.put(_WAKE)  # a full batch: commit now rather than at the next tick

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
                writer._spill(redact_fields(record), failed)
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
        self._jobs.put(_STOP)
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
        """Requests, errors, tokens, cost, mean latency and response-cache hits per model, day, tag, deployment
        or provider."""
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
            f" SUM(c.cost_usd IS NULL), AVG(c.latency_ms), SUM(c.cache IN ('exact', 'semantic'))"
            f" FROM calls c{join}{where}"
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
            "cache_hits",
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
