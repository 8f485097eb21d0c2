"""Helpers for the ``multigateway`` CLI tests: a scripted config, a slow scripted provider."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

ROUTED_CONFIG = """\
models:
  a: {provider: scripted, model: scripted-a, default_reply: "answer from a"}
  b: {provider: scripted, model: scripted-b, default_reply: "answer from b"}
routers:
  main:
    strategy: ordered
    deployments: [a, b]
  backwards:
    deployments: [b, a]
"""


@pytest.fixture(autouse=True)
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every CLI test writes its ledger under tmp_path and sees no real keys."""
    ledger = tmp_path / "ledger.sqlite3"
    monkeypatch.setenv("MULTIGATEWAY_LEDGER", str(ledger))
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "DEFAULT_LLM_MODEL", "MISTRAL_API_KEY", "ANTHROPIC_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    return ledger


def ledger_file() -> Path:
    """The ledger the ``cli_env`` fixture points the CLI at."""
    return Path(os.environ["MULTIGATEWAY_LEDGER"])


def write_config(tmp_path: Path, text: str = ROUTED_CONFIG) -> Path:
    path = tmp_path / "gateway.yaml"
    path.write_text(text)
    return path


def write_rows(path: Path, count: int, **extra: Any) -> Path:
    with path.open("w") as handle:
        for i in range(count):
            handle.write(json.dumps({"id": f"row-{i}", "prompt": f"question {i}", **extra}) + "\n")
    return path


def read_rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def slow_main() -> None:  # pragma: no cover - runs in a subprocess
    """``python -m tests.unit._cli_helpers ARGS``: the CLI with a ``slow`` scripted provider."""
    from langchain_multigateway.cli import main
    from langchain_multigateway.registry import register_provider
    from langchain_multigateway.testing.scripted import ScriptedChatModel, Step

    def slow(model: str = "slow-model", **params: Any) -> ScriptedChatModel:
        return ScriptedChatModel(model=model, steps=[Step(reply="slow answer", latency=0.05)], exhausted="cycle")

    register_provider("slow", slow, default_model="slow-model")
    sys.exit(main(sys.argv[1:]))


if __name__ == "__main__":  # pragma: no cover
    slow_main()
