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
    pdf: bool = False,
    audio: bool = False,
    temperature: bool = True,
) -> dict[str, Any]:
    return {
        "max_input_tokens": max_in,
        "max_output_tokens": max_out,
        "text_inputs": True,
        "image_inputs": images,
        "pdf_inputs": pdf,
        "audio_inputs": audio,
        "video_inputs": False,
        "text_outputs": True,
        "tool_calling": tools,
        "tool_choice": tools,
        "structured_output": schema,
        # Thinks before answering: longer default first-token limits, reasoning_effort / thinking taken.
        "reasoning_output": reasoning,
        # OpenAI's reasoning models reject any temperature but the default.
        "temperature": temperature,
    }


def _openai_reasoning(max_in: int, max_out: int) -> dict[str, Any]:
    return _p(max_in, max_out, reasoning=True, pdf=True, temperature=False)


# OpenAI: PDFs as ``file`` parts on vision models; audio only on the gpt-4o audio previews (not listed).
# Mistral: images on the vision models (Pixtral, Medium/Small 3.x), documents through document_url; audio on
# Voxtral. Anthropic: PDFs and images on every Claude 3.5+ model; no audio; extended thinking from 3.7.
_PROFILES: dict[str, dict[str, dict[str, Any]]] = {
    "openai": {
        "gpt-4o": _p(128_000, 16_384, pdf=True),
        "gpt-4o-mini": _p(128_000, 16_384, pdf=True),
        "gpt-4o-audio": _p(128_000, 16_384, images=False, audio=True),
        "gpt-4o-mini-audio": _p(128_000, 16_384, images=False, audio=True),
        "gpt-4.1": _p(1_047_576, 32_768, pdf=True),
        "gpt-4-turbo": _p(128_000, 4_096),
        "gpt-3.5-turbo": _p(16_385, 4_096, images=False),
        "o1": _openai_reasoning(200_000, 100_000),
        "o3": _openai_reasoning(200_000, 100_000),
        "o4-mini": _openai_reasoning(200_000, 100_000),
        "gpt-5": _openai_reasoning(400_000, 128_000),
        "gpt-5-chat": _p(128_000, 16_384, pdf=True),
    },
    "mistral": {
        "mistral-large": _p(128_000, 128_000, images=False, pdf=True),
        "mistral-medium": _p(128_000, 128_000, pdf=True),
        "mistral-small": _p(128_000, 128_000, pdf=True),
        "magistral": _p(128_000, 40_000, images=False, reasoning=True),
        "ministral": _p(128_000, 128_000, images=False),
        "codestral": _p(256_000, 256_000, images=False),
        "open-mistral-nemo": _p(128_000, 128_000, images=False),
        "pixtral": _p(128_000, 128_000, pdf=True),
        "voxtral": _p(32_000, 32_000, images=False, audio=True),
    },
    "anthropic": {
        "claude-3-5-haiku": _p(200_000, 8_192, pdf=True),
        "claude-3-5-sonnet": _p(200_000, 8_192, pdf=True),
        "claude-3-7-sonnet": _p(200_000, 64_000, pdf=True, reasoning=True),
        "claude-sonnet-4": _p(200_000, 64_000, pdf=True, reasoning=True),
        "claude-opus-4": _p(200_000, 32_000, pdf=True, reasoning=True),
        "claude-haiku-4": _p(200_000, 64_000, pdf=True, reasoning=True),
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
