"""Adversarial review of issue 11: each test is an attack that broke the landed code, kept so it stays fixed."""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from langchain_multigateway.config import load_config
from langchain_multigateway.errors import ConfigurationError
from langchain_multigateway.usage import CallRecord, Ledger
from langchain_multigateway.usage import ledger as ledger_module


# ---------------------------------------------------------------------- config files
def test_config_that_is_not_utf8_is_a_located_configuration_error(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_bytes(b"models:\n  a:\n    provider: openai\n    model: gpt\xff\xfe\n")
    with pytest.raises(ConfigurationError, match=r"line 4: the file is not UTF-8 text \(byte 0xff\)") as info:
        load_config(path, env={})
    assert info.value.line == 4


@pytest.mark.parametrize("nested", ["[" * 3000 + "]" * 3000, "{a: " * 3000 + "1" + "}" * 3000])
def test_config_nested_past_the_stack_is_a_configuration_error(tmp_path: Path, nested: str) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(f"models: {nested}\n", encoding="utf-8")
    with pytest.raises(ConfigurationError, match="nested too deeply"):
        load_config(path, env={})


def test_a_repeated_model_name_is_refused_not_silently_dropped(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(
        "models:\n  a:\n    provider: openai\n    model: gpt\n  a:\n    provider: mistral\n    model: m\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigurationError, match=r"line 5, models\.a: the key is repeated \(first at line 2\)"):
        load_config(path, env={})


def test_merge_keys_are_not_taken_for_repeated_keys(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(
        "models:\n"
        "  a: &base {provider: openai, model: gpt, api_key: placeholder-key}\n"
        "  b:\n    <<: *base\n    model: other\n"
        "  c:\n    <<: [*base]\n    model: third\n",
        encoding="utf-8",
    )
    config = load_config(path, env={})
    assert sorted(config.models) == ["a", "b", "c"]
    assert config.models["b"].model == "other"


# ---------------------------------------------------------------------- ledger sidecar
def _record(model: str = "gpt-4o-mini") -> CallRecord:
    now = time.time()
    return CallRecord(
        run_id=str(uuid.uuid4()),
        started_at=now - 0.1,
        ended_at=now,
        latency_ms=100.0,
        provider="openai",
        model=model,
        deployment="primary",
        outcome="ok",
        input_tokens=10,
        output_tokens=5,
        total_tokens=15,
        cost_usd=1e-6,
        has_usage=True,
    )


def test_a_spill_racing_an_import_is_not_written_to_the_removed_sidecar(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two ledgers on one file (as two processes): B opens the sidecar to append, A imports and
    removes it before B takes the lock. B's record must land in a sidecar that still exists."""
    db = tmp_path / "calls.sqlite3"
    with Ledger(db) as importer, Ledger(db) as spiller:
        spiller._writer._spill(_record("first"))  # a record waiting in the sidecar
        real_lock = ledger_module._locked
        raced: list[bool] = []

        @contextlib.contextmanager
        def lock_after_an_import(handle: IO[str]) -> Iterator[None]:
            if not raced:
                raced.append(True)
                importer._writer.import_spill(wait=True)  # between the spiller's open and its lock
            with real_lock(handle):
                yield

        monkeypatch.setattr(ledger_module, "_locked", lock_after_an_import)
        spiller._writer._spill(_record("second"))
        monkeypatch.undo()
        assert raced
        importer.flush()
        assert sorted(r["model"] for r in importer.records()) == ["first", "second"]


def test_a_corrupt_byte_in_the_sidecar_spoils_one_line_not_the_ledger(tmp_path: Path) -> None:
    db = tmp_path / "calls.sqlite3"
    spill = Path(str(db) + ".spill.jsonl")
    good = json.dumps({"spill_id": "a" * 32, "record": _record("kept").to_dict()})
    spill.write_bytes(good.encode() + b"\n" + b'{"spill_id": \xff\xfe broken\n')
    with Ledger(db) as ledger:  # opening imports the sidecar
        ledger.add(_record("later"))
        ledger.flush()
        assert sorted(r["model"] for r in ledger.records()) == ["kept", "later"]
    assert not spill.exists()
    assert "broken" in Path(str(spill) + ".rejected").read_text(encoding="utf-8")
