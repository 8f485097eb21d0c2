"""Adversarial review of issue 11: each test is an attack that broke the landed code, kept so it stays fixed."""

from __future__ import annotations

from pathlib import Path

import pytest

from langchain_multigateway.config import load_config
from langchain_multigateway.errors import ConfigurationError


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
