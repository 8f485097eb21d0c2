"""Which deployments may serve a request (the filter), and in what order (the strategy, then the budget)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from langchain_multigateway.chat_models._base import GatewayChatModel
from langchain_multigateway.routing.affinity import rendezvous
from langchain_multigateway.routing.deployment import Deployment
from langchain_multigateway.routing.eligibility import call_exclusion
from langchain_multigateway.routing.request import Request
from langchain_multigateway.routing.structured import StructuredSpec
from langchain_multigateway.state.base import RouterState

if TYPE_CHECKING:
    from langchain_multigateway.routing.budget import BudgetGuard

__all__ = ["exclusion", "plan", "structured_exclusion"]


def structured_exclusion(dep: Deployment, spec: StructuredSpec) -> str | None:
    """Why ``dep`` cannot give structured output the way ``spec`` asks, or None."""
    method = spec.method
    caps = dep.capabilities
    model = dep.model
    if isinstance(model, GatewayChatModel):  # the provider's public capabilities hook
        native = model.capabilities
        if method not in native.structured_output_methods:
            return f"does not support structured output by {method}"
        if method == "function_calling" and not native.tool_choice:
            return "cannot force a tool call (structured output by function_calling)"
    else:
        methods = getattr(model, "structured_output_methods", None)
        if isinstance(methods, (tuple, list)) and method not in methods:
            return f"does not support structured output by {method}"
    if method == "function_calling" and caps.tools is False:
        return "does not support tool calling (structured output by function_calling)"
    if method == "json_schema" and caps.json_schema is False:
        return "does not support JSON-schema structured output"
    if method == "json_mode" and caps.json_mode is False:
        return "does not support JSON mode"
    return None


def exclusion(request: Request, dep: Deployment, min_window: int | None = None) -> str | None:
    """Why ``dep`` cannot serve ``request``, or None.

    ``min_window``: a context window that already overflowed during this call; only
    larger ones are tried after that.
    """
    caps = dep.capabilities
    if request.continuing and caps.continue_prefix is not True:
        return "cannot continue an assistant prefix (capabilities.continue_prefix is not set)"
    if request.tools and caps.tools is False:
        return "does not support tool calling"
    if request.structured is not None:
        why = structured_exclusion(dep, request.structured)
        if why is not None:
            return why
    if request.images and caps.images is False:
        return "does not accept image inputs"
    why = call_exclusion(request, dep)  # a model= override, standard input blocks
    if why is not None:
        return why
    window = dep.context_window
    if window is not None:
        if min_window is not None and window <= min_window:
            return f"context window {window} not larger than one that already overflowed ({min_window})"
        if request.upper_tokens + request.output_tokens > window:
            needed = request.counted(dep) + request.output_tokens
            if needed > window:
                return f"context window {window} < {needed} tokens needed (prompt counted + max output)"
    if request.tags and not request.tags.issubset(dep.tags):
        return f"tags {sorted(request.tags)} not all in {sorted(dep.tags)}"
    return None


def plan(
    deployments: Sequence[Deployment], request: Request, state: RouterState, guard: BudgetGuard | None
) -> tuple[list[Deployment], dict[str, str]]:
    """The deployments able to serve ``request``, best first, and why each other one is out."""
    excluded: dict[str, str] = {}
    able: list[Deployment] = []
    for dep in deployments:
        why = exclusion(request, dep)
        if why is None:
            able.append(dep)
        else:
            excluded[dep.name] = why
    if len(able) > 1:
        if request.affinity is not None:
            able = rendezvous(able, request.affinity)  # one conversation, one deployment: its prompt cache hits
        else:
            able = request.strategy.order(able, request.info, state)
    if guard is not None:
        able = guard.order(able, excluded)
    return able, excluded
