"""``multigateway batch``: bounded concurrency, results as they arrive, resume, failures kept."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from langchain_multigateway.cli import main
from langchain_multigateway.errors import GatewayConnectionError, ProviderError
from langchain_multigateway.registry import register_provider, unregister_provider
from langchain_multigateway.testing import ScriptedChatModel
from tests.unit._cli_helpers import cli_env, read_rows, write_config, write_rows  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]


def _ids(rows: list[dict[str, object]]) -> Counter[str]:
    return Counter(json.dumps(r["id"]) for r in rows)


def test_runs_every_row_through_the_configured_router(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path)
    source = write_rows(tmp_path / "in.jsonl", 30)
    out = tmp_path / "out.jsonl"
    assert main(["batch", str(source), "--out", str(out), "--config", str(config), "--concurrency", "5"]) == 0
    rows = read_rows(out)
    assert len(rows) == 30
    assert set(_ids(rows).values()) == {1}
    assert {r["deployment"] for r in rows} == {"a"}  # ordered: the first deployment serves all
    assert all(r["output"] == "answer from a" and r["usage"]["total_tokens"] > 0 for r in rows)
    captured = capsys.readouterr()
    assert "30 ok, 0 failed, 0 skipped" in captured.out
    assert "TOTAL" in captured.out
    assert "batch: 30/30 done, 0 failed" in captured.err


def test_messages_rows_and_rows_without_id(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text(
        json.dumps({"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]})
        + "\n\n"
        + json.dumps({"id": "x", "prompt": "hello"})
        + "\n"
    )
    out = tmp_path / "out.jsonl"
    assert main(["batch", str(source), "--out", str(out), "--model", "scripted:s", "--quiet"]) == 0
    assert sorted(_ids(read_rows(out))) == ['"x"', "1"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"id": 1, "prompt": "a"}\n{"id": 1, "prompt": "b"}\n', "line 2: duplicate id 1 (first on line 1)"),
        ('{"prompt": "a"}\n{"id": 1, "prompt": "b"}\n', "line 2: duplicate id 1"),
        ("{not json\n", "line 1: not valid JSON"),
        ('["a list"]\n', "line 1: expected a JSON object"),
        ('{"id": 1}\n', "expected 'prompt'"),
        ('{"id": [1], "prompt": "a"}\n', "'id' must be a string or a number"),
        ('{"id": 1, "messages": []}\n', "'messages' must be a non-empty list"),
        ('{"id": 1, "messages": [{"role": "wizard", "content": "x"}]}\n', "messages[0] must be an object"),
    ],
)
def test_bad_input_is_refused_before_anything_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, expected: str
) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text(text)
    out = tmp_path / "out.jsonl"
    assert main(["batch", str(source), "--out", str(out), "--model", "scripted:s"]) == 2
    assert expected in capsys.readouterr().err
    assert not out.exists()


def test_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = write_rows(tmp_path / "in.jsonl", 2)
    assert main(["batch", str(tmp_path / "missing.jsonl"), "--out", "o.jsonl", "--model", "scripted:s"]) == 2
    assert "cannot read the input file" in capsys.readouterr().err
    assert main(["batch", str(source), "--out", str(source), "--model", "scripted:s"]) == 2
    assert "--out must not be the input file" in capsys.readouterr().err
    assert main(["batch", str(source), "--out", "o.jsonl", "--model", "scripted:s", "--concurrency", "0"]) == 2
    assert main(["batch", str(source), "--out", "o.jsonl", "--model", "scripted:s", "--max-tokens", "0"]) == 2
    assert main(["batch", str(source), "--out", "o.jsonl", "--model", "scripted:s", "--strategy", "fastest"]) == 2
    assert "unknown strategy 'fastest'" in capsys.readouterr().err


def test_failed_rows_are_kept_with_their_error_and_retried_on_request(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    steps = ["ok"] * 3 + [ProviderError("upstream 500", status_code=500)] + ["ok"] * 10

    def flaky(model: str = "flaky", **params: object) -> ScriptedChatModel:
        return ScriptedChatModel(model=model, steps=list(steps))

    register_provider("flaky", flaky, default_model="flaky")
    try:
        source = write_rows(tmp_path / "in.jsonl", 6)
        out = tmp_path / "out.jsonl"
        args = ["batch", str(source), "--out", str(out), "--model", "flaky:x", "--concurrency", "1", "--quiet"]
        assert main(args) == 1
        rows = read_rows(out)
        assert len(rows) == 6
        failed = [r for r in rows if "error" in r]
        assert failed == [
            {
                "id": "row-3",
                "error": {"type": "ProviderError", "message": failed[0]["error"]["message"]},
                "latency_ms": failed[0]["latency_ms"],
            }
        ]
        assert "upstream 500" in failed[0]["error"]["message"]
        assert "5 ok, 1 failed" in capsys.readouterr().out
        # a rerun skips everything (failed rows included) and still reports the failure
        assert main(args) == 1
        assert "6 already in" in capsys.readouterr().err
        # --retry-failed runs just that row again (a fresh model: its script answers "ok")
        assert main([*args, "--retry-failed"]) == 0
        rows = read_rows(out)
        assert len(rows) == 6
        assert set(_ids(rows).values()) == {1}
        assert all("output" in r for r in rows)
    finally:
        unregister_provider("flaky")


def test_stops_early_when_the_provider_is_unreachable(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def down(model: str = "down", **params: object) -> ScriptedChatModel:
        return ScriptedChatModel(model=model, steps=[GatewayConnectionError("refused")], exhausted="cycle")

    register_provider("down", down, default_model="down")
    try:
        source = write_rows(tmp_path / "in.jsonl", 50)
        out = tmp_path / "out.jsonl"
        assert main(["batch", str(source), "--out", str(out), "--model", "down:x", "--concurrency", "1"]) == 3
    finally:
        unregister_provider("down")
    assert len(read_rows(out)) == 10
    assert "stopped early: 10 rows in a row failed with GatewayConnectionError" in capsys.readouterr().err


def test_an_abort_mid_way_then_a_rerun_completes_200_rows_without_duplicates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A scripted KeyboardInterrupt at call 120 stops the batch like Ctrl-C would."""
    calls = {"n": 0}

    def aborting(model: str = "aborting", **params: object) -> ScriptedChatModel:
        calls["n"] += 1
        if calls["n"] == 1:
            return ScriptedChatModel(model=model, steps=["ok"] * 120 + [KeyboardInterrupt()] + ["ok"] * 200)
        return ScriptedChatModel(model=model)

    register_provider("aborting", aborting, default_model="aborting")
    try:
        source = write_rows(tmp_path / "in.jsonl", 200)
        out = tmp_path / "out.jsonl"
        args = ["batch", str(source), "--out", str(out), "--model", "aborting:x", "--concurrency", "8", "--quiet"]
        assert main(args) == 130
        first = read_rows(out)
        assert 100 <= len(first) <= 127
        assert "run the same command to resume" in capsys.readouterr().err
        assert main(args) == 0
        assert f"{len(first)} already in" in capsys.readouterr().err
    finally:
        unregister_provider("aborting")
    rows = read_rows(out)
    assert len(rows) == 200
    assert set(_ids(rows).values()) == {1}
    assert all("output" in r for r in rows)


def _spawn(args: list[str]) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.unit._cli_helpers", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_rows(out: Path, count: int, process: subprocess.Popen[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if out.exists() and out.read_bytes().count(b"\n") >= count:
            return
        assert process.poll() is None, process.communicate()
        time.sleep(0.02)
    pytest.fail(f"fewer than {count} rows after {timeout} s")


@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM", "SIGINT"])
def test_killed_mid_way_then_rerun_ends_with_200_rows_none_duplicated(tmp_path: Path, how: str) -> None:
    source = write_rows(tmp_path / "in.jsonl", 200)
    out = tmp_path / "out.jsonl"
    args = ["batch", str(source), "--out", str(out), "--model", "slow:x", "--concurrency", "4"]
    process = _spawn(args)
    _wait_for_rows(out, 40, process)
    process.send_signal(getattr(signal, how))
    _, err = process.communicate(timeout=60)
    written = read_rows(out) if how != "SIGKILL" else None
    if how == "SIGKILL":
        assert process.returncode == -signal.SIGKILL
    else:
        assert process.returncode == 130, err
        assert "run the same command to resume" in err
        assert written is not None
        assert 40 <= len(written) < 200
    # a write cut short by the kill: the rerun must drop it and redo that row
    with out.open("ab") as handle:
        handle.write(b'{"id": "row-199", "output": "half a li')
    done_before = out.read_bytes().count(b"\n")  # complete lines: what the rerun will skip
    again = _spawn(args)
    stdout, err = again.communicate(timeout=120)
    assert again.returncode == 0, err
    assert "removed a partial last line" in err
    rows = read_rows(out)
    assert len(rows) == 200
    assert set(_ids(rows).values()) == {1}
    assert all(r["output"] == "slow answer" for r in rows)
    assert f"{done_before} skipped (already done)" in stdout


def test_scan_output_cuts_a_torn_last_line_and_skips_unreadable_ones(tmp_path: Path) -> None:
    from langchain_multigateway.cli._jsonl import id_key, scan_output

    out = tmp_path / "out.jsonl"
    good = '{"id": 1, "output": "a"}\n\nnot json\n["no id"]\n{"id": "2", "error": {"type": "X", "message": "m"}}\n'
    out.write_text(good + '{"id": 3, "out')
    done = scan_output(out)
    assert done.ids == {id_key(1), id_key("2")}
    assert done.failed == {id_key("2")}
    assert done.bad_lines == 2
    assert done.repaired_bytes == len('{"id": 3, "out')
    assert out.read_text() == good
