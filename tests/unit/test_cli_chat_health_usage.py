"""``multigateway chat``, ``health`` and ``usage``: scripted models, a loopback HTTP server, the ledger."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from langchain_multigateway.cli import main
from tests.loopback import Reply, chat_completion, chat_stream, serve
from tests.unit._cli_helpers import cli_env, ledger_file, write_config  # noqa: F401


def _openai_env(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "placeholder-key")
    monkeypatch.setenv("OPENAI_BASE_URL", url)


# ---------------------------------------------------------------------- chat
def test_chat_through_a_config_router_prints_answer_and_footer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ledger = ledger_file()
    config = write_config(tmp_path)
    assert main(["chat", "hello", "--config", str(config)]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == "answer from a"
    footer = captured.err.strip()
    assert footer.startswith("-- served by a | scripted:scripted-a | tokens in=")
    assert "cost n/a (no price known" in footer
    assert ledger.exists()  # the ledger recorded the call


def test_chat_picks_the_named_router_and_strategy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path)
    assert main(["chat", "hello", "--config", str(config), "--router", "backwards", "--no-ledger"]) == 0
    assert capsys.readouterr().out.strip() == "answer from b"
    assert main(["chat", "hi", "--config", str(config), "--strategy", "round_robin", "--no-ledger"]) == 0
    assert main(["chat", "hi", "--config", str(config), "--router", "nope"]) == 2
    assert "no router named 'nope'; declared routers: main, backwards" in capsys.readouterr().err


def test_chat_with_config_models_or_named_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    only_models = write_config(tmp_path, "models:\n  solo: {provider: scripted, default_reply: solo answer}\n")
    assert main(["chat", "hi", "--config", str(only_models), "--no-ledger"]) == 0
    assert capsys.readouterr().out.strip() == "solo answer"
    config = write_config(tmp_path)
    assert main(["chat", "hi", "--config", str(config), "--model", "b", "--no-ledger"]) == 0
    assert capsys.readouterr().out.strip() == "answer from b"
    empty = write_config(tmp_path, "version: 1\n")
    assert main(["chat", "hi", "--config", str(empty)]) == 2
    assert "declares no models and no routers" in capsys.readouterr().err
    assert main(["chat", "hi", "--router", "main", "--model", "scripted:x"]) == 2
    assert "give --config FILE too" in capsys.readouterr().err


def test_chat_several_models_make_a_router_and_stream(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["chat", "hi", "--model", "scripted:one", "--model", "scripted:two", "--stream", "--no-ledger"]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == "Hello from the scripted model."
    assert "served by scripted:one" in captured.err


def test_chat_over_http_to_a_loopback_server(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with serve(Reply(body=chat_completion("Hi there!", model="stub-model"))) as (url, script):
        _openai_env(monkeypatch, url)
        assert main(["chat", "hello", "--model", "openai:stub-model", "--max-tokens", "5", "--temperature", "0"]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == "Hi there!"
    assert "tokens in=5 out=2 total=7" in captured.err
    body = script.requests[0]["body"]
    assert body["max_tokens"] == 5
    assert body["temperature"] == 0


def test_chat_streams_over_http(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    with serve(Reply(sse=chat_stream(["Hel", "lo", "!"]))) as (url, _):
        _openai_env(monkeypatch, url)
        assert main(["chat", "hello", "--model", "openai:stub-model", "--stream", "--no-ledger"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "Hello!\n"
    assert "tokens in=5 out=3 total=8" in captured.err


def test_chat_auth_failure_exits_3(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    denied = Reply(status=401, body={"error": {"message": "Incorrect API key", "type": "invalid_request_error"}})
    with serve(denied) as (url, _):
        _openai_env(monkeypatch, url)
        assert main(["chat", "hello", "--model", "openai:stub-model", "--no-ledger"]) == 3
    err = capsys.readouterr().err
    assert "AuthenticationError" in err
    assert "check the API key" in err


def test_chat_ledger_that_cannot_be_opened_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["chat", "hi", "--model", "scripted:x", "--ledger", str(blocker / "sub" / "l.sqlite3")]) == 2
    assert "cannot open the usage ledger" in capsys.readouterr().err


# ---------------------------------------------------------------------- health
def test_health_ok_and_down(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    models = {"object": "list", "data": [{"id": "stub-model", "object": "model"}]}
    with serve(Reply(body=models)) as (url, _):
        config = write_config(
            tmp_path,
            f"models:\n  up: {{provider: openai, model: stub, base_url: '{url}', api_key: x}}\n"
            "  down: {provider: openai, model: stub, base_url: 'http://127.0.0.1:9/v1', api_key: x}\n"
            "  fake: {provider: scripted}\n"
            "routers:\n  main:\n    deployments: [up, 'scripted:extra']\n",
        )
        assert main(["health", "--config", str(config)]) == 3
        out = capsys.readouterr().out
        assert main(["health", "--config", str(config), "--router", "main"]) == 0
        router_out = capsys.readouterr().out
        assert main(["health", "--config", str(config), "--model", "up"]) == 0
    lines = {line.split()[0]: line for line in out.splitlines()[2:] if line.strip()}
    assert " ok " in lines["up"]
    assert "DOWN" in lines["down"]
    assert "GatewayConnectionError" in lines["down"]
    assert "n/a" in lines["fake"]
    assert "scripted:extra" in lines
    assert "1 of 4 down" in out
    assert "scripted:extra" in router_out
    assert "down" not in router_out.split()


def test_health_unreachable_exits_3(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    _openai_env(monkeypatch, "http://127.0.0.1:9/v1")
    assert main(["health", "--model", "openai:gpt-4o-mini"]) == 3
    assert "DOWN" in capsys.readouterr().out


def test_health_of_the_default_model(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("DEFAULT_LLM_MODEL", "scripted:default-one")
    assert main(["health"]) == 0
    assert "scripted:default-one" in capsys.readouterr().out


# ---------------------------------------------------------------------- usage
def test_usage_reads_what_chat_and_batch_wrote(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ledger = ledger_file()
    assert main(["usage"]) == 0
    assert "no ledger at" in capsys.readouterr().err
    config = write_config(tmp_path)
    for _ in range(3):
        assert main(["chat", "hello", "--config", str(config)]) == 0
    source = tmp_path / "in.jsonl"
    source.write_text('{"id": 1, "prompt": "x"}\n{"id": 2, "prompt": "y"}\n')
    assert main(["batch", str(source), "--out", str(tmp_path / "out.jsonl"), "--model", "scripted:s", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["usage"]) == 0
    out = capsys.readouterr().out
    rows = {
        line.split()[0]: line.split() for line in out.splitlines()[2:] if line.strip() and not line.startswith("n/a")
    }
    assert rows["scripted-a"][1] == "3"
    assert rows["s"][1] == "2"
    assert rows["s"][6] == "n/a"
    assert "cost is never guessed" in out
    assert main(["usage", "--by", "tag"]) == 0
    tags = capsys.readouterr().out
    assert any(line.startswith("chat ") and line.split()[1] == "3" for line in tags.splitlines())
    assert any(line.startswith("batch ") and line.split()[1] == "2" for line in tags.splitlines())
    assert main(["usage", "--by", "deployment", "--ledger", str(ledger)]) == 0
    assert "deployment" in capsys.readouterr().out


def test_usage_csv_and_since(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for _ in range(2):
        assert main(["chat", "hello", "--model", "scripted:s"]) == 0
    capsys.readouterr()
    assert main(["usage", "--csv"]) == 0
    records = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(records) == 2
    assert {r["model"] for r in records} == {"s"}
    assert {r["outcome"] for r in records} == {"ok"}
    assert main(["usage", "--csv", "--since", "2999-01-01"]) == 0
    assert len(list(csv.DictReader(io.StringIO(capsys.readouterr().out)))) == 0
    assert main(["usage", "--since", "2000-01-01T00:00Z"]) == 0
    assert " 2 " in capsys.readouterr().out
    assert main(["usage", "--since", "yesterday"]) == 2
    assert "--since expects an ISO date" in capsys.readouterr().err
