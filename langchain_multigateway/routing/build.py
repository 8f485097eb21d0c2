"""Build routers from ``"provider:model"`` strings and from a config's ``routers:`` section.

.. code-block:: yaml

    models:
      fast: openai:gpt-4o-mini
    routers:
      main:
        strategy: least_latency            # or {name: balanced, quality: 1, cost: 2}
        max_wait: 5
        timeout: 60                        # the whole call, across retries and deployments
        stream_recovery: continue          # resume a cut stream on a deployment that can continue a prefix
        failover: {content_policy: raise}
        breaker: {failure_threshold: 5, cooldown: 30}
        budget: {max_cost_usd: 5, period: 1d, provider: openai, on_exceeded: cheaper}
        cache: {path: answers.sqlite3, ttl: 3600}   # the response cache; see langchain_multigateway.cache.settings
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

import difflib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from langchain_multigateway.errors import ConfigurationError
from langchain_multigateway.routing.deployment import Deployment, deployments_from, init_model
from langchain_multigateway.routing.policy import FailoverPolicy
from langchain_multigateway.routing.router import RoutingChatModel
from langchain_multigateway.routing.strategies import STRATEGIES, BalancedStrategy, Strategy, get_strategy
from langchain_multigateway.state.settings import StateSettingsError, budget_from_settings, state_from_settings

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


Where = tuple[str | int, ...]
Problems = list[tuple[Where, str]]
ROUTER_KEYS = (
    "strategy",
    "max_wait",
    "failover",
    "breaker",
    "deployments",
    "timeout",
    "max_retries",
    "name",
    "stream_recovery",
    "budget",
    "cache",
)
DEPLOYMENT_KEYS = ("model", "params", *(k for k in Deployment.model_fields if k != "model"))


def _unknown_key(key: object, known: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(str(key), known, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"unknown key; {hint}expected one of: {', '.join(sorted(known))}"


def router_from_config(config: GatewayConfig, name: str) -> RoutingChatModel:
    """The router declared as ``routers.<name>``.

    Every mistake found (unknown keys, with the closest known one; deployments;
    strategy; failover; breaker) is reported together in one ConfigurationError.
    """
    raw = config.routers.get(name)
    where: Where = ("routers", name)
    if not isinstance(raw, Mapping):
        declared = ", ".join(config.routers) or "none"
        raise config.error((where, f"expected a mapping with deployments; declared routers: {declared}"))
    problems: Problems = [((*where, key), _unknown_key(key, ROUTER_KEYS)) for key in raw if key not in ROUTER_KEYS]
    entries = raw.get("deployments")
    deployments: list[Deployment] = []
    if not isinstance(entries, list) or not entries:
        problems.append(((*where, "deployments"), "expected a non-empty list of deployments"))
    else:
        for i, entry in enumerate(entries):
            found = _deployment(config, entry, (*where, "deployments", i), problems)
            if found is not None:
                deployments.append(found)
    kwargs: dict[str, Any] = {"deployments": deployments, "model": str(raw.get("name", name))}
    try:
        kwargs["strategy"] = _strategy(raw.get("strategy", "ordered"))
    except (ValueError, TypeError) as exc:
        problems.append(((*where, "strategy"), str(exc)))
    try:
        if "failover" in raw:
            kwargs["failover"] = FailoverPolicy.model_validate(raw["failover"])
    except (ValidationError, TypeError, ValueError) as exc:
        problems.append(((*where, "failover"), str(exc)))
    if "breaker" in raw or config.state:
        breaker = raw.get("breaker")
        if breaker is not None and not isinstance(breaker, Mapping):
            problems.append(((*where, "breaker"), "expected a mapping such as {failure_threshold: 5, cooldown: 1}"))
        else:
            try:
                kwargs["state"] = state_from_settings(config.state, router=name, breaker=breaker)
            except StateSettingsError as exc:
                path = (*where, "breaker") if exc.key == "breaker" else ("state", exc.key)
                problems.append((path, str(exc)))
    if "budget" in raw:
        try:
            kwargs["budget"], kwargs["on_budget_exceeded"] = budget_from_settings(
                raw["budget"], router=name, state=kwargs.get("state")
            )
        except StateSettingsError as exc:
            problems.append(((*where, "budget", *([exc.key] if exc.key else [])), str(exc)))
    if "cache" in raw:
        from langchain_multigateway.cache.settings import CacheSettingsError, cache_from_settings

        try:
            kwargs["response_cache"] = cache_from_settings(raw["cache"], state=config.state)
        except CacheSettingsError as exc:
            problems.append(((*where, "cache", *([exc.key] if exc.key else [])), str(exc)))
    if problems:
        raise config.error(*problems)
    for key in ("max_wait", "timeout", "max_retries", "stream_recovery"):
        if key in raw:
            kwargs[key] = raw[key]
    try:
        return RoutingChatModel(**kwargs)
    except ValidationError as exc:
        raise config.error(*(((*where, *map(str, e["loc"])), e["msg"]) for e in exc.errors())) from None


def _deployment(config: GatewayConfig, entry: Any, where: Where, problems: Problems) -> Deployment | None:
    """One deployment, or None with what is wrong with it added to ``problems``."""
    if isinstance(entry, str):
        entry = {"model": entry}
    if not isinstance(entry, Mapping) or not isinstance(entry.get("model"), str):
        problems.append((where, "expected a model reference string or a mapping with 'model'"))
        return None
    before = len(problems)
    problems.extend(((*where, key), _unknown_key(key, DEPLOYMENT_KEYS)) for key in entry if key not in DEPLOYMENT_KEYS)
    fields = {k: v for k, v in entry.items() if k in DEPLOYMENT_KEYS}
    ref = fields.pop("model")
    params = fields.pop("params", {}) or {}
    model = None
    if ref in config.models:
        model, found = config.try_build_model(ref)
        problems.extend(found)
    elif ":" in ref:
        try:
            model = init_model(ref, **params)
        except ConfigurationError as exc:
            problems.append(((*where, "model"), exc.message))
    else:
        declared = ", ".join(config.models) or "none"
        close = difflib.get_close_matches(ref, list(config.models), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        problems.append(
            ((*where, "model"), f"no model named {ref!r}; {hint}declared: {declared}; or use provider:model")
        )
    if model is None or len(problems) > before:
        return None
    fields.setdefault("name", ref)
    try:
        return Deployment(model=model, **fields)
    except ValidationError as exc:
        problems.extend(((*where, *map(str, e["loc"])), e["msg"]) for e in exc.errors())
        return None


def routers_from_config(config: GatewayConfig) -> dict[str, RoutingChatModel]:
    """Every router of the config's ``routers:`` section, by name."""
    return {name: router_from_config(config, name) for name in config.routers}
