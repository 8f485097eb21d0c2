"""Prompt-cache affinity: which deployments a conversation belongs to, by rendezvous hashing.

Providers keep a request's prompt prefix cached for a while (OpenAI, Anthropic, Mistral,
llama.cpp) and charge less, or answer sooner, when the next request starts with it. A
strategy that spreads requests (round robin, least busy, ...) sends each turn of a
conversation somewhere else and loses that cache. With affinity, every request of one
conversation ranks the deployments the same way, so it goes to the same one while that
one stays able and admitted, and to the same second choice while it does not.

The conversation is named by an explicit key (``session_id`` in the call's metadata or
kwargs, LangGraph's ``thread_id``, or OpenAI's ``prompt_cache_key``) or, without one, by its
prefix: the leading system messages and the first message after them, which every later
turn repeats. A lone message (no system prompt, no history) has no key: nothing in it is
repeated later, and identical one-shot prompts should still spread. Rendezvous
(highest-random-weight) hashing needs no shared table: each process ranks alike, a new
deployment takes only the keys it now wins, and one that leaves moves only its own keys.
Weights are honoured (weighted rendezvous), so distinct conversations still split by ``weight``.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.messages import BaseMessage

from langchain_multigateway.routing.deployment import Deployment

__all__ = ["SESSION_KEYS", "affinity_key", "named", "rendezvous"]

SESSION_KEYS = ("session_id", "thread_id")
"""Run metadata naming a conversation, in the order read (``thread_id`` is LangGraph's)."""

_HEAD_CHARS = 4096
"""Characters of each prefix message hashed: a longer tail changes nothing a cache key needs
(two conversations alike for 4 KB share most of a cached prefix anyway), and a 400 KB prompt
is not hashed whole on every call."""
_SCALE = float(1 << 64)
_blake2b = hashlib.blake2b
_log = math.log
_LOG_U: dict[bytes, float] = {}
"""``ln(u)`` per (key, deployment name): every turn of a conversation ranks by the same draws, so each is
hashed once, not on every call (a few microseconds per deployment ranked)."""
_LOG_U_LIMIT = 16_384
"""Draws remembered before the memo starts over (about 2 MB)."""


def _text(message: BaseMessage) -> str:
    content = message.content
    if isinstance(content, str):
        return content
    parts = []
    for block in content:
        if isinstance(block, str):
            parts.append(block)
        elif isinstance(block, Mapping):
            text = block.get("text")
            parts.append(text if isinstance(text, str) else str(block.get("type", "")))
    return "\n".join(parts)


def named(session: Any) -> bool:
    """Whether ``session`` names a conversation: not None, not empty text (and never compared with
    ``==``, which an array answers with an array)."""
    return session is not None and not (isinstance(session, (str, bytes)) and not session)


def affinity_key(messages: Sequence[BaseMessage], session: Any = None) -> bytes | None:
    """The conversation's key: its ``session`` when given, else a digest of its prefix.

    None for a lone message (no system prompt, no history): nothing in it is repeated by a
    later request, so the strategy places it (``invoke("hi")`` still rotates round robin).
    """
    if named(session):
        # Digested, so a session id of any length costs one short hash per deployment ranked; any
        # value names a conversation by its text (an int, a UUID, an array), never compared as such.
        text = session if isinstance(session, str) else str(session)
        return b"s\0" + hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()
    if len(messages) < 2:
        return None
    digest = hashlib.blake2b(digest_size=16)
    for message in messages:
        text = _text(message)
        digest.update(f"{message.type}\0{len(text)}\0{text[:_HEAD_CHARS]}".encode("utf-8", "replace"))
        if message.type != "system":
            break  # the first message after the system prompt ends the prefix every turn repeats
    return b"p\0" + digest.digest()


def _score(prefix: bytes, dep: Deployment) -> float:
    """Weighted rendezvous score: ``-weight / ln(u)``, ``u`` uniform in (0, 1) from hash(key, name).

    ``prefix`` is the key and its separator (``key + b"\\0"``), joined once per ranking.
    """
    weight = dep.weight
    if weight <= 0:
        return -math.inf
    hashed = prefix + dep.name.encode("utf-8", "replace")
    log_u = _LOG_U.get(hashed)
    if log_u is None:
        raw = _blake2b(hashed, digest_size=8).digest()
        log_u = _log((int.from_bytes(raw, "big") + 0.5) / _SCALE)
        if len(_LOG_U) >= _LOG_U_LIMIT:
            _LOG_U.clear()
        _LOG_U[hashed] = log_u
    return -weight / log_u


def rendezvous(candidates: Sequence[Deployment], key: bytes) -> list[Deployment]:
    """``candidates`` ranked for ``key``: the same key ranks the same deployments the same way."""
    # Ties (weight 0, or an infinite weight) keep the listed order, as the strategies' ties do.
    prefix = key + b"\0"
    scored = sorted([(-_score(prefix, dep), index) for index, dep in enumerate(candidates)])
    return [candidates[index] for _, index in scored]
