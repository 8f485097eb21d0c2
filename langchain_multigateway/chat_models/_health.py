"""What a provider's health probe found: a value, never an exception."""

from __future__ import annotations

import time

from pydantic import BaseModel, ConfigDict

__all__ = ["HealthStatus", "health_status"]


class HealthStatus(BaseModel):
    """What a health probe found: never raised, always returned."""

    model_config = ConfigDict(frozen=True)

    ok: bool
    latency_ms: float
    error: str | None = None
    provider: str | None = None
    model: str | None = None


def health_status(provider: str, model: str, start: float, error: BaseException | None) -> HealthStatus:
    """The status of a probe begun at ``start`` (``time.perf_counter()``) that raised ``error`` or not."""
    return HealthStatus(
        ok=error is None,
        latency_ms=(time.perf_counter() - start) * 1000,
        error=None if error is None else f"{type(error).__name__}: {error}",
        provider=provider,
        model=model,
    )
