"""``--base-url`` / ``--api-key`` for chat and batch (the key never echoed), and health without a key or with aliases.

The server is a real HTTP server on 127.0.0.1 speaking OpenAI's chat-completions wire format (tests/loopback.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from langchain_multigateway.cli import main
from tests.loopback import Reply, chat_completion, serve
from tests.unit._cli_helpers import cli_env, ledger_file, read_rows, write_config  # noqa: F401

KEY = "sk-cli-planted-4f1d2a9b7c"


def test_chat_sends_to_base_url_with_the_api_key(capsys: pytest.CaptureFixture[str]) -> None:
    with serve(Reply(body=chat_completion("hi from the loopback server"))) as (url, script):
        code = main(["chat", "hello", "--model", "openai:local", "--base-url", url, "--api-key", KEY])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "hi from the loopback server" in out
    assert script.requests[0]["headers"]["authorization"] == f"Bearer {KEY}"
    assert script.requests[0]["body"]["model"] == "local"
    assert KEY not in out + err
    assert KEY.encode() not in ledger_file().read_bytes()


def test_batch_takes_the_key_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MULTIGATEWAY_API_KEY", KEY)
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"id": i, "prompt": f"q{i}"}) + "\n" for i in range(3)))
    out_file = tmp_path / "out.jsonl"
    with serve(Reply(body=chat_completion("answer"))) as (url, script):
        code = main(["batch", str(source), "--out", str(out_file), "--model", "openai:local", "--base-url", url])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert [r["output"] for r in read_rows(out_file)] == ["answer"] * 3
    assert {r["headers"]["authorization"] for r in script.requests} == {f"Bearer {KEY}"}
    assert KEY not in out + err + out_file.read_text()


def test_a_rejected_key_echoed_by_the_server_is_not_printed(capsys: pytest.CaptureFixture[str]) -> None:
    echo = {"error": {"message": f"Incorrect API key provided: {KEY}.", "type": "invalid_request_error"}}
    with serve(Reply(401, echo)) as (url, _):
        code = main(["chat", "hello", "--model", "openai:local", "--base-url", url, "--api-key", KEY])
    out, err = capsys.readouterr()
    assert code == 3
    assert "Incorrect API key provided" in err
    assert KEY not in out + err


def test_endpoint_options_refuse_config_models(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path)
    assert main(["chat", "hi", "--config", str(config), "--model", "a", "--api-key", KEY]) == 2
    err = capsys.readouterr().err
    assert "--base-url and --api-key apply to 'provider:model' specs; 'a' is a model of" in err
    assert KEY not in err


def test_health_lists_a_model_without_a_key_as_down(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["health", "--model", "openai:gpt-4o-mini"]) == 3
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("openai:gpt-4o-mini"))
    assert "DOWN" in row
    assert "set the OPENAI_API_KEY environment variable" in row
    assert "1 of 1 down" in out


def test_health_shows_a_model_and_its_deployment_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(
        tmp_path,
        "models:\n  a: {provider: scripted, model: scripted-a}\n  b: {provider: scripted, model: scripted-b}\n"
        "routers:\n  main:\n    deployments: [a, {model: b, name: primary}, 'scripted:extra']\n"
        "  other:\n    deployments: [{model: b, name: spare}]\n",
    )
    assert main(["health", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    names = [line.split("  ")[0] for line in out.splitlines()[2:] if line.strip()]
    assert names == ["a", "b (main: primary, other: spare)", "scripted:extra"]
    assert main(["health", "--config", str(config), "--router", "other"]) == 0
    names = [line.split("  ")[0] for line in capsys.readouterr().out.splitlines()[2:] if line.strip()]
    assert names == ["b (other: spare)"]


def test_health_lists_a_config_model_without_a_key_as_down(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, "models:\n  hosted: openai:gpt-4o-mini\n  local: {provider: scripted, model: s}\n")
    assert main(["health", "--config", str(config)]) == 3
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines()[2:] if line.strip()}
    assert "DOWN" in rows["hosted"]
    assert "OPENAI_API_KEY" in rows["hosted"]
    assert "n/a" in rows["local"]
    assert main(["health", "--config", str(config), "--model", "hosted"]) == 3
    broken = write_config(tmp_path, "models:\n  bad: {provider: openai, model: m, api_key: x, temprature: 0}\n")
    assert main(["health", "--config", str(broken)]) == 2
    assert "line 2, models.bad.temprature" in capsys.readouterr().err
