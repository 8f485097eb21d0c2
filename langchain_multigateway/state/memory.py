"""In-process routing state: one lock, short critical sections, an injectable clock."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

from langchain_multigateway.state.base import (
    Admission,
    BreakerPolicy,
    BreakerState,
    DeploymentStats,
    Outcome,
    RouterState,
)

__all__ = ["MemoryState"]

WINDOW = 60.0


class _Entry:
    """One request in a deployment's rate window: how many tokens, and when it ended (once it has)."""

    __slots__ = ("at", "flying", "tokens")

    def __init__(self, tokens: int) -> None:
        self.at = 0.0
        self.tokens = tokens
        self.flying = True


class _Record:
    __slots__ = (
        "breaker",
        "cooldown_until",
        "ewma_error",
        "ewma_latency",
        "ewma_ttft",
        "failures",
        "flying",
        "in_flight",
        "open_for",
        "opened_at",
        "probe_until",
        "streak",
        "successes",
        "window",
        "window_tokens",
    )

    def __init__(self) -> None:
        self.breaker = BreakerState.CLOSED
        self.streak = 0  # consecutive failures counted against the breaker
        self.opened_at = 0.0
        self.open_for = 0.0  # this open period's length; grows while probes fail
        self.probe_until = 0.0  # a half-open probe holds the slot until then (or its release)
        self.cooldown_until = 0.0
        self.ewma_latency: float | None = None
        self.ewma_ttft: float | None = None
        self.ewma_error = 0.0
        self.in_flight = 0
        self.successes = 0
        self.failures = 0
        # A request counts against rpm / tpm from its admission until a minute after it ended: the
        # provider counts it when it arrives, which may be long after the admission (a loop held up,
        # a slow connect), so no admission time can stand for it; its end is never earlier.
        self.flying: set[_Entry] = set()
        self.window: deque[_Entry] = deque()  # ended, oldest end first
        self.window_tokens = 0  # of both


class MemoryState(RouterState):
    """Routing state in this process's memory (the default).

    Thread-safe and asyncio-safe: every method takes one ``threading.Lock`` for a
    few microseconds and never awaits or sleeps while holding it.

    Breakers: ``failure_threshold`` consecutive counted failures open one for
    ``cooldown`` seconds; then one probe goes through (half-open). A successful probe
    closes it; a failed one reopens it for twice as long (``cooldown_growth``), up to
    ``max_cooldown``. :class:`~langchain_multigateway.state.base.BreakerPolicy`
    explains the defaults (5 failures, 1 s growing to 8 s): a flapping primary is
    used again within seconds of recovering, and a dead one sees one probe per period.

    Args:
        failure_threshold: Consecutive counted failures that open a breaker (5).
        cooldown: Seconds of the first open period before one probe is let through (1.0).
        max_cooldown: Longest open period, reached while probes keep failing (8.0).
        cooldown_growth: Factor applied to the open period after each failed probe (2.0).
        probe_timeout: Seconds after which a probe that never reported frees its slot (120).
        alpha: Weight of the newest sample in the latency / error EWMAs.
        clock: Monotonic seconds; tests pass a controllable one.
    """

    def __init__(
        self,
        *,
        failure_threshold: int = BreakerPolicy.failure_threshold,
        cooldown: float = BreakerPolicy.cooldown,
        max_cooldown: float = BreakerPolicy.max_cooldown,
        cooldown_growth: float = BreakerPolicy.cooldown_growth,
        probe_timeout: float = BreakerPolicy.probe_timeout,
        alpha: float = 0.2,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.breaker = BreakerPolicy(failure_threshold, cooldown, max_cooldown, cooldown_growth, probe_timeout)
        self.failure_threshold = failure_threshold
        self.alpha = alpha
        self.clock = clock
        self._lock = threading.Lock()
        self._records: dict[str, _Record] = {}

    def _record(self, name: str) -> _Record:
        record = self._records.get(name)
        if record is None:
            record = self._records[name] = _Record()
        return record

    @staticmethod
    def _prune(record: _Record, now: float) -> None:
        window = record.window
        horizon = now - WINDOW
        while window and window[0].at <= horizon:
            record.window_tokens -= window.popleft().tokens

    def _breaker_now(
        self, record: _Record, now: float, name: str, changes: list[tuple[str, BreakerState]]
    ) -> BreakerState:
        if record.breaker is BreakerState.OPEN and now - record.opened_at >= record.open_for:
            record.breaker = BreakerState.HALF_OPEN
            record.probe_until = 0.0
            changes.append((name, BreakerState.HALF_OPEN))
        return record.breaker

    # ------------------------------------------------------------------ admission
    def admit(self, name: str, *, tokens: int = 0, rpm: int | None = None, tpm: int | None = None) -> Admission:
        changes: list[tuple[str, BreakerState]] = []
        try:
            return self._admit(name, tokens, rpm, tpm, changes)
        finally:
            if changes and self._breaker_listeners:
                self._notify_breaker(changes)

    def _admit(
        self, name: str, tokens: int, rpm: int | None, tpm: int | None, changes: list[tuple[str, BreakerState]]
    ) -> Admission:
        with self._lock:
            now = self.clock()
            record = self._record(name)
            breaker = record.breaker
            if breaker is not BreakerState.CLOSED:  # closed stays closed by itself: no clock to read it by
                breaker = self._breaker_now(record, now, name, changes)
            if breaker is BreakerState.OPEN:
                wait = record.opened_at + record.open_for - now
                return Admission(ok=False, reason=f"circuit open (probe in {wait:.1f}s)", retry_after=wait)
            if breaker is BreakerState.HALF_OPEN and record.probe_until > now:
                return Admission(ok=False, reason="circuit half-open, its probe is in flight")
            if record.cooldown_until > now:
                wait = record.cooldown_until - now
                return Admission(ok=False, reason=f"provider asked to wait {wait:.1f}s", retry_after=wait, limited=True)
            self._prune(record, now)
            if rpm is not None or tpm is not None:
                refused = self._over_budget(record, now, tokens, rpm, tpm)
                if refused is not None:
                    return refused
            entry = _Entry(tokens)
            record.flying.add(entry)
            record.window_tokens += tokens
            record.in_flight += 1
            probe = breaker is BreakerState.HALF_OPEN
            if probe:
                record.probe_until = now + self.breaker.probe_timeout
            return Admission(ok=True, probe=probe, reservation=entry)

    @staticmethod
    def _over_budget(record: _Record, now: float, tokens: int, rpm: int | None, tpm: int | None) -> Admission | None:
        window = record.window
        if rpm is not None and len(window) + len(record.flying) >= rpm:
            # The oldest ended requests must leave the window before one more fits (those in
            # flight leave last: a minute after they end, at the soonest).
            leaving = len(window) + len(record.flying) - rpm
            wait = window[leaving].at + WINDOW - now if rpm > 0 and leaving < len(window) else WINDOW
            return Admission(ok=False, reason=f"rpm limit {rpm} reached", retry_after=max(wait, 0.0), limited=True)
        if tpm is not None and record.window_tokens + tokens > tpm:
            if tokens > tpm:
                return Admission(ok=False, reason=f"request needs ~{tokens} tokens, more than its tpm limit {tpm}")
            excess = record.window_tokens + tokens - tpm
            wait = WINDOW
            for entry in window:
                excess -= entry.tokens
                if excess <= 0:
                    wait = entry.at + WINDOW - now
                    break
            return Admission(
                ok=False,
                reason=f"tpm limit {tpm} reached ({record.window_tokens} used, ~{tokens} needed)",
                retry_after=max(wait, 0.0),
                limited=True,
            )
        return None

    def _finish(self, name: str, admission: Admission, outcome: Outcome) -> None:
        if not admission.ok:
            return
        changed = self._release(name, admission, outcome)
        if changed is not None and self._breaker_listeners:
            self._notify_breaker([(name, changed)])

    def _release(self, name: str, admission: Admission, outcome: Outcome) -> BreakerState | None:
        """Record the outcome; the breaker's new state if it changed."""
        ok, latency, ttft, tokens = outcome.ok, outcome.latency, outcome.ttft, outcome.tokens
        alpha = self.alpha
        with self._lock:
            now = self.clock()
            record = self._record(name)
            record.in_flight = max(0, record.in_flight - 1)
            entry = admission.reservation
            if isinstance(entry, _Entry) and entry.flying:
                record.flying.discard(entry)
                entry.flying = False
                if tokens is not None:
                    record.window_tokens += tokens - entry.tokens
                    entry.tokens = tokens
                entry.at = now
                record.window.append(entry)
            if latency is not None:
                prev = record.ewma_latency
                record.ewma_latency = latency if prev is None else prev + alpha * (latency - prev)
            if ttft is not None:
                prev = record.ewma_ttft
                record.ewma_ttft = ttft if prev is None else prev + alpha * (ttft - prev)
            if ok:
                record.successes += 1
                record.ewma_error -= alpha * record.ewma_error
                record.streak = 0
                if admission.probe and record.breaker is not BreakerState.CLOSED:
                    record.breaker = BreakerState.CLOSED  # recovered: the next outage starts short again
                    record.probe_until = record.open_for = 0.0
                    return BreakerState.CLOSED
                return None
            record.failures += 1
            record.ewma_error += alpha * (1.0 - record.ewma_error)
            if admission.probe:
                record.probe_until = 0.0  # an uncounted failure (e.g. a bad request) lets the next probe go
            if not outcome.counts_against_breaker:
                return None
            record.streak += 1
            policy = self.breaker
            if admission.probe and record.breaker is BreakerState.HALF_OPEN:
                open_for = policy.after_failed_probe(record.open_for)
            elif record.breaker is BreakerState.CLOSED and record.streak >= policy.failure_threshold:
                open_for = policy.cooldown
            else:
                return None  # already open: a late failure of an earlier request changes nothing
            record.breaker = BreakerState.OPEN
            record.opened_at = now
            record.open_for = open_for
            return BreakerState.OPEN

    def cooldown(self, name: str, seconds: float) -> None:
        with self._lock:
            record = self._record(name)
            record.cooldown_until = max(record.cooldown_until, self.clock() + seconds)

    # ------------------------------------------------------------------ reads
    def latency(self, name: str, *, streaming: bool = False) -> float | None:
        record = self._records.get(name)
        if record is None:
            return None
        if streaming and record.ewma_ttft is not None:
            return record.ewma_ttft
        return record.ewma_latency

    def in_flight(self, name: str) -> int:
        record = self._records.get(name)
        return 0 if record is None else record.in_flight

    def stats(self, name: str, *, rpm: int | None = None, tpm: int | None = None) -> DeploymentStats:
        changes: list[tuple[str, BreakerState]] = []
        try:
            return self._stats(name, rpm, tpm, changes)
        finally:
            if changes and self._breaker_listeners:
                self._notify_breaker(changes)

    def _stats(
        self, name: str, rpm: int | None, tpm: int | None, changes: list[tuple[str, BreakerState]]
    ) -> DeploymentStats:
        with self._lock:
            now = self.clock()
            record = self._record(name)
            breaker = self._breaker_now(record, now, name, changes)
            self._prune(record, now)
            requests = len(record.window) + len(record.flying)
            retry_after = None
            if breaker is BreakerState.OPEN:
                retry_after = record.opened_at + record.open_for - now
            elif record.cooldown_until > now:
                retry_after = record.cooldown_until - now
            return DeploymentStats(
                breaker=breaker,
                consecutive_failures=record.streak,
                ewma_latency_ms=None if record.ewma_latency is None else record.ewma_latency * 1000,
                ewma_ttft_ms=None if record.ewma_ttft is None else record.ewma_ttft * 1000,
                error_rate=record.ewma_error,
                in_flight=record.in_flight,
                requests_last_minute=requests,
                tokens_last_minute=record.window_tokens,
                remaining_rpm=None if rpm is None else max(0, rpm - requests),
                remaining_tpm=None if tpm is None else max(0, tpm - record.window_tokens),
                retry_after=retry_after,
                successes=record.successes,
                failures=record.failures,
            )
