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
