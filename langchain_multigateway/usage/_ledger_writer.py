"""The ledger's writer thread: the one connection, batched commits, and the sidecar file.

Producers append ``(record, failed)`` to a deque (atomic, no lock) and return; the thread
(:func:`worker`) wakes every ``BATCH_SECONDS``, or on ``WAKE`` when a full batch waits, commits
what was appended ``BATCH_RECORDS`` per transaction, then runs the queued job (a read, a flush,
the stop). What SQLite will not take goes to the sidecar (``<path>.spill.jsonl``), imported
once per line when the database takes writes again.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import sqlite3
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator, Mapping
from concurrent.futures import Future
from contextlib import contextmanager
from typing import IO, Any

from langchain_multigateway._redact import redact_fields
from langchain_multigateway.usage._ledger_sql import Queued, Spilled, connect, insert, insert_spilled
from langchain_multigateway.usage.records import CallRecord

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

# One logger for the whole ledger, whichever of its modules speaks.
logger = logging.getLogger("langchain_multigateway.usage.ledger")

STOP = object()
"""A job: write what is queued, then close the connection and end the thread."""
WAKE = object()
"""A job: a full batch is waiting, commit it now rather than at the next tick."""
BATCH_SECONDS = 0.05
"""The longest a record waits before it is committed (with the others added meanwhile)."""
BATCH_RECORDS = 256
"""Records that make the writer commit at once instead of waiting for ``BATCH_SECONDS``."""
_IMPORT_RETRY_SECONDS = 1.0


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


class Writer:
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
        self.conn = connect(path, busy_timeout)
        self.import_spill(wait=True)

    def _spill_pending(self) -> bool:
        return self.spill_path is not None and os.path.exists(self.spill_path)

    def write(self, record: CallRecord, failed: tuple[Mapping[str, Any], ...] = ()) -> None:
        record = redact_fields(record)  # no credential in a row, on this thread, off the call path
        if self._spill_pending() and not self._try_import():
            self.spill(record, failed)
            return
        try:
            insert(self.conn, [(record, failed)])
        except Exception as exc:  # a locked or broken database, or a value SQLite cannot bind
            logger.warning("ledger %s: could not write a record: %s", self.path, exc)
            self.spill(record, failed)

    def write_batch(self, batch: list[Queued]) -> None:
        """Commit ``batch`` in one transaction; if that fails, each record on its own (or to the sidecar)."""
        if len(batch) > 1 and not self._spill_pending():
            try:
                insert(self.conn, [(redact_fields(record), failed) for record, failed in batch])
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

    def spill(self, record: CallRecord, failed: tuple[Mapping[str, Any], ...] = ()) -> None:
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
                bad += insert_spilled(self.conn, entries)
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


def _read_spill(text: str) -> tuple[list[Spilled], list[str]]:
    entries: list[Spilled] = []
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


def worker(
    path: str,
    busy_timeout: float,
    spill_path: str | None,
    jobs: queue.Queue[Any],
    pending: deque[Queued],
    ready: Future[Writer],
) -> None:
    """The writer thread: open the connection (``ready`` carries it, or why it failed), then at each
    job or every ``BATCH_SECONDS`` commit what producers appended before running the job."""
    try:
        writer = Writer(path, busy_timeout, spill_path)
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
            if job is None or job is WAKE:
                continue
            if job is STOP:
                break
            fn, future = job
            try:
                future.set_result(fn(writer.conn))
            except Exception as exc:
                future.set_exception(exc)
    finally:
        _write_pending(writer, pending)
        writer.close()


def _write_pending(writer: Writer, pending: deque[Queued]) -> None:
    """Write what producers appended so far, ``BATCH_RECORDS`` per transaction."""
    while pending:
        batch: list[Queued] = []
        while pending and len(batch) < BATCH_RECORDS:
            batch.append(pending.popleft())
        writer.write_batch(batch)


def stop_worker(
    jobs: queue.Queue[Any], pending: deque[Queued], thread: threading.Thread, writer: Writer, wait: float
) -> None:
    """A ledger nobody closed (garbage-collected, or the interpreter exiting): stop its writer, say what was lost."""
    if thread.is_alive():
        jobs.put(STOP)
        thread.join(timeout=wait)
    unwritten = writer.lost + (len(pending) if thread.is_alive() else 0)
    if unwritten:
        logger.error("ledger %s: %d record(s) could not be written and are lost", writer.path, unwritten)
