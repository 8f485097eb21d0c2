"""LangSmith's standard call parameters, built the same way by every chat model here."""

from __future__ import annotations

from typing import Any

from langchain_core.language_models import LangSmithParams

__all__ = ["langsmith_params"]


def langsmith_params(
    provider: str,
    model: str,
    *,
    temperature: float | None,
    max_tokens: int | None,
    stop: list[str] | None,
    call_kwargs: dict[str, Any],
) -> LangSmithParams:
    """``ls_*`` params; a per-call ``model`` / ``temperature`` / ``max_tokens`` / ``stop`` wins."""
    params = LangSmithParams(ls_provider=provider, ls_model_name=call_kwargs.get("model", model), ls_model_type="chat")
    temperature = call_kwargs.get("temperature", temperature)
    if temperature is not None:
        params["ls_temperature"] = temperature
    max_tokens = call_kwargs.get("max_tokens", max_tokens)
    if max_tokens is not None:
        params["ls_max_tokens"] = max_tokens
    if stop:
        params["ls_stop"] = stop
    return params
