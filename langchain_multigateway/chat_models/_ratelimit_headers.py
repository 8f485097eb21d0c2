"""The rate limits a provider announces in its response headers, read into one small dict.

Read on every response, success or error, so the router can stop sending to a deployment
whose budget is spent before that deployment answers 429. The wire formats:

* OpenAI (and Azure OpenAI, vLLM, LiteLLM proxies): ``x-ratelimit-limit-requests``,
  ``x-ratelimit-remaining-requests``, ``x-ratelimit-reset-requests`` and the same three for
  ``-tokens``; resets are Go-style durations (``1s``, ``6m0s``, ``20ms``, ``1h2m3.5s``).
* Anthropic: ``anthropic-ratelimit-requests-limit`` / ``-remaining`` / ``-reset`` and the same
  for ``-tokens`` (else ``-input-tokens``); resets are RFC 3339 times.
* ``retry-after-ms`` (milliseconds) or ``Retry-After`` (seconds or an HTTP date).

The result uses the keys of :data:`FIELDS`, in seconds and counts; a value that is missing,
negative or not a number is left out (a hostile header cannot make a count negative), and
waits are capped at :data:`MAX_WAIT` so a wrong header keeps a deployment out for a minute
at most, not for hours.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from langchain_multigateway.errors import parse_retry_after

__all__ = ["FIELDS", "MAX_WAIT", "RATE_LIMITS_KEY", "parse_duration", "rate_limits_from_headers", "rate_limits_of"]

RATE_LIMITS_KEY = "rate_limits"
"""The ``response_metadata`` key (and error attribute) carrying the parsed limits."""
FIELDS = (
    "limit_requests",
    "remaining_requests",
    "reset_requests",
    "limit_tokens",
    "remaining_tokens",
    "reset_tokens",
    "retry_after",
)
MAX_WAIT = 60.0
"""Longest wait (seconds) one header may impose."""

_OPENAI = {
    "limit_requests": "x-ratelimit-limit-requests",
    "remaining_requests": "x-ratelimit-remaining-requests",
    "reset_requests": "x-ratelimit-reset-requests",
    "limit_tokens": "x-ratelimit-limit-tokens",
    "remaining_tokens": "x-ratelimit-remaining-tokens",
    "reset_tokens": "x-ratelimit-reset-tokens",
}
_ANTHROPIC = "anthropic-ratelimit-"
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def parse_duration(text: str) -> float | None:
    """Seconds in ``"6m0s"`` / ``"20ms"`` / ``"1.5"`` (plain numbers are seconds); None if unreadable."""
    text = text.strip().lower()
    try:
        value = float(text)
    except ValueError:
        pass
    else:
        return value if math.isfinite(value) and value >= 0 else None
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    return sum(float(n) * _UNIT[u] for n, u in parts)


def _until(text: str, now: float) -> float | None:
    """Seconds from ``now`` to an RFC 3339 time, or a duration's seconds."""
    seconds = parse_duration(text)
    if seconds is not None:
        return seconds
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now)


def _count(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = float(text.strip())
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def rate_limits_from_headers(headers: Mapping[str, str] | None, *, now: float | None = None) -> dict[str, float] | None:
    """The announced limits in ``headers`` (keys of :data:`FIELDS`), or None when there are none."""
    if not headers:
        return None
    lowered = {str(k).lower(): str(v) for k, v in headers.items()}
    when = time.time() if now is None else now
    found: dict[str, float] = {}
    names = dict(_OPENAI)
    if f"{_ANTHROPIC}requests-remaining" in lowered or f"{_ANTHROPIC}tokens-remaining" in lowered:
        tokens = "tokens" if f"{_ANTHROPIC}tokens-remaining" in lowered else "input-tokens"
        for kind, prefix in (("requests", "requests"), ("tokens", tokens)):
            names[f"limit_{kind}"] = f"{_ANTHROPIC}{prefix}-limit"
            names[f"remaining_{kind}"] = f"{_ANTHROPIC}{prefix}-remaining"
            names[f"reset_{kind}"] = f"{_ANTHROPIC}{prefix}-reset"
    elif f"{_ANTHROPIC}input-tokens-remaining" in lowered:
        names["limit_tokens"] = f"{_ANTHROPIC}input-tokens-limit"
        names["remaining_tokens"] = f"{_ANTHROPIC}input-tokens-remaining"
        names["reset_tokens"] = f"{_ANTHROPIC}input-tokens-reset"
    for key, header in names.items():
        raw = lowered.get(header)
        if raw is None:
            continue
        # A header sent twice (a proxy's own limits and its upstream's) arrives comma-joined: the
        # tightest reading wins (the fewest left, the latest reset), not neither.
        if key.startswith("reset"):
            resets = [v for v in (_until(part, when) for part in raw.split(",")) if v is not None]
            if resets:
                found[key] = min(max(resets), MAX_WAIT)
        else:
            counts = [v for v in (_count(part) for part in raw.split(",")) if v is not None]
            if counts:
                found[key] = min(counts)
    wait = parse_retry_after(lowered, now=when)
    if wait is not None and math.isfinite(wait):
        found["retry_after"] = min(wait, MAX_WAIT)
    return found or None


def rate_limits_of(exc: BaseException) -> dict[str, float] | None:
    """The limits in the headers of the HTTP response an SDK or transport error carries (``exc.response``)."""
    for attr in ("response", "raw_response"):
        response: Any = getattr(exc, attr, None)
        headers = getattr(response, "headers", None)
        if isinstance(headers, Mapping):
            return rate_limits_from_headers(headers)
    return None
