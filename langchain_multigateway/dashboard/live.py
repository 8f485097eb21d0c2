"""What the routers know right now, per deployment, as JSON-safe data for the Deployments panel.

Read from each router's :meth:`~langchain_multigateway.routing.RoutingChatModel.health`
and its state's ``health()``: nothing here is computed twice or kept between reads.
Only names, numbers and states leave this module: no model object, URL or key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from langchain_multigateway.routing import RoutingChatModel

__all__ = ["deployments_snapshot", "router_budgets"]


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def deployments_snapshot(routers: Mapping[str, RoutingChatModel]) -> list[dict[str, Any]]:
    """Per router: whether its state is shared and live, and each deployment's health and limits."""
    out = []
    for name, router in sorted(routers.items()):
        state = router.state.health()
        health = router.health()
        deployments = []
        for dep in router.deployments:
            h = health[dep.name]
            deployments.append(
                {
                    "name": dep.name,
                    "provider": dep.provider,
                    "model": dep.model_name,
                    "breaker": h.breaker,
                    "consecutive_failures": h.consecutive_failures,
                    "ewma_latency_ms": _round(h.ewma_latency_ms),
                    "ewma_ttft_ms": _round(h.ewma_ttft_ms),
                    "error_rate": round(h.error_rate, 4),
                    "in_flight": h.in_flight,
                    "requests_last_minute": h.requests_last_minute,
                    "tokens_last_minute": h.tokens_last_minute,
                    "rpm": dep.rpm,
                    "tpm": dep.tpm,
                    "remaining_rpm": h.remaining_rpm,
                    "remaining_tpm": h.remaining_tpm,
                    # The state learns no provider-announced limits (x-ratelimit-* headers) yet:
                    # only a provider's Retry-After, shown as the cooldown below.
                    "retry_after": _round(h.retry_after, 2),
                    "successes": h.successes,
                    "failures": h.failures,
                }
            )
        out.append(
            {
                "router": name,
                "state": {"backend": state.backend, "shared": state.shared, "live": state.live},
                "deployments": deployments,
            }
        )
    return out


def router_budgets(routers: Mapping[str, RoutingChatModel]) -> list[dict[str, Any]]:
    """Each router budget's limits, spend and what is left (USD and tokens)."""
    out = []
    for name, router in sorted(routers.items()):
        budget = router.budget
        if budget is None:
            continue
        out.append(
            {
                "owner": f"router {name}",
                "name": budget.name,
                "period": budget.period,
                "limit_usd": budget.max_cost_usd,
                "spent_usd": round(budget.spent_cost_usd, 6),
                "left_usd": _round(budget.remaining_cost_usd, 6),
                "limit_tokens": budget.max_tokens,
                "spent_tokens": budget.spent_tokens,
                "left_tokens": budget.remaining_tokens,
            }
        )
    return out
