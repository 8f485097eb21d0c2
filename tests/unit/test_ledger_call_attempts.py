"""The ledger keeps a call's failed tries (``call_attempts``), also through its sidecar file."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from langchain_multigateway.usage import Ledger
from langchain_multigateway.usage.records import CallRecord


def _record(deployment: str | None = "backup") -> CallRecord:
    now = time.time()
    return CallRecord(
        run_id="r1", started_at=now - 1, ended_at=now, latency_ms=1000.0, provider="openai", model="m",
        deployment=deployment, outcome="ok",
    )  # fmt: skip


FAILED = [
    {"deployment": "primary", "error_type": "ProviderError", "status_code": 503, "latency_ms": 12.5},
    {"deployment": "primary", "error_type": "GatewayTimeoutError", "status_code": None, "latency_ms": 30000},
]


def _attempts(path: Path) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as conn:
        return conn.execute(
            "SELECT c.deployment, a.deployment, a.error_type, a.status_code, a.latency_ms"
            " FROM call_attempts a JOIN calls c ON c.id = a.call_id ORDER BY a.rowid"
        ).fetchall()


def test_failed_tries_are_kept_with_their_call(tmp_path: Path) -> None:
    path = tmp_path / "usage.sqlite3"
    with Ledger(path) as ledger:
        ledger.add(_record(), failed=FAILED)
        ledger.add(_record("solo"))
    assert _attempts(path) == [
        ("backup", "primary", "ProviderError", 503, 12.5),
        ("backup", "primary", "GatewayTimeoutError", None, 30000.0),
    ]


def test_failed_tries_survive_the_sidecar(tmp_path: Path) -> None:
    path = tmp_path / "usage.sqlite3"
    Ledger(path).close()
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")  # the ledger cannot write: the record goes to the sidecar
    ledger = Ledger(path, busy_timeout=0)
    ledger.add(_record(), failed=FAILED[:1])
    ledger.flush()
    assert ledger.spilled == 1
    blocker.execute("ROLLBACK")
    blocker.close()
    ledger.close()
    with Ledger(path):  # imported when a ledger next opens
        pass
    assert _attempts(path) == [("backup", "primary", "ProviderError", 503, 12.5)]
