"""``multigateway``: help on every command, documented exit codes, actionable errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from langchain_multigateway.cli import main
from langchain_multigateway.cli._errors import exit_code_for, message_for
from langchain_multigateway.errors import (
    AllDeploymentsFailedError,
    AttemptRecord,
    AuthenticationError,
    GatewayConnectionError,
    ProviderError,
)
from tests.unit._cli_helpers import cli_env, write_config  # noqa: F401

COMMANDS = ("demo", "chat", "batch", "health", "providers", "usage")


def test_top_level_help_lists_every_command_and_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    for command in COMMANDS:
        assert command in out
    for code in ("0    ok", "1    runtime failure", "2    usage or configuration error", "3    provider unreachable"):
        assert code in out


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main([command, "--help"])
    assert done.value.code == 0
    assert f"usage: multigateway {command}" in capsys.readouterr().out


def test_module_docstring_documents_the_exit_codes() -> None:
    import langchain_multigateway.cli as cli

    assert cli.__doc__ is not None
    for line in ("0    ok", "2    usage or configuration error", "3    provider unreachable", "130  interrupted"):
        assert line in cli.__doc__


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["no-such-command"])
    assert done.value.code == 2
    with pytest.raises(SystemExit) as done:
        main(["batch", "in.jsonl"])  # --out missing
    assert done.value.code == 2


def test_the_console_script_entry_point_still_works() -> None:
    from langchain_multigateway.__main__ import main as entry

    assert entry is main
    found = subprocess.run(
        [sys.executable, "-m", "langchain_multigateway", "providers"], capture_output=True, text=True, timeout=120
    )
    assert found.returncode == 0
    assert "scripted" in found.stdout


def test_bad_config_prints_the_configuration_error_as_is(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, "models:\n  fast:\n    provider: openai\n    temprature: 0\n")
    assert main(["chat", "hi", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {config}")
    assert "models.fast" in err
    assert "temprature" in err
    assert "Traceback" not in err


def test_unknown_provider_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["chat", "hi", "--model", "nosuch:model"]) == 2
    assert "unknown provider 'nosuch'" in capsys.readouterr().err


def test_missing_key_names_the_variable(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["chat", "hi", "--model", "openai:gpt-4o-mini"]) == 2
    err = capsys.readouterr().err
    assert "OPENAI_API_KEY" in err
    assert "Traceback" not in err


def test_no_model_at_all_says_how_to_name_one(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["chat", "hi"]) == 2
    assert "DEFAULT_LLM_MODEL" in capsys.readouterr().err


def test_unreachable_server_exits_3_with_a_hint(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "placeholder")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    assert main(["chat", "hi", "--model", "openai:gpt-4o-mini", "--no-ledger"]) == 3
    err = capsys.readouterr().err
    assert "GatewayConnectionError" in err
    assert "hint: is the server running" in err
    assert "Traceback" not in err


def test_debug_shows_the_traceback_and_keeps_the_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    plain = main(["chat", "hi", "--model", "nosuch:model"])
    assert "Traceback" not in capsys.readouterr().err
    for argv in (
        ["--debug", "chat", "hi", "--model", "nosuch:model"],
        ["chat", "hi", "--model", "nosuch:model", "--debug"],
    ):
        assert main(argv) == plain == 2
        err = capsys.readouterr().err
        assert "Traceback (most recent call last)" in err
        assert "error: " in err
        assert "unknown provider" in err


def test_exit_codes_by_error_class() -> None:
    refused = GatewayConnectionError("refused")
    assert exit_code_for(refused) == 3
    assert exit_code_for(AuthenticationError("bad key", status_code=401)) == 3
    assert exit_code_for(ProviderError("boom", status_code=500)) == 1
    assert exit_code_for(RuntimeError("x")) == 1
    all_down = AllDeploymentsFailedError("all failed", [AttemptRecord("a", refused, 1.0)])
    assert exit_code_for(all_down) == 3
    mixed = AllDeploymentsFailedError(
        "all failed", [AttemptRecord("a", refused, 1), AttemptRecord("b", ValueError(), 1)]
    )
    assert exit_code_for(mixed) == 1
    assert "check the API key" in message_for(AuthenticationError("bad key"))
    assert message_for(RuntimeError("x")) == "RuntimeError: x"


def test_an_unexpected_failure_is_one_line_and_exit_1(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from langchain_multigateway.cli import providers

    def broken(args: object) -> int:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(providers, "run", broken)
    assert main(["providers"]) == 1
    assert capsys.readouterr().err.strip() == "error: RuntimeError: disk on fire"


def test_keyboard_interrupt_exits_130(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from langchain_multigateway.cli import providers

    def interrupted(args: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(providers, "run", interrupted)
    assert main(["providers"]) == 130
    assert "interrupted" in capsys.readouterr().err


def test_providers_lists_each_with_default_model_and_origin(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["providers"]) == 0
    out = capsys.readouterr().out
    assert "default model" in out
    assert "origin" in out
    for name, default in (("openai", "gpt-4o-mini"), ("anthropic", "claude-haiku-4-5"), ("scripted", "scripted-model")):
        line = next(line for line in out.splitlines() if line.startswith(name + " "))
        assert default in line
        assert "builtin" in line


def test_a_registered_provider_shows_its_origin(capsys: pytest.CaptureFixture[str]) -> None:
    from langchain_multigateway.registry import register_provider, unregister_provider
    from langchain_multigateway.testing import ScriptedChatModel

    register_provider("acme", ScriptedChatModel, default_model="acme-1", prefixes=("acme-",))
    try:
        assert main(["providers"]) == 0
    finally:
        unregister_provider("acme")
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("acme "))
    assert "acme-1" in line
    assert "registered" in line
    assert "ScriptedChatModel" in line
