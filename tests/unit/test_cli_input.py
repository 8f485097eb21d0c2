"""CLI input edge cases: encodings and line separators in batch files, piped output, cost shown as n/a."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from langchain_multigateway.cli import main
from tests.unit._cli_helpers import cli_env, read_rows  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]


def test_batch_refuses_a_non_utf8_file_with_exit_2_naming_the_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "latin1.jsonl"
    source.write_bytes(b'{"id": 1, "prompt": "ok"}\n{"id": 2, "prompt": "caf\xe9"}\n')
    out = tmp_path / "out.jsonl"
    assert main(["batch", str(source), "--out", str(out), "--model", "scripted:s", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"{source}, line 2: not UTF-8 (byte 0xe9 at column 25)" in err
    assert not out.exists() or out.read_text() == ""


def test_batch_keeps_json_lines_holding_unicode_line_separators(tmp_path: Path) -> None:
    source = tmp_path / "seps.jsonl"
    prompts = ["one\u2028two", "three\u0085four", "five\u2029six\x1c"]
    source.write_text(
        "\ufeff"
        + "".join(json.dumps({"id": i, "prompt": p}, ensure_ascii=False) + "\r\n" for i, p in enumerate(prompts)),
        encoding="utf-8",
    )
    out = tmp_path / "out.jsonl"
    assert main(["batch", str(source), "--out", str(out), "--model", "scripted:s", "--quiet"]) == 0
    rows = read_rows(out)
    assert sorted(r["id"] for r in rows) == [0, 1, 2]
    assert all(r.get("error") is None for r in rows)


def _fill_ledger(path: Path, rows: int) -> None:
    from langchain_multigateway.usage import Ledger
    from tests.unit.test_ledger import record

    with Ledger(path) as ledger:
        for i in range(rows):
            ledger.add(record(model=f"model-{i % 3}", ts=1_700_000_000 + i))


def test_usage_csv_into_a_closed_pipe_ends_quietly_with_exit_0(tmp_path: Path) -> None:
    ledger = tmp_path / "piped.sqlite3"
    _fill_ledger(ledger, 3000)
    process = subprocess.Popen(
        [sys.executable, "-m", "langchain_multigateway", "usage", "--csv", "--ledger", str(ledger)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
    )
    assert process.stdout is not None
    assert process.stderr is not None
    head = [process.stdout.readline() for _ in range(3)]  # what `| head -3` reads before it exits
    process.stdout.close()
    err = process.stderr.read().decode()
    assert process.wait(timeout=60) == 0, err
    assert head[0].startswith(b"id,ts,day,")
    assert "BrokenPipeError" not in err
    assert "Exception ignored" not in err
    assert err == ""


def test_usage_shows_n_a_where_the_summary_does(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from langchain_multigateway.errors import ProviderError
    from langchain_multigateway.testing import ScriptedChatModel
    from langchain_multigateway.usage import Ledger, LedgerCallbackHandler, track_usage

    ledger_path = tmp_path / "na.sqlite3"
    failing = ScriptedChatModel(model="no-price-model", model_provider="openai", steps=[ProviderError("down")])
    ledger = Ledger(ledger_path)
    with track_usage() as usage, pytest.raises(ProviderError):
        failing.invoke("hi", config={"callbacks": [LedgerCallbackHandler(ledger)]})
    ledger.close()
    summary_row = next(line for line in usage.summary().splitlines() if "no-price-model" in line)
    assert summary_row.split()[-1] == "n/a"
    assert main(["usage", "--ledger", str(ledger_path)]) == 0
    usage_row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("no-price-model"))
    assert usage_row.split()[6] == "n/a"
