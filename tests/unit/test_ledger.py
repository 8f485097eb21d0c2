"""Ledger: SQLite rows per call, queries, totals, CSV, and nothing lost under concurrency."""

from __future__ import annotations

import asyncio
import csv
import gc
import io
import sqlite3
import threading
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from langchain_core.messages.ai import UsageMetadata

from langchain_multigateway.errors import ProviderError
from langchain_multigateway.testing import ScriptedChatModel
from langchain_multigateway.testing.scripted import Step
from langchain_multigateway.usage import CallRecord, Ledger, LedgerCallbackHandler
from langchain_multigateway.usage.ledger import LedgerWriteError, csv_text, rows_by

USAGE = UsageMetadata(input_tokens=10, output_tokens=5, total_tokens=15)


def record(
    model: str = "gpt-4o-mini",
    *,
    ts: float | None = None,
    tags: tuple[str, ...] = (),
    outcome: str = "ok",
    deployment: str | None = "primary",
    tokens: int = 15,
    cost: float | None = 1e-6,
) -> CallRecord:
    now = time.time() if ts is None else ts
    return CallRecord(
        run_id=str(uuid.uuid4()),
        started_at=now - 0.1,
        ended_at=now,
        latency_ms=100.0,
        provider="openai",
        model=model,
        deployment=deployment,
        outcome=outcome,  # type: ignore[arg-type]
        error_type="ProviderError" if outcome == "error" else None,
        input_tokens=tokens - 5 if tokens else 0,
        output_tokens=5 if tokens else 0,
        total_tokens=tokens,
        cost_usd=cost,
        has_usage=bool(tokens),
        tags=tags,
    )


def test_file_ledger_is_wal_and_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "calls.sqlite3"
    with Ledger(path) as ledger:
        ledger.add(record(tags=("a", "b")))
        ledger.flush()
        # committed per record: another connection sees it before close
        conn = sqlite3.connect(path)
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT COUNT(*) FROM calls").fetchone()[0] == 1
        conn.close()
    with Ledger(path) as again:
        rows = again.records()
    assert len(rows) == 1
    assert rows[0]["tags"] == ["a", "b"]
    assert rows[0]["day"] == datetime.now(UTC).strftime("%Y-%m-%d")


def test_queries_by_time_model_tag_and_totals() -> None:
    day1 = datetime(2025, 3, 1, 12, tzinfo=UTC).timestamp()
    day2 = datetime(2025, 3, 2, 12, tzinfo=UTC).timestamp()
    with Ledger() as ledger:
        ledger.add(record("gpt-4o-mini", ts=day1, tags=("team-a",)))
        ledger.add(record("gpt-4o-mini", ts=day2, tags=("team-a", "nightly")))
        ledger.add(record("claude-3-5-haiku", ts=day2, tags=("nightly",), deployment="backup"))
        ledger.add(record("gpt-4o", ts=day2, outcome="error", tokens=0, cost=0.0))
        ledger.add(record("local", ts=day2, cost=None))
        assert ledger.count() == 5
        assert ledger.count(model="gpt-4o-mini") == 2
        assert ledger.count(tag="nightly") == 2
        assert ledger.count(since=day2) == 4
        assert ledger.count(until=datetime(2025, 3, 2)) == 1  # naive datetimes are UTC
        assert ledger.count(outcome="error") == 1
        assert [r["model"] for r in ledger.records(tag="team-a", since=day2)] == ["gpt-4o-mini"]
        assert len(ledger.records(limit=2)) == 2
        assert ledger.records(deployment="backup", provider="openai")[0]["model"] == "claude-3-5-haiku"
        with pytest.raises(TypeError, match="unknown filters"):
            ledger.count(colour="red")

        by_model = rows_by(ledger.totals(by="model"))
        assert by_model["gpt-4o-mini"]["requests"] == 2
        assert by_model["gpt-4o-mini"]["total_tokens"] == 30
        assert by_model["gpt-4o-mini"]["cost_usd"] == pytest.approx(2e-6)
        assert by_model["gpt-4o"]["errors"] == 1
        assert by_model["local"]["unpriced"] == 1
        by_day = rows_by(ledger.totals(by="day"))
        assert by_day["2025-03-01"]["requests"] == 1
        assert by_day["2025-03-02"]["requests"] == 4
        by_tag = rows_by(ledger.totals(by="tag"))
        assert (by_tag["team-a"]["requests"], by_tag["nightly"]["requests"]) == (2, 2)
        assert rows_by(ledger.totals(by="deployment", since=day2))["backup"]["requests"] == 1
        assert rows_by(ledger.totals(by="model", tag="nightly"))["claude-3-5-haiku"]["requests"] == 1
        with pytest.raises(ValueError, match="by must be one of"):
            ledger.totals(by="colour")  # type: ignore[arg-type]


def test_export_csv(tmp_path: Path) -> None:
    with Ledger() as ledger:
        ledger.add(record(tags=("x", "y")))
        ledger.add(record("gpt-4o"))
        path = tmp_path / "calls.csv"
        assert ledger.export_csv(path) == 2
        assert ledger.export_csv(io.StringIO(), model="gpt-4o") == 1
        text = csv_text(ledger, model="gpt-4o-mini")
    rows = list(csv.DictReader(path.open()))
    assert [r["model"] for r in rows] == ["gpt-4o-mini", "gpt-4o"]
    assert rows[0]["tags"] == "x;y"
    assert set(rows[0]) >= {"ts", "run_id", "deployment", "cost_usd", "latency_ms", "outcome", "error_type"}
    assert text.count("\n") == 2


def test_closed_ledger_refuses_and_gc_closes() -> None:
    ledger = Ledger()
    ledger.close()
    ledger.close()
    with pytest.raises(RuntimeError, match="closed"):
        ledger.add(record())
    with pytest.raises(RuntimeError, match="closed"):
        ledger.records()
    forgotten = Ledger()
    thread = forgotten._thread
    del forgotten
    gc.collect()
    thread.join(timeout=5)
    assert not thread.is_alive()


def test_bad_path_fails_at_once(tmp_path: Path) -> None:
    (tmp_path / "dir.sqlite3").mkdir()
    with pytest.raises(sqlite3.OperationalError):
        Ledger(tmp_path / "dir.sqlite3")


def test_handler_writes_one_row_per_call_and_per_failed_attempt(tmp_path: Path) -> None:
    from tests.unit.test_usage_callbacks import Wrapper

    failing = ScriptedChatModel(
        model="gpt-4o", model_provider="openai", steps=[ProviderError("down")], exhausted="cycle"
    )
    good = ScriptedChatModel(
        model="gpt-4o-mini", model_provider="openai", steps=[Step(reply="ok", usage=USAGE)], exhausted="cycle"
    )
    handler = LedgerCallbackHandler(str(tmp_path / "ledger.sqlite3"))
    router = Wrapper(inners=[failing, good], names=["primary", "backup"])
    router.invoke("hi", config={"callbacks": [handler], "tags": ["nightly"]})
    list(good.stream("hi", config={"callbacks": [handler]}))
    rows = handler.ledger.records()
    assert [(r["deployment"], r["outcome"], r["total_tokens"]) for r in rows] == [
        ("primary", "error", 0),
        ("backup", "ok", 15),
        (None, "ok", 15),
    ]
    assert rows[0]["error_type"] == "ProviderError"
    assert rows[0]["tags"] == ["nightly"]
    assert rows[1]["cost_usd"] == pytest.approx((10 * 0.15 + 5 * 0.60) / 1e6)
    assert rows[2]["latency_ms"] >= 0
    handler.ledger.close()


def test_concurrent_threads_and_tasks_lose_nothing(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "concurrent.sqlite3")
    handler = LedgerCallbackHandler(ledger)
    llm = ScriptedChatModel(
        model="gpt-4o-mini", model_provider="openai", steps=[Step(reply="ok", usage=USAGE)], exhausted="cycle"
    )
    barrier = threading.Barrier(8)

    def writer(n: int) -> None:
        barrier.wait()
        for i in range(200):
            ledger.add(record(tags=(f"thread-{n}",), ts=time.time() + i * 1e-6))

    async def tasks() -> None:
        await asyncio.gather(*(llm.ainvoke(f"q{i}", config={"callbacks": [handler]}) for i in range(500)))

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    asyncio.run(tasks())
    for t in threads:
        t.join()
    assert ledger.count() == 8 * 200 + 500
    assert ledger.count(tag="thread-3") == 200
    assert rows_by(ledger.totals(by="model"))["gpt-4o-mini"]["total_tokens"] == 8 * 200 * 15 + 500 * 15
    assert len({r["run_id"] for r in ledger.records()}) == 8 * 200 + 500
    ledger.close()


def test_a_record_sqlite_refuses_is_kept_in_the_sidecar_and_imported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "odd.sqlite3"
    with Ledger(path) as ledger:
        ledger.add(record(model=object()))  # type: ignore[arg-type]
        ledger.add(record())
        models = [r["model"] for r in ledger.records()]  # the sidecar is imported, in order
    assert "could not write a record" in caplog.text
    assert len(models) == 2
    assert models[0].startswith("<object object")
    assert not Path(str(path) + ".spill.jsonl").exists()


def test_in_memory_ledger_reports_a_lost_record_at_close() -> None:
    ledger = Ledger()
    ledger.add(record(model=object()))  # type: ignore[arg-type]
    ledger.add(record())
    with pytest.raises(LedgerWriteError, match="1 record") as caught:
        ledger.close()
    assert caught.value.lost == 1


def _hold_exclusive_lock(path: Path, seconds: float, held: threading.Event) -> threading.Thread:
    """A second, real SQLite connection that holds the write lock for ``seconds``."""

    def hold() -> None:
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("BEGIN EXCLUSIVE")
        conn.execute("INSERT INTO call_tags (call_id, tag) VALUES (0, 'locker')")
        held.set()
        time.sleep(seconds)
        conn.execute("ROLLBACK")
        conn.close()

    thread = threading.Thread(target=hold)
    thread.start()
    assert held.wait(5)
    return thread


def test_records_wait_out_an_8s_lock_with_default_settings(tmp_path: Path) -> None:
    path = tmp_path / "locked.sqlite3"
    Ledger(path).close()
    held = threading.Event()
    locker = _hold_exclusive_lock(path, 8.0, held)
    ledger = Ledger(path)
    for i in range(20):
        ledger.add(record(ts=time.time() + i * 1e-6))
    ledger.close()
    locker.join()
    assert not Path(str(path) + ".spill.jsonl").exists()
    with Ledger(path) as reopened:
        assert reopened.count() == 20


def test_a_lock_held_past_busy_timeout_spills_and_the_next_open_imports_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "busy.sqlite3"
    sidecar = Path(str(path) + ".spill.jsonl")
    Ledger(path).close()
    held = threading.Event()
    locker = _hold_exclusive_lock(path, 2.0, held)
    ledger = Ledger(path, busy_timeout=0.2)
    for i in range(5):
        ledger.add(record(model=f"m{i}", ts=time.time() + i * 1e-6))
    ledger.flush()
    assert ledger.spilled == 5
    ledger.close()  # the lock is still held: nothing lost, the records wait in the sidecar
    assert "5 record(s) could not be written to the database and are kept in" in caplog.text
    assert len(sidecar.read_text().splitlines()) == 5
    saved = sidecar.read_text()
    locker.join()
    with Ledger(path) as reopened:
        assert [r["model"] for r in reopened.records()] == [f"m{i}" for i in range(5)]
    assert not sidecar.exists()
    sidecar.write_text(saved)  # a crash between the import's commit and the sidecar's removal
    with Ledger(path) as again:
        assert again.count() == 5


def test_spilled_records_rejoin_in_order_once_the_lock_is_gone(tmp_path: Path) -> None:
    path = tmp_path / "rejoin.sqlite3"
    Ledger(path).close()
    held = threading.Event()
    locker = _hold_exclusive_lock(path, 1.0, held)
    ledger = Ledger(path, busy_timeout=0.1)
    ledger.add(record(model="first"))
    ledger.add(record(model="second"))
    ledger.flush()
    assert ledger.spilled == 2
    locker.join()
    ledger.add(record(model="third"))
    assert [r["model"] for r in ledger.records()] == ["first", "second", "third"]
    assert ledger.spilled == 0
    ledger.close()
    assert not Path(str(path) + ".spill.jsonl").exists()


def test_an_unreadable_sidecar_line_is_set_aside_not_dropped(tmp_path: Path) -> None:
    path = tmp_path / "torn.sqlite3"
    Ledger(path).close()
    sidecar = Path(str(path) + ".spill.jsonl")
    sidecar.write_text('{"spill_id": "a", "record": {"run_id": "x"\n')  # a torn last line
    with Ledger(path) as ledger:
        assert ledger.count() == 0
    assert Path(str(sidecar) + ".rejected").read_text().startswith('{"spill_id": "a"')
    assert not sidecar.exists()


def test_a_record_that_breaks_the_insert_is_set_aside_and_the_writer_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "poison.sqlite3"
    sidecar = Path(str(path) + ".spill.jsonl")
    with Ledger(path) as ledger:
        ledger.add(replace(record(model="poison"), latency_ms=None))  # type: ignore[arg-type]
        ledger.add(record(model="after"))
        assert [r["model"] for r in ledger.records()] == ["after"]
        assert ledger.spilled == 0
    assert not sidecar.exists()
    rejected = Path(str(sidecar) + ".rejected").read_text()
    assert '"model": "poison"' in rejected
