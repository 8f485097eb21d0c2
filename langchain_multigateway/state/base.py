"""The interface routing state implements, whatever stores it (memory now, Redis later).

Every method is short and never blocks on I/O in the memory implementation, so
the router calls it from sync threads and from the event loop alike.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

__all__ = ["Admission", "BreakerListener", "BreakerState", "DeploymentStats", "RouterState"]

BreakerListener = Callable[[str, str], Any]
"""Called as ``fn(deployment, state)`` with ``state`` one of ``"closed"``, ``"open"``, ``"half_open"``."""


class BreakerState(str, Enum):
    """A circuit breaker's state."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass
class Admission:
    """The answer to "may this deployment take one more request now?".

    Attributes:
        ok: Admitted; the caller must :meth:`RouterState.release` it once done.
        reason: Why not, in words for error messages.
        retry_after: Seconds until it may be admitted again, when known.
        limited: Refused for a budget (rpm, tpm, a provider's Retry-After) that
            frees up with time, so waiting is an option; False for an open breaker.
        probe: This request is the half-open breaker's single probe.
        reservation: Opaque handle used to reconcile reserved tokens with real usage.
    """

    ok: bool
    reason: str | None = None
    retry_after: float | None = None
    limited: bool = False
    probe: bool = False
    reservation: Any = None


_logger = logging.getLogger(__name__)

REFUSED_UNKNOWN = Admission(ok=False, reason="refused")


@dataclass(frozen=True)
class DeploymentStats:
    """A snapshot of what the state knows about one deployment."""

    breaker: BreakerState
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


class RouterState(ABC):
    """Breakers, rate windows, latency and load per deployment name.

    Breaker transitions can be watched: :meth:`add_listener` registers
    ``fn(deployment, state)``, called after each change (outside any lock), e.g.
    ``state.add_listener(prometheus_handler.set_breaker_state)``. Implementations
    report changes through :meth:`_notify_breaker`.
    """

    _breaker_listeners: tuple[BreakerListener, ...] = ()

    def add_listener(self, fn: BreakerListener) -> None:
        """Call ``fn(deployment, state)`` on every breaker transition from now on.

        ``state`` is ``"closed"``, ``"open"`` or ``"half_open"`` (a ``BreakerState``
        value). An open breaker is seen as half-open once its cooldown has passed and
        the state is next consulted (an admission or a health read). A listener that
        raises is logged and does not disturb routing.
        """
        if fn not in self._breaker_listeners:
            self._breaker_listeners = (*self._breaker_listeners, fn)

    def remove_listener(self, fn: BreakerListener) -> None:
        """Stop calling ``fn`` (no error if it was not registered)."""
        self._breaker_listeners = tuple(f for f in self._breaker_listeners if f != fn)

    def _notify_breaker(self, changes: list[tuple[str, BreakerState]]) -> None:
        """Tell every listener about ``changes`` (call without holding a lock)."""
        for name, state in changes:
            for fn in self._breaker_listeners:
                try:
                    fn(name, state.value)
                except Exception:
                    _logger.exception("Breaker listener %r failed for %s -> %s", fn, name, state.value)

    @abstractmethod
    def admit(self, name: str, *, tokens: int = 0, rpm: int | None = None, tpm: int | None = None) -> Admission:
        """Check breaker and budgets, and if admitted count the request in flight
        and reserve ``tokens`` in the tpm window, all at once."""

    @abstractmethod
    def release(
        self,
        name: str,
        admission: Admission,
        *,
        ok: bool,
        latency: float | None = None,
        ttft: float | None = None,
        tokens: int | None = None,
        counts_against_breaker: bool = True,
    ) -> None:
        """Record the outcome of an admitted request (``latency``/``ttft`` in seconds,
        ``tokens`` the real total that replaces the reservation)."""

    @abstractmethod
    def cooldown(self, name: str, seconds: float) -> None:
        """Admit nothing for ``seconds`` (a provider's Retry-After)."""

    @abstractmethod
    def latency(self, name: str, *, streaming: bool = False) -> float | None:
        """EWMA latency in seconds (time to first token when ``streaming``), None before any."""

    @abstractmethod
    def in_flight(self, name: str) -> int:
        """Requests admitted and not yet released."""

    @abstractmethod
    def stats(self, name: str, *, rpm: int | None = None, tpm: int | None = None) -> DeploymentStats:
        """Everything known about ``name``, for health reports."""
