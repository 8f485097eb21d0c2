"""Capability profiles of well-known models, for ``BaseChatModel.profile``.

Figures are the providers' published context and output limits (model pages
of OpenAI, Mistral and Anthropic, as read in 2025-2026). Longest prefix wins,
so dated snapshots (``gpt-4o-2024-08-06``) inherit their family's profile.
A model not listed here has no profile (``None``): the router then relies on
what a deployment states.
"""

from __future__ import annotations

from typing import Any

from langchain_core.language_models import ModelProfile

__all__ = ["profile_for"]


def _p(
    max_in: int,
    max_out: int,
    *,
    images: bool = True,
    tools: bool = True,
    schema: bool = True,
    reasoning: bool = False,
) -> dict[str, Any]:
    profile = {
        "max_input_tokens": max_in,
        "max_output_tokens": max_out,
        "text_inputs": True,
        "image_inputs": images,
        "tool_calling": tools,
        "structured_output": schema,
    }
    if reasoning:  # thinks before answering: longer default first-token limits
        profile["reasoning_output"] = True
    return profile


_PROFILES: dict[str, dict[str, dict[str, Any]]] = {
    "openai": {
        "gpt-4o": _p(128_000, 16_384),
        "gpt-4o-mini": _p(128_000, 16_384),
        "gpt-4.1": _p(1_047_576, 32_768),
        "gpt-4-turbo": _p(128_000, 4_096),
        "gpt-3.5-turbo": _p(16_385, 4_096, images=False),
        "o1": _p(200_000, 100_000, reasoning=True),
        "o3": _p(200_000, 100_000, reasoning=True),
        "o4-mini": _p(200_000, 100_000, reasoning=True),
        "gpt-5": _p(400_000, 128_000, reasoning=True),
    },
    "mistral": {
        "mistral-large": _p(128_000, 128_000, images=False),
        "mistral-medium": _p(128_000, 128_000),
        "mistral-small": _p(128_000, 128_000),
        "ministral": _p(128_000, 128_000, images=False),
        "codestral": _p(256_000, 256_000, images=False),
        "open-mistral-nemo": _p(128_000, 128_000, images=False),
        "pixtral": _p(128_000, 128_000),
    },
    "anthropic": {
        "claude-3-5-haiku": _p(200_000, 8_192),
        "claude-3-5-sonnet": _p(200_000, 8_192),
        "claude-3-7-sonnet": _p(200_000, 64_000),
        "claude-sonnet-4": _p(200_000, 64_000),
        "claude-opus-4": _p(200_000, 32_000),
        "claude-haiku-4": _p(200_000, 64_000),
    },
}


def profile_for(provider: str, model: str) -> ModelProfile | None:
    """The known profile of ``model`` at ``provider``, or None."""
    table = _PROFILES.get(provider)
    if not table:
        return None
    name = model.lower().rsplit("/", 1)[-1]
    best = max((prefix for prefix in table if name.startswith(prefix)), key=len, default=None)
    if best is None:
        return None
    profile: ModelProfile = {**table[best]}  # type: ignore[typeddict-item]
    return profile
