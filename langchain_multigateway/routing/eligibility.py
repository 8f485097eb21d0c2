"""Whether a deployment can take what this call carries: the model it names, its input blocks.

Read by the selection filter beside tools, structured output and the context window:

* ``invoke(..., model="gpt-4o-mini")`` (LangChain's per-call model override) picks the
  deployments serving that model: a deployment's ``name``, its model's name, or
  ``"provider:model"`` match. None matching: the call is refused, each deployment's
  line saying what it serves.
* A standard data block (image, file, audio, video, text-plain) goes only to a
  deployment whose provider and model profile take it (``chat_models._input_blocks``);
  the others are skipped, so the call fails over to one that can.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from langchain_multigateway.chat_models._base import GatewayChatModel
from langchain_multigateway.chat_models._input_blocks import block_exclusion, input_kinds
from langchain_multigateway.routing.deployment import Deployment
from langchain_multigateway.routing.request import Request

__all__ = ["call_exclusion", "serves_model"]


def serves_model(dep: Deployment, asked: Any, *, by_name: bool = True) -> bool:
    """Whether ``dep`` is what ``model=asked`` names (its model's name, ``provider:model``, or its own name).

    A router refuses a deployment named after a model another deployment serves, so the three never clash.
    """
    if by_name and asked == dep.name:
        return True
    return asked in (dep.model_name, f"{dep.provider}:{dep.model_name}")


def call_exclusion(request: Request, dep: Deployment) -> str | None:
    """Why ``dep`` cannot take this call's model override or input blocks, or None."""
    asked = request.kwargs.get("model")
    if asked is not None and not serves_model(dep, asked):
        return f"serves {dep.model_name!r}, not the model={asked!r} the call asked for"
    if not request.blocks:
        return None  # plain text: no input block to check
    model = dep.model
    provider = model.provider_name if isinstance(model, GatewayChatModel) else None
    profile = getattr(model, "profile", None)
    return block_exclusion(input_kinds(request.messages), provider, profile if isinstance(profile, Mapping) else None)
