"""Which call parameters each provider's API takes, and how the common ones translate between them.

A call's kwargs (``invoke(..., prompt_cache_key=..., reasoning_effort=...)``) are
written for one API; sent unchanged to another provider they end in a 400 (or, with
the mistralai SDK, a ``TypeError``). :func:`fit_params` gives each model the call's
parameters in its own terms:

* accepted as they are when the provider's API takes them (OpenAI's and Mistral's lists
  are read from their SDKs' ``create`` / ``complete`` signatures; Anthropic's and
  Ollama's are the documented request fields);
* translated where the meaning carries over (the table below);
* otherwise dropped, each with the reason, which the router reports in
  ``response_metadata["dropped_params"]`` (or refuses with ``strict_params=True``).

==========================  =====================================  ==========================  ======================
parameter                   openai                                 anthropic                   ollama / mistral
==========================  =====================================  ==========================  ======================
``max_tokens``              ``max_completion_tokens`` for          as is                       as is
                            reasoning models (o1, o3, gpt-5 …)
``max_completion_tokens``   as is                                  ``max_tokens``              ``max_tokens``
``reasoning_effort``        as is (dropped for a model whose       ``thinking`` with a         ollama: ``think``;
                            profile says it does not reason)       budget (low 1024, medium    mistral: as is
                                                                   4096, high 16384 tokens)
``thinking``                ``reasoning_effort`` from the budget   as is                       ollama: ``think``
``temperature``             dropped for models that take none      dropped (not 1) with        as is
                            (profile ``temperature=False``: o1,    extended thinking
                            o3, gpt-5 …)
==========================  =====================================  ==========================  ======================

Refused before any deployment is tried (the same at every one): ``max_tokens`` and
``max_completion_tokens`` given with two values, a ``reasoning_effort`` OpenAI does not
document. A ``None`` value means "not set": left out where the API has no such field,
never reported as dropped nor refused by ``strict_params``.

An OpenAI model pointed at another server (``base_url``: llama.cpp, vLLM …) keeps
parameters beyond OpenAI's list (``top_k``, ``min_p``, ``repetition_penalty`` …): such
servers take more; only Anthropic's and Ollama's native fields are dropped for them.
A model of another package is given the kwargs unchanged, unless it declares
``accepted_call_params`` (a set of names) itself.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from langchain_multigateway.chat_models._ollama_format import OPTION_FIELDS

__all__ = [
    "EFFORTS",
    "EFFORT_BUDGETS",
    "ParamFit",
    "check_common",
    "fit_params",
    "param_fit",
    "reasoning_effort_for_budget",
]

EFFORT_BUDGETS = {"minimal": 1024, "low": 1024, "medium": 4096, "high": 16384, "xhigh": 32768}
"""Anthropic ``thinking.budget_tokens`` for an OpenAI-style ``reasoning_effort`` (1024 is Anthropic's minimum)."""

EFFORTS = frozenset({"none", *EFFORT_BUDGETS})
"""The ``reasoning_effort`` values OpenAI documents; anything else is refused before sending (every API would 400)."""

_ALWAYS = frozenset({"timeout", "stop", "tools", "tool_choice", "model", "ls_structured_output_format", "stream"})
"""Handled by every provider of ours (or by the call template) whatever the API."""

_ANTHROPIC = frozenset(
    {
        "max_tokens",
        "temperature",
        "top_p",
        "top_k",
        "stop_sequences",
        "metadata",
        "thinking",
        "service_tier",
        "parallel_tool_calls",  # AnthropicChatModel sends it as tool_choice.disable_parallel_tool_use
        "system",
        "container",
        "mcp_servers",
        "context_management",
    }
)
"""The Messages API's request fields (docs.anthropic.com, "Create a Message")."""

_OLLAMA = frozenset(
    {
        "temperature",
        "max_tokens",
        "options",
        "keep_alive",
        "format",
        "think",
        "reasoning",
        "num_predict",
        *OPTION_FIELDS,
    }
)
"""/api/chat's fields and the model options OllamaChatModel lifts from call kwargs."""

_RESPONSES = frozenset(
    {"reasoning", "max_output_tokens", "previous_response_id", "include", "instructions", "text", "truncation"}
)
"""What the OpenAI Responses API adds (used when the model speaks it)."""

_NOT_IN_RESPONSES = frozenset({"seed", "frequency_penalty", "presence_penalty", "logit_bias", "n", "logprobs", "stop"})
"""Chat-completions parameters the Responses API has no field for."""


@cache
def _openai() -> frozenset[str]:
    from openai.resources.chat.completions import Completions

    names = set(inspect.signature(Completions.create).parameters)
    return frozenset(names - {"self", "messages", "extra_headers", "extra_query", "extra_body"})


@cache
def _mistral() -> frozenset[str]:
    from mistralai.client.chat import Chat

    names = set(inspect.signature(Chat.complete).parameters)
    return frozenset((names - {"self", "messages", "retries", "server_url", "timeout_ms", "http_headers"}) | {"seed"})


_NOT_OPENAI_COMPATIBLE = frozenset(
    {"thinking", "stop_sequences", "context_management", "container", "mcp_servers", "options", "keep_alive", "think"}
    | {"previous_response_id"}
)
"""Anthropic's and Ollama's native request fields: no OpenAI-compatible server reads them; nor a
Responses conversation id, which only a Responses-mode deployment may be given (it is in their
``accepted``): another deployment never stored that conversation and gets the whole history."""

_WHY_DROPPED = {
    "previous_response_id": "a Responses API conversation this deployment does not hold: the whole history is sent",
}


def reasoning_effort_for_budget(budget: Any) -> str:
    """An OpenAI ``reasoning_effort`` for an Anthropic thinking budget (tokens)."""
    tokens = budget if isinstance(budget, int) else EFFORT_BUDGETS["medium"]
    return "low" if tokens <= EFFORT_BUDGETS["low"] else "medium" if tokens <= EFFORT_BUDGETS["medium"] else "high"


# ---------------------------------------------------------------------- translations
# Each takes (value, model, kwargs being built) and returns the reason it dropped the value, or None.
Translate = Callable[[Any, Any, dict[str, Any]], str | None]


def _to(name: str) -> Translate:
    def rename(value: Any, model: Any, out: dict[str, Any]) -> None:
        out.setdefault(name, value)

    return rename


def _reasons(model: Any) -> bool | None:
    profile = getattr(model, "profile", None)
    found = profile.get("reasoning_output") if isinstance(profile, dict) else None
    return found if isinstance(found, bool) else None


def _openai_max_tokens(value: Any, model: Any, out: dict[str, Any]) -> None:
    # OpenAI's reasoning models reject max_tokens ("use max_completion_tokens instead").
    out.setdefault("max_completion_tokens" if _reasons(model) else "max_tokens", value)


def _openai_temperature(value: Any, model: Any, out: dict[str, Any]) -> str | None:
    profile = getattr(model, "profile", None)
    if isinstance(profile, dict) and profile.get("temperature") is False:
        return f"{model.model} takes no temperature (its profile says temperature=False)"
    out.setdefault("temperature", value)
    return None


def _openai_effort(value: Any, model: Any, out: dict[str, Any]) -> str | None:
    if _reasons(model) is False:
        return f"{model.model} does not reason (its profile says reasoning_output=False)"
    out.setdefault("reasoning_effort", value)
    return None


def _openai_thinking(value: Any, model: Any, out: dict[str, Any]) -> str | None:
    if not isinstance(value, Mapping) or value.get("type") != "enabled":
        return "thinking is Anthropic's; only an enabled budget translates to reasoning_effort"
    return _openai_effort(reasoning_effort_for_budget(value.get("budget_tokens")), model, out)


def _anthropic_effort(value: Any, model: Any, out: dict[str, Any]) -> str | None:
    if "thinking" in out:
        return "the call's own thinking setting says it for Anthropic"
    if value in ("none", None):
        out.setdefault("thinking", {"type": "disabled"})
        return None
    budget = EFFORT_BUDGETS.get(str(value))
    if budget is None:
        return f"reasoning_effort {value!r} has no thinking budget (use one of {sorted(EFFORT_BUDGETS)})"
    out.setdefault("thinking", {"type": "enabled", "budget_tokens": budget})
    answer = out.get("max_tokens") or getattr(model, "max_tokens", None) or 1024
    if (
        isinstance(answer, int) and answer <= budget
    ):  # Anthropic counts the thinking inside max_tokens: keep room for the answer
        out["max_tokens"] = budget + answer
    return None


def _ollama_effort(value: Any, model: Any, out: dict[str, Any]) -> None:
    out.setdefault("think", False if value == "none" else {"minimal": "low", "xhigh": "high"}.get(value, value))


def _ollama_thinking(value: Any, model: Any, out: dict[str, Any]) -> None:
    out.setdefault("think", isinstance(value, Mapping) and value.get("type") == "enabled")


_TRANSLATIONS: dict[str, dict[str, Translate]] = {
    "openai": {
        "max_tokens": _openai_max_tokens,
        "temperature": _openai_temperature,
        "reasoning_effort": _openai_effort,
        "thinking": _openai_thinking,
    },
    "anthropic": {"max_completion_tokens": _to("max_tokens"), "reasoning_effort": _anthropic_effort},
    "mistral": {"max_completion_tokens": _to("max_tokens")},
    "ollama": {
        "max_completion_tokens": _to("max_tokens"),
        "reasoning_effort": _ollama_effort,
        "thinking": _ollama_thinking,
    },
}


@dataclass(frozen=True, slots=True)
class ParamFit:
    """What one model's API takes, worked out once per model (the call path only looks names up)."""

    provider: str
    accepted: frozenset[str]
    open_ended: bool
    """Keep names beyond ``accepted`` (an OpenAI-compatible server), except other APIs' native fields."""
    translations: Mapping[str, Translate]


def _fit_of(model: Any) -> ParamFit | None:
    provider = getattr(model, "provider_name", None)
    declared = getattr(type(model), "accepted_call_params", None)  # on the class: no instance lookup per call
    if declared is not None:
        return ParamFit(str(provider), frozenset(declared), False, _TRANSLATIONS.get(str(provider), {}))
    if provider not in _TRANSLATIONS:
        return None
    open_ended = False
    if provider == "openai":
        responses = bool(getattr(model, "responses_api", False))
        accepted = (_openai() - _NOT_IN_RESPONSES) | _RESPONSES if responses else _openai()
        base_url = getattr(model, "base_url", None)
        open_ended = bool(base_url) and "api.openai.com" not in str(base_url)
    else:
        accepted = _mistral() if provider == "mistral" else _ANTHROPIC if provider == "anthropic" else _OLLAMA
    return ParamFit(provider, accepted, open_ended, _TRANSLATIONS[provider])


_FITS: dict[int, tuple[Any, ParamFit | None]] = {}
_FITS_LIMIT = 1024


def param_fit(model: Any) -> ParamFit | None:
    """``model``'s :class:`ParamFit` (remembered per model object); None: give it the kwargs unchanged."""
    found = _FITS.get(id(model))
    if found is not None and found[0] is model:
        return found[1]
    if len(_FITS) >= _FITS_LIMIT:
        _FITS.clear()
    fit = _fit_of(model)
    _FITS[id(model)] = (model, fit)
    return fit


def check_common(kwargs: Mapping[str, Any]) -> Mapping[str, Any]:
    """The common parameters as one meaning (raises ValueError for a contradiction or an unknown effort).

    ``max_tokens`` and ``max_completion_tokens`` name one limit: both given, they must agree
    (one is kept, each API then gets its own name), else which one a deployment obeyed would
    depend on its provider. A ``reasoning_effort`` no API documents would end in a 400 at
    every deployment; it is refused here, before any is tried.
    """
    effort = kwargs.get("reasoning_effort")
    if effort is not None and effort not in EFFORTS:
        msg = f"reasoning_effort={effort!r} is not one of {sorted(EFFORTS)}"
        raise ValueError(msg)
    both = kwargs.get("max_tokens"), kwargs.get("max_completion_tokens")
    if None in both:
        return kwargs
    if both[0] != both[1]:
        msg = (
            f"max_tokens={both[0]!r} and max_completion_tokens={both[1]!r} name one limit with two values; "
            "give one (the router sends it under each deployment's own name)"
        )
        raise ValueError(msg)
    return {k: v for k, v in kwargs.items() if k != "max_completion_tokens"}


def fit_params(model: Any, kwargs: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """``kwargs`` as ``model``'s API takes them, and what was dropped (name → why).

    Raises ValueError for contradicting or unknown common values (:func:`check_common`).
    A ``None`` the API does not take is left out unreported: None says "not set", so nothing is lost.
    """
    fit = param_fit(model)
    if fit is None:
        return dict(kwargs), {}
    if "reasoning_effort" in kwargs or "max_completion_tokens" in kwargs:
        kwargs = check_common(kwargs)
    provider, accepted, translations = fit.provider, fit.accepted, fit.translations
    out: dict[str, Any] = {}
    dropped: dict[str, str] = {}
    for name, value in kwargs.items():  # the caller's own names first: a translation never overrides them
        if name in _ALWAYS or (name in accepted and name not in translations):
            out[name] = value
    rest = [name for name in kwargs if name not in out] if len(out) < len(kwargs) else ()  # usually none
    for name in rest:
        value = kwargs[name]
        if value is None:
            continue  # not set: nothing to send, translate or report (strict_params has nothing to refuse)
        translate = translations.get(name)
        if translate is not None:
            why = translate(value, model, out)
            if why is not None:
                dropped[name] = why
        elif name not in accepted and not (fit.open_ended and name not in _NOT_OPENAI_COMPATIBLE):
            dropped[name] = _WHY_DROPPED.get(name, f"not a parameter of {provider}'s API")
        else:
            out[name] = value
    thinks = (
        provider == "anthropic"
        and isinstance(out.get("thinking"), Mapping)
        and out["thinking"].get("type") == "enabled"
    )
    if thinks and out.get("temperature", getattr(model, "temperature", None)) not in (None, 1):
        out["temperature"] = None  # None: the model's own temperature is not sent either
        dropped["temperature"] = "Anthropic takes no temperature other than 1 with extended thinking"
    return out, dropped
