"""``text_parts``: the text of a message's content, shared by the cache key, the token count and
the input check (``_content.py``)."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.messages import HumanMessage

from langchain_multigateway._content import text_parts
from langchain_multigateway.cache.keys import request_keys
from langchain_multigateway.tokens import count_message_tokens

IMAGE = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}


@pytest.mark.parametrize(
    ("content", "parts"),
    [
        ("plain", ["plain"]),
        ("", [""]),
        (["a", {"type": "text", "text": "b"}, IMAGE, {"type": "text", "text": 5}], ["a", "b"]),
        ([IMAGE], []),
        (None, ["None"]),  # not a string nor a list: its str(), as the token count always read it
    ],
)
def test_text_parts_keeps_strings_and_text_blocks_and_nothing_else(content: Any, parts: list[str]) -> None:
    assert text_parts(content) == parts


def test_the_cache_key_joins_the_parts_with_spaces_and_the_token_count_with_nothing() -> None:
    blocks = [{"type": "text", "text": "capital of"}, IMAGE, {"type": "text", "text": "France"}]
    keys = request_keys("scope", [HumanMessage(content=blocks)], params={})
    assert keys.text == "capital of France"
    joined = count_message_tokens([{"role": "user", "content": "capital ofFrance"}])
    assert count_message_tokens([{"role": "user", "content": blocks}]) == joined
