"""What the routers know right now, per deployment, as JSON-safe data for the Deployments panel.

Read from each router's :meth:`~langchain_multigateway.routing.RoutingChatModel.health`
its state's ``health()`` and the limits its providers announced (``state.learned``, read
without changing it): nothing here is computed twice or kept between reads.
Only names, numbers and states leave this module: no model object, URL or key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from langchain_multigateway.routing import RoutingChatModel
    from langchain_multigateway.state.learned import LearnedLimits

__all__ = ["deployments_snapshot", "router_budgets"]


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def _learned(learned: LearnedLimits, name: str) -> dict[str, float | None]:
    """``learned_{requests,tokens}_{left,limit,reset}``: what the provider last announced, less what
    this process sent since, and seconds to its reset (None: nothing announced, or its window passed).

    Read straight from the budgets, not through ``LearnedLimits.left``: past a spent window that
    starts a probe, and a page polled every few seconds must not change how calls are routed.
    """
    out: dict[str, float | None] = {}
    budgets = learned._known.get(name)
    now = learned.clock()
    with learned._lock:
        for kind, budget in zip(("requests", "tokens"), budgets or (None, None), strict=True):
            left = None if budget is None or now >= budget.until else budget.left
            out[f"learned_{kind}_left"] = None if left is None else float(max(int(left), 0))
            out[f"learned_{kind}_limit"] = None if budget is None or budget.limit is None else float(budget.limit)
            out[f"learned_{kind}_reset"] = None if left is None or budget is None else round(budget.until - now, 1)
    return out


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
                    # What the provider's rate-limit headers last said is left (this process's count).
                    **_learned(router.state.learned, dep.name),
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
