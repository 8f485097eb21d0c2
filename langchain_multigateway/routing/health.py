"""Health reports per deployment: the router's view, plus the provider's own probe."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from langchain_multigateway.routing.deployment import Deployment
from langchain_multigateway.routing.gate import ConcurrencyGate
from langchain_multigateway.state.base import RouterState

__all__ = ["DeploymentHealth", "adeployment_health", "deployment_health"]


class DeploymentHealth(BaseModel):
    """What the router knows of one deployment right now."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    name: str
    provider: str
    model: str
    breaker: str
    consecutive_failures: int
    ewma_latency_ms: float | None
    ewma_ttft_ms: float | None
    error_rate: float
    in_flight: int
    requests_last_minute: int
    tokens_last_minute: int
    remaining_rpm: int | None
    remaining_tpm: int | None
    retry_after: float | None
    successes: int
    failures: int
    concurrency_in_use: int = 0
    """Slots of ``max_concurrency`` taken now (0 when the deployment has no limit)."""
    waiting: int = 0
    """Calls queued for one of those slots."""
    learned_remaining_requests: float | None = None
    """Requests the provider's rate-limit headers announced as left, less those sent since (None: none announced)."""
    learned_remaining_tokens: float | None = None
    """Tokens the provider announced as left, less those sent since (None: none announced)."""
    learned_reset_s: float | None = None
    """Seconds until the sooner of those announced budgets resets (None: nothing announced in force)."""
    provider_health: Any = None
    """The model's own ``health_check()`` result, when asked for and available."""

    @property
    def available(self) -> bool:
        return self.breaker != "open" and self.retry_after is None


def _report(
    dep: Deployment, state: RouterState, provider_health: Any, gate: ConcurrencyGate | None
) -> DeploymentHealth:
    stats = state.stats(dep.name, rpm=dep.rpm, tpm=dep.tpm)
    requests_left, tokens_left, reset = state.learned.left(dep.name)
    return DeploymentHealth(
        name=dep.name,
        provider=dep.provider,
        model=dep.model_name,
        breaker=stats.breaker.value,
        consecutive_failures=stats.consecutive_failures,
        ewma_latency_ms=stats.ewma_latency_ms,
        ewma_ttft_ms=stats.ewma_ttft_ms,
        error_rate=stats.error_rate,
        in_flight=stats.in_flight,
        requests_last_minute=stats.requests_last_minute,
        tokens_last_minute=stats.tokens_last_minute,
        remaining_rpm=stats.remaining_rpm,
        remaining_tpm=stats.remaining_tpm,
        retry_after=stats.retry_after,
        successes=stats.successes,
        failures=stats.failures,
        concurrency_in_use=0 if gate is None else gate.active,
        waiting=0 if gate is None else gate.waiting,
        learned_remaining_requests=requests_left,
        learned_remaining_tokens=tokens_left,
        learned_reset_s=None if reset is None else round(reset, 3),
        provider_health=provider_health,
    )


def deployment_health(
    dep: Deployment, state: RouterState, check_provider: bool = False, gate: ConcurrencyGate | None = None
) -> DeploymentHealth:
    probe = getattr(dep.model, "health_check", None)
    provider_health = probe() if check_provider and callable(probe) else None
    return _report(dep, state, provider_health, gate)


async def adeployment_health(
    dep: Deployment, state: RouterState, check_provider: bool = False, gate: ConcurrencyGate | None = None
) -> DeploymentHealth:
    probe = getattr(dep.model, "ahealth_check", None)
    provider_health = await probe() if check_provider and callable(probe) else None
    return _report(dep, state, provider_health, gate)
