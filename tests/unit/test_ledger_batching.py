"""Ledger batching: records are committed many per transaction by the writer thread, and none is lost.

A producer only appends; the writer commits every ``BATCH_SECONDS`` or every
``BATCH_RECORDS``. What must hold whatever the timing: every record added before
``close`` (or a read) is in the database after it, in order, and a record SQLite
refuses inside a batch costs only itself (it goes to the sidecar).
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import uuid
import warnings
from pathlib import Path

import pytest

from langchain_multigateway.usage import CallRecord, Ledger
from langchain_multigateway.usage.ledger import BATCH_RECORDS


def record(n: int, model: object = "gpt-4o-mini") -> CallRecord:
    now = time.time()
    return CallRecord(
        run_id=f"run-{n}-{uuid.uuid4().hex[:6]}",
        started_at=now - 0.01,
        ended_at=now,
        latency_ms=10.0,
        provider="openai",
        model=model,  # type: ignore[arg-type]
        deployment="primary",
        outcome="ok",
        input_tokens=3,
        output_tokens=2,
        total_tokens=5,
        cost_usd=1e-6,
        has_usage=True,
        tags=("key:team-a",),
    )


def rows_in_file(path: Path) -> list[str]:
    """The run ids another connection sees (what a crash would leave behind)."""
    with sqlite3.connect(path) as conn:
        return [r[0] for r in conn.execute("SELECT run_id FROM calls ORDER BY id")]


def test_every_record_added_before_close_is_committed_in_order(tmp_path: Path) -> None:
    path = tmp_path / "batched.sqlite3"
    ledger = Ledger(path)
    added = [record(n) for n in range(3 * BATCH_RECORDS + 17)]  # several full batches and a partial one
    for r in added:
        ledger.add(r)
    ledger.close()
    assert rows_in_file(path) == [r.run_id for r in added]


def test_a_read_sees_every_record_added_before_it(tmp_path: Path) -> None:
    with Ledger(tmp_path / "read.sqlite3") as ledger:
        for n in range(40):
            ledger.add(record(n))
        assert ledger.count() == 40  # no flush called: the read drains what is waiting first
        ledger.add(record(40))
        assert ledger.count(tag="key:team-a") == 41


def test_a_record_sqlite_refuses_in_a_batch_costs_only_itself(tmp_path: Path) -> None:
    path = tmp_path / "bad.sqlite3"
    ledger = Ledger(path)
    good = [record(n) for n in range(60)]
    for r in good[:30]:
        ledger.add(r)
    ledger.add(record(999, model=object()))  # no SQLite type: the batch's transaction fails
    for r in good[30:]:
        ledger.add(r)
    ledger.close()
    committed = rows_in_file(path)
    assert [c for c in committed if not c.startswith("run-999")] == [r.run_id for r in good]
    # The refused record was kept in the sidecar (its model written as text), and imported by the next ledger.
    with Ledger(path) as reopened:
        assert reopened.count() == 61


def test_records_from_many_threads_at_once_are_all_committed(tmp_path: Path) -> None:
    path = tmp_path / "threads.sqlite3"
    ledger = Ledger(path)
    barrier = threading.Barrier(6)

    def produce(t: int) -> None:
        barrier.wait()
        for n in range(500):
            ledger.add(record(t * 10_000 + n))

    threads = [threading.Thread(target=produce, args=(t,)) for t in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ledger.close()
    ids = rows_in_file(path)
    assert len(ids) == len(set(ids)) == 6 * 500


class _SlowTries(list[dict[str, object]]):
    """A caller's ``failed`` list that is read while ``close()`` runs: ``add`` is paused between
    its closed check and its append, as a thread the scheduler switches out there would be."""

    def __init__(self, reading: threading.Event, closed: threading.Event) -> None:
        super().__init__([{"deployment": "primary", "error_type": "RateLimitError"}])
        self.reading, self.closed = reading, closed

    def __iter__(self):  # type: ignore[no-untyped-def]
        self.reading.set()
        self.closed.wait(10)
        return super().__iter__()


def test_a_record_added_while_close_runs_is_kept_or_refused_never_lost(tmp_path: Path) -> None:
    path = tmp_path / "late.sqlite3"
    ledger = Ledger(path)
    reading, closed = threading.Event(), threading.Event()
    outcome: list[object] = []

    def add_late() -> None:
        try:
            ledger.add(record(1), failed=_SlowTries(reading, closed))
            outcome.append("added")
        except RuntimeError as exc:
            outcome.append(exc)

    producer = threading.Thread(target=add_late)
    producer.start()
    assert reading.wait(10)
    ledger.close()  # the writer drains and stops while the producer is still inside add()
    closed.set()
    producer.join(10)
    assert outcome, "add() never returned"
    Ledger(path).close()  # imports a sidecar, if the late record went there
    kept = rows_in_file(path)
    if outcome == ["added"]:
        assert len(kept) == 1  # add() returned normally: the record is in the ledger
    else:
        assert kept == []  # refused with an error the caller sees: nothing half-kept


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX only")
def test_a_forked_child_writes_and_reads_its_own_records_and_never_rewrites_its_parents(tmp_path: Path) -> None:
    path = tmp_path / "fork.sqlite3"
    ledger = Ledger(path)
    for n in range(200):  # queued, maybe not yet committed, when the process forks
        ledger.add(record(n))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork of a threaded process: the point of the test
        pid = os.fork()
    if pid == 0:  # the child: the parent's writer thread did not come along
        code = 1
        try:
            ledger.add(record(1_000_000))
            counted: list[int] = []
            reader = threading.Thread(target=lambda: counted.append(ledger.count()), daemon=True)
            reader.start()
            reader.join(20)
            ledger.close()
            code = 0 if counted and counted[0] >= 1 else 3  # 3: a read in the child never returned
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    ledger.add(record(2_000_000))
    ledger.close()
    Ledger(path).close()  # imports a sidecar, if anything went there
    ids = rows_in_file(path)
    assert len(ids) == len(set(ids)) == 202  # the parent's 201 and the child's one, each once
