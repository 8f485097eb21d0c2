"""``multigateway keys`` and ``serve``'s refusals, run in process through the CLI's ``main``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from langchain_multigateway.cli import main
from langchain_multigateway.server.keys import KeyStore
from langchain_multigateway.usage import Ledger
from langchain_multigateway.usage.records import CallRecord


def test_keys_create_list_usage_revoke(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    keys = str(tmp_path / "keys.sqlite3")
    ledger = str(tmp_path / "usage.sqlite3")
    assert (
        main(
            [
                "keys",
                "create",
                "--keys",
                keys,
                "--name",
                "team-a",
                "--models",
                "main, fast",
                "--rpm",
                "60",
                "--tpm",
                "1000",
                "--budget",
                "10",
                "--period",
                "30d",
                "--expires",
                "90d",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    secret = out.splitlines()[0]
    assert secret.startswith("mg-")
    assert "shown once" in out

    assert main(["keys", "list", "--keys", keys]) == 0
    listed = capsys.readouterr().out
    assert "team-a" in listed
    assert "main,fast" in listed
    assert "$10/30d" in listed
    assert "active" in listed
    assert secret not in listed

    record = KeyStore(keys).get("team-a")
    assert record is not None
    with Ledger(ledger) as book:
        book.add(
            CallRecord(
                run_id="r1",
                started_at=record.created_at + 1,
                ended_at=record.created_at + 2,
                latency_ms=1000,
                provider="openai",
                model="gpt",
                deployment="d",
                outcome="ok",
                input_tokens=10,
                output_tokens=5,
                total_tokens=15,
                cost_usd=0.25,
                has_usage=True,
                tags=(record.tag,),
            )
        )
    assert main(["keys", "usage", "--keys", keys, "--ledger", ledger, "team-a"]) == 0
    usage = capsys.readouterr().out
    assert "$0.2500 of $10" in usage
    assert main(["keys", "usage", "--keys", keys, "--ledger", ledger, "--json", record.id]) == 0
    assert json.loads(capsys.readouterr().out)["total"]["requests"] == 1

    assert main(["keys", "revoke", "--keys", keys, "team-a"]) == 0
    assert "revoked" in capsys.readouterr().out
    assert main(["keys", "list", "--keys", keys, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["state"] == "revoked"


def test_keys_errors_exit_2_with_the_reason(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    keys = str(tmp_path / "keys.sqlite3")
    assert main(["keys", "create", "--keys", keys, "--name", "x", "--period", "30d"]) == 2
    assert "give --budget too" in capsys.readouterr().err
    assert main(["keys", "revoke", "--keys", keys, "nobody"]) == 2
    assert "no key with id or name 'nobody'" in capsys.readouterr().err
    assert main(["keys", "create", "--keys", keys, "--name", "j", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["key"].startswith("mg-")


def test_serve_refuses_bad_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty.yaml"
    empty.write_text("version: 1\n")
    assert main(["serve", "--config", str(empty)]) == 2
    assert "declares no models and no routers" in capsys.readouterr().err
    assert main(["serve", "--config", str(empty), "--workers", "0"]) == 2
    assert "--workers must be at least 1" in capsys.readouterr().err
    assert main(["serve", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert "cannot read the configuration file" in capsys.readouterr().err
