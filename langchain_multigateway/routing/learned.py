"""What a try reads of the rate limits a provider announced, and how admission counts against them.

The provider models put the limits their response headers announced in
``response_metadata["rate_limits"]`` (or, on an error, an attribute of that name);
a LangChain model that passes its raw headers on (``response_metadata["headers"]``,
langchain-openai's ``include_response_headers=True``) is read too. The router notes them
in its state when the try is released; each admission counts against the newest
announcement (see :mod:`langchain_multigateway.state.learned`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from langchain_multigateway.chat_models._ratelimit_headers import RATE_LIMITS_KEY, rate_limits_from_headers
from langchain_multigateway.routing.request import Request, estimate_tokens
from langchain_multigateway.state.base import Admission, RouterState

__all__ = ["announced", "announced_by_error", "take_learned"]


def announced(meta: Mapping[str, Any] | None) -> Mapping[str, float] | None:
    """The limits an answer's ``response_metadata`` carries, if any."""
    if not meta:
        return None
    found = meta.get(RATE_LIMITS_KEY)
    if found is not None and isinstance(found, Mapping):  # None first: an ABC's isinstance is slow
        return found
    headers = meta.get("headers")
    return rate_limits_from_headers(headers) if headers is not None and isinstance(headers, Mapping) else None


def announced_by_error(error: BaseException) -> Mapping[str, float] | None:
    """The limits a provider error carries (its response's headers), if any."""
    found = getattr(error, RATE_LIMITS_KEY, None)
    return found if isinstance(found, Mapping) else None


def take_learned(state: RouterState, name: str, request: Request) -> Admission | int:
    """Count this try against ``name``'s announced budget: the tokens counted, or the refusal."""

    def tokens() -> int:
        prompt = request.info.input_tokens or estimate_tokens(request.messages)[0]
        return prompt + request.output_tokens

    return state.learned.take(name, tokens)
