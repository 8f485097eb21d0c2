"""The text in a message's content, read one way for every reader that wants only its words.

Content is a string, or a list of blocks in LangChain's and OpenAI's shape: strings and
``{"type": "text", "text": ...}`` dicts carry text; images, audio, files and tool blocks do
not. Each reader joins the parts as its use needs (a cache key with spaces, a token count
with nothing), so the parts, not one joined string, are what is shared.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["text_parts"]


def text_parts(content: Any) -> list[str]:
    """The text parts of ``content`` in order: a string whole, else its string blocks and the
    ``text`` of its dict blocks; other content (not a string nor a list) as its ``str()``."""
    if isinstance(content, str):
        return [content]
    if not isinstance(content, Sequence):
        return [str(content)]
    parts = []
    for block in content:
        if isinstance(block, str):
            parts.append(block)
        elif isinstance(block, dict) and isinstance(block.get("text"), str):
            parts.append(block["text"])
    return parts
