"""Build routers from ``"provider:model"`` strings and from a config's ``routers:`` section.

.. code-block:: yaml

    models:
      fast: openai:gpt-4o-mini
    routers:
      main:
        strategy: least_latency            # or {name: balanced, quality: 1, cost: 2}
        max_wait: 5
        failover: {content_policy: raise}
        breaker: {failure_threshold: 5, cooldown: 30}
        deployments:
          - model: fast                    # a name under models:, or "provider:model"
            name: primary
            rpm: 500
            tags: [cheap]
          - model: mistral:mistral-small-latest
            params: {temperature: 0}       # provider parameters for a "provider:model" string
            priority: 1
          - anthropic:claude-3-5-haiku-latest
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from langchain_multigateway.routing.deployment import Deployment, deployments_from, init_model
from langchain_multigateway.routing.policy import FailoverPolicy
from langchain_multigateway.routing.router import RoutingChatModel
from langchain_multigateway.routing.strategies import STRATEGIES, BalancedStrategy, Strategy, get_strategy
from langchain_multigateway.state.settings import StateSettingsError, state_from_settings

if TYPE_CHECKING:
    from langchain_multigateway.config import GatewayConfig

__all__ = ["deployments_from", "router_from_config", "routers_from_config"]


def _strategy(raw: Any) -> Strategy:
    if isinstance(raw, Mapping):
        options = dict(raw)
        name = options.pop("name", "balanced")
        if name == "balanced":
            return BalancedStrategy(**options)
        if name not in STRATEGIES:
            raise ValueError(f"expected one of: {', '.join(sorted(STRATEGIES))}")
        return STRATEGIES[name](**options)
    return get_strategy(str(raw))


def router_from_config(config: GatewayConfig, name: str) -> RoutingChatModel:
    """The router declared as ``routers.<name>``; mistakes raise the config's ConfigurationError."""
    raw = config.routers.get(name)
    where: tuple[str | int, ...] = ("routers", name)
    if not isinstance(raw, Mapping):
        declared = ", ".join(config.routers) or "none"
        raise config.error((where, f"expected a mapping with deployments; declared routers: {declared}"))
    known = {"strategy", "max_wait", "failover", "breaker", "deployments", "timeout", "max_retries", "name"}
    for key in raw:
        if key not in known:
            raise config.error(((*where, key), f"unknown key; expected one of: {', '.join(sorted(known))}"))
    entries = raw.get("deployments")
    if not isinstance(entries, list) or not entries:
        raise config.error(((*where, "deployments"), "expected a non-empty list of deployments"))
    deployments = [_deployment(config, entry, (*where, "deployments", i)) for i, entry in enumerate(entries)]
    kwargs: dict[str, Any] = {"deployments": deployments, "model": str(raw.get("name", name))}
    try:
        kwargs["strategy"] = _strategy(raw.get("strategy", "ordered"))
    except (ValueError, TypeError) as exc:
        raise config.error(((*where, "strategy"), str(exc))) from None
    try:
        if "failover" in raw:
            kwargs["failover"] = FailoverPolicy.model_validate(raw["failover"])
    except (ValidationError, TypeError, ValueError) as exc:
        raise config.error(((*where, "failover"), str(exc))) from None
    if "breaker" in raw or config.state:
        breaker = raw.get("breaker")
        if breaker is not None and not isinstance(breaker, Mapping):
            raise config.error(((*where, "breaker"), "expected a mapping such as {failure_threshold: 5, cooldown: 1}"))
        try:
            kwargs["state"] = state_from_settings(config.state, router=name, breaker=breaker)
        except StateSettingsError as exc:
            path = (*where, "breaker") if exc.key == "breaker" else ("state", exc.key)
            raise config.error((path, str(exc))) from None
    for key in ("max_wait", "timeout", "max_retries"):
        if key in raw:
            kwargs[key] = raw[key]
    try:
        return RoutingChatModel(**kwargs)
    except ValidationError as exc:
        raise config.error((where, str(exc))) from None


def _deployment(config: GatewayConfig, entry: Any, where: tuple[str | int, ...]) -> Deployment:
    if isinstance(entry, str):
        entry = {"model": entry}
    if not isinstance(entry, Mapping) or not isinstance(entry.get("model"), str):
        raise config.error((where, "expected a model reference string or a mapping with 'model'"))
    fields = dict(entry)
    ref = fields.pop("model")
    params = fields.pop("params", {}) or {}
    if ref in config.models:
        model = config.build_model(ref)
    elif ":" in ref:
        model = init_model(ref, **params)
    else:
        declared = ", ".join(config.models) or "none"
        raise config.error(((*where, "model"), f"no model named {ref!r} (declared: {declared}); or use provider:model"))
    fields.setdefault("name", ref)
    try:
        return Deployment(model=model, **fields)
    except ValidationError as exc:
        problem = exc.errors()[0]
        key = problem["loc"][0] if problem["loc"] else "model"
        raise config.error(((*where, str(key)), problem["msg"])) from None


def routers_from_config(config: GatewayConfig) -> dict[str, RoutingChatModel]:
    """Every router of the config's ``routers:`` section, by name."""
    return {name: router_from_config(config, name) for name in config.routers}
