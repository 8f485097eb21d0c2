"""A router's model profile: what every one of its deployments can do.

LangChain's profile readers (``SummarizationMiddleware(trigger=("fraction", 0.8))``,
agents choosing a structured-output strategy, ``init_chat_model`` users) read
``model.profile``. A router may serve any call from any of its deployments, so its
profile promises only what they all share:

* ``max_input_tokens`` / ``max_output_tokens``: the smallest any deployment states
  (its ``context_window`` / ``max_output_tokens``, else its model's profile); a
  deployment that states none is not counted.
* a capability (``tool_calling``, ``structured_output``, ``image_inputs``,
  ``pdf_inputs``, ``audio_inputs``, ``tool_choice``, ``reasoning_output`` …): True only
  when every deployment says True, False when any says False, left out when some
  say nothing (unknown).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.language_models import ModelProfile

from langchain_multigateway.routing.deployment import Deployment

__all__ = ["shared_profile"]

_FLAGS = (
    "text_inputs",
    "image_inputs",
    "image_url_inputs",
    "pdf_inputs",
    "audio_inputs",
    "video_inputs",
    "image_tool_message",
    "pdf_tool_message",
    "reasoning_output",
    "text_outputs",
    "image_outputs",
    "audio_outputs",
    "video_outputs",
    "tool_calling",
    "tool_choice",
    "tool_call_streaming",
    "structured_output",
    "temperature",
)


def _facts(dep: Deployment) -> dict[str, Any]:
    """One deployment's profile, with what the deployment itself states laid over its model's."""
    profile = getattr(dep.model, "profile", None)
    facts = dict(profile) if isinstance(profile, Mapping) else {}
    caps = dep.capabilities
    stated = {"tool_calling": caps.tools, "structured_output": caps.json_schema, "image_inputs": caps.images}
    facts.update({k: v for k, v in stated.items() if v is not None})
    if dep.context_window is not None:
        facts["max_input_tokens"] = dep.context_window
    if dep.max_output_tokens is not None:
        facts["max_output_tokens"] = dep.max_output_tokens
    return facts


def shared_profile(deployments: Sequence[Deployment]) -> ModelProfile | None:
    """The profile every deployment shares (see the module doc); None when nothing is known of any."""
    every = [_facts(d) for d in deployments]
    shared: dict[str, Any] = {}
    for limit in ("max_input_tokens", "max_output_tokens"):
        known = [f[limit] for f in every if isinstance(f.get(limit), int)]
        if known:
            shared[limit] = min(known)
    for flag in _FLAGS:
        said = [f.get(flag) for f in every]
        if any(v is False for v in said):
            shared[flag] = False
        elif said and all(v is True for v in said):
            shared[flag] = True
    return shared or None  # type: ignore[return-value]  # the keys are ModelProfile's own
