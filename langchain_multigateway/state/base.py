"""The interface routing state implements, whatever stores it (process memory or Redis).

Every method is short: the memory implementation never blocks on I/O, and the Redis
one bounds each round trip (50 ms by default) and falls back to local state beyond it,
so the router calls the sync methods from threads and the ``a``-prefixed twins from
the event loop.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from langchain_multigateway.state.learned import LearnedLimits

__all__ = [
    "Admission",
    "BreakerListener",
    "BreakerPolicy",
    "BreakerState",
    "DeploymentStats",
    "Outcome",
    "RouterState",
    "StateHealth",
]

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


@dataclass(frozen=True)
class Outcome:
    """How an admitted request ended, as :meth:`RouterState.release` was told."""

    ok: bool
    latency: float | None = None
    ttft: float | None = None
    tokens: int | None = None
    counts_against_breaker: bool = True


_logger = logging.getLogger(__name__)
_LEARNED_LOCK = threading.Lock()

REFUSED_UNKNOWN = Admission(ok=False, reason="refused")


def _check_listener(fn: BreakerListener) -> None:
    """Refuse a listener that cannot take ``(deployment, state)``, now rather than on every transition."""
    import inspect

    try:
        inspect.signature(fn).bind("deployment", "closed")
    except TypeError:
        name = getattr(fn, "__qualname__", None) or repr(fn)
        msg = f"breaker listener {name} must be callable as listener(deployment, state); it cannot take two arguments"
        raise TypeError(msg) from None
    except ValueError:  # no signature to read (some builtins): accept it
        return


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


@dataclass(frozen=True)
class BreakerPolicy:
    """When a breaker opens, how long it stays open, and how that grows.

    The defaults are chosen for a primary that flaps (down for a while, then back) under
    a steady trickle of requests, with a fallback deployment serving meanwhile:

    - ``failure_threshold=5`` consecutive counted failures open it: one call's retries
      on the same deployment (up to 3 tries by default) cannot open it alone, two
      failing calls in a row can.
    - ``cooldown=1.0`` s is the first open period: a blip (a restart, a brief overload)
      costs about a second of fallback traffic, not the 30 s a fixed cooldown costs.
    - Each failed half-open probe multiplies the period by ``cooldown_growth=2.0``, up to
      ``max_cooldown=8.0`` s (never below ``cooldown``): a deployment down for minutes
      sees at most one probe every 8 s (one caller in eight seconds pays a failover),
      and once it is back it is used again within ``max_cooldown`` seconds plus the gap
      to the next request. A successful probe closes the breaker and resets the period.
    - While open, exactly one request (the probe) is let through per period.
      ``probe_timeout=120.0`` s frees the probe slot when a probe's outcome never
      arrives (a worker that died mid-call), so a breaker cannot stay half-open forever.
    """

    failure_threshold: int = 5
    cooldown: float = 1.0
    max_cooldown: float = 8.0
    cooldown_growth: float = 2.0
    probe_timeout: float = 120.0

    def __post_init__(self) -> None:
        problems = []
        if self.failure_threshold < 1:
            problems.append("failure_threshold must be at least 1")
        if self.cooldown < 0 or self.max_cooldown < 0 or self.probe_timeout <= 0:
            problems.append("cooldown and max_cooldown must be >= 0 and probe_timeout > 0 (seconds)")
        if self.cooldown_growth < 1:
            problems.append("cooldown_growth must be >= 1 (1 keeps the cooldown fixed)")
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def cap(self) -> float:
        """The longest open period (``max_cooldown``, never below ``cooldown``)."""
        return max(self.cooldown, self.max_cooldown)

    def after_failed_probe(self, current: float) -> float:
        """The next open period after a probe failed during one of ``current`` seconds."""
        return min(self.cap, max(current, self.cooldown) * self.cooldown_growth)


@dataclass(frozen=True)
class StateHealth:
    """Where the state lives and whether it is shared right now.

    Attributes:
        backend: ``"memory"`` or ``"redis"``.
        shared: Limits and breakers are shared with other processes at this moment
            (False for memory, and for Redis while it is unreachable).
        live: The backend answers (always True for memory).
        detail: Why not live, or where it lives (a URL without its password).
    """

    backend: str
    shared: bool
    live: bool
    detail: str | None = None


class RouterState(ABC):
    """Breakers, rate windows, latency and load per deployment name.

    Breaker transitions can be watched: :meth:`add_listener` registers
    ``fn(deployment, state)``, called after each change (outside any lock), e.g.
    ``state.add_listener(prometheus_handler.set_breaker_state)``. Implementations
    report changes through :meth:`_notify_breaker`.
    """

    _breaker_listeners: tuple[BreakerListener, ...] = ()
    _learned: LearnedLimits | None = None

    @property
    def learned(self) -> LearnedLimits:
        """The rate limits providers announced per deployment (``state.learned``), made on first use."""
        found = self._learned
        if found is None:
            from langchain_multigateway.state.learned import LearnedLimits

            with _LEARNED_LOCK:
                found = self._learned
                if found is None:
                    clock = getattr(self, "clock", None)  # a state's test clock moves these too
                    found = self._learned = LearnedLimits(clock=clock if callable(clock) else time.monotonic)
        return found

    def observe_limits(self, name: str, limits: Mapping[str, float], age: float = 0.0) -> None:
        """Note the rate limits an answer of ``name`` announced (``age``: seconds since its request was sent);
        a spent budget cools it down until it resets (through :meth:`cooldown`, so a shared state keeps
        every process off it)."""
        wait = self.learned.observe(name, limits, age)
        if wait:
            self.cooldown(name, wait)

    async def aobserve_limits(self, name: str, limits: Mapping[str, float], age: float = 0.0) -> None:
        """:meth:`observe_limits` for the event loop."""
        wait = self.learned.observe(name, limits, age)
        if wait:
            await self.acooldown(name, wait)

    def add_listener(self, fn: BreakerListener) -> None:
        """Call ``fn(deployment, state)`` on every breaker transition from now on.

        ``state`` is ``"closed"``, ``"open"`` or ``"half_open"`` (a ``BreakerState``
        value). An open breaker is seen as half-open once its cooldown has passed and
        the state is next consulted (an admission or a health read). A listener that
        raises is logged and does not disturb routing.

        Raises:
            TypeError: ``fn`` cannot be called with two positional arguments.
        """
        _check_listener(fn)
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
        self._finish(name, admission, Outcome(ok, latency, ttft, tokens, counts_against_breaker))

    @abstractmethod
    def _finish(self, name: str, admission: Admission, outcome: Outcome) -> None:
        """:meth:`release`'s work, for each implementation."""

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

    # Async twins: the default runs the sync method (memory never blocks); a state
    # doing network I/O overrides them with its async client.
    async def aadmit(self, name: str, *, tokens: int = 0, rpm: int | None = None, tpm: int | None = None) -> Admission:
        """:meth:`admit` for the event loop."""
        return self.admit(name, tokens=tokens, rpm=rpm, tpm=tpm)

    async def arelease(
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
        """:meth:`release` for the event loop."""
        await self._afinish(name, admission, Outcome(ok, latency, ttft, tokens, counts_against_breaker))

    async def _afinish(self, name: str, admission: Admission, outcome: Outcome) -> None:
        self._finish(name, admission, outcome)

    async def acooldown(self, name: str, seconds: float) -> None:
        """:meth:`cooldown` for the event loop."""
        self.cooldown(name, seconds)

    def health(self) -> StateHealth:
        """Where the state lives and whether it is shared with other processes now."""
        return StateHealth(backend="memory", shared=False, live=True)
