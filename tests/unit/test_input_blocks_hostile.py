"""Malformed standard blocks are refused with the typed error, never a bare KeyError or a 400 later."""

from __future__ import annotations

from typing import Any

import pytest

from langchain_multigateway.chat_models._input_blocks import UnsupportedInputBlockError, input_block


@pytest.mark.parametrize("provider", ["openai", "mistral", "anthropic"])
@pytest.mark.parametrize(
    "block",
    [
        {"type": "file", "source_type": "id"},  # a v0 id block without its id
        {"type": "file", "source_type": "id", "id": None},
        {"type": "image", "base64": None},
        {"type": "image", "file_id": 12},
        {"type": "image"},
    ],
)
def test_a_block_without_its_data_is_refused_by_type(provider: str, block: dict[str, Any]) -> None:
    with pytest.raises(UnsupportedInputBlockError, match=f"cannot be sent to {provider}"):
        input_block(provider, block)


def test_a_url_with_credentials_is_not_quoted_in_the_refusal() -> None:
    block = {"type": "audio", "url": "https://user:s3cr3t@example.com/clip.wav?api_key=sk-planted"}
    with pytest.raises(UnsupportedInputBlockError) as info:
        input_block("openai", block)
    said = f"{info.value} {info.value!r} {info.value.args}"
    assert "s3cr3t" not in said
    assert "sk-planted" not in said
