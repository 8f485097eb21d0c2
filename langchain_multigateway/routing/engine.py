"""The failover loop, written once: a generator of steps, and a sync and an async driver that perform them.

:func:`failover` makes every decision of a routed call (which deployment next,
retry or move on, wait for a busy or rate-limited deployment, the call's
deadline) and yields one step at a time:

* :class:`~langchain_multigateway.routing.attempt.Try`: try this deployment once;
  the driver performs it with an attempt function and sends back the outcome
  (served, failed, or refused by admission);
* :class:`Sleep`: wait before a retry or for a rate window to free up;
* :class:`WaitGate`: wait in line for a busy deployment's concurrency slot; the
  driver sends back whether it was won, and the slot goes straight to the next try.

The drivers only do I/O: ``drive_sync`` sleeps and blocks, ``drive_async`` awaits and
cuts a try that outlives the call's ``timeout`` (cancelling it). The same loop serves
``invoke`` and ``stream`` (they differ only in the attempt function the driver runs).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Generator, Sequence
from typing import Any, TypeVar

from langchain_core.messages import BaseMessage

from langchain_multigateway.errors import AllDeploymentsFailedError, AttemptRecord, GatewayTimeoutError, RateLimitError
from langchain_multigateway.routing.attempt import BUSY, Failed, Shared, Try
from langchain_multigateway.routing.budget import BudgetGuard
from langchain_multigateway.routing.deployment import Deployment
from langchain_multigateway.routing.gate import ConcurrencyGate
from langchain_multigateway.routing.policy import Action, NoDeploymentAvailableError
from langchain_multigateway.routing.prepare import Prepared, PreparedCache, prepare, refuse_unfit
from langchain_multigateway.routing.request import Overrides, Request, count_ahead, describe
from langchain_multigateway.routing.runs import AttemptRuns
from langchain_multigateway.routing.selection import exclusion, plan
from langchain_multigateway.routing.strategies import Strategy, get_strategy
from langchain_multigateway.state.base import Admission
from langchain_multigateway.usage.budgets import Budget

__all__ = ["DEADLINE", "CallState", "Engine", "Sleep", "WaitGate", "drive_async", "drive_sync", "failover"]

_now = time.perf_counter
_COST_AWARE = frozenset({"cheapest", "balanced"})
_COOLDOWN_MARGIN = 0.005
"""Seconds slept past a cooldown, so the retry is not refused by the cooldown's last instant."""
T = TypeVar("T")


class Sleep:
    """A step: wait ``seconds`` (before a retry, or for a rate window)."""

    __slots__ = ("seconds",)

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds


class WaitGate:
    """A step: wait in line for a slot of ``gate`` (at ``priority``) for at most ``timeout`` seconds."""

    __slots__ = ("gate", "priority", "timeout")

    def __init__(self, gate: ConcurrencyGate, priority: int, timeout: float) -> None:
        self.gate = gate
        self.priority = priority
        self.timeout = timeout


DEADLINE = object()
"""What the async driver sends back for a try it cut because the call's ``timeout`` expired."""

Step = Try | Sleep | WaitGate


class Engine:
    """What a router's calls share, worked out once at construction: deployments, state, settings."""

    __slots__ = (
        "base_kwargs",
        "budget",
        "budget_mode",
        "by_name",
        "check_images",
        "count_always",
        "deployments",
        "max_retries",
        "max_wait",
        "prepared",
        "shared",
        "stop",
        "strategy",
        "stream_recovery",
        "timeout",
    )

    def __init__(
        self,
        deployments: Sequence[Deployment],
        shared: Shared,
        *,
        strategy: Strategy,
        base_kwargs: dict[str, Any],
        stop: list[str] | None,
        max_wait: float,
        timeout: float | None,
        max_retries: int | None,
        budget: Budget | None,
        budget_mode: str,
        stream_recovery: str,
    ) -> None:
        self.deployments = list(deployments)
        self.by_name = {d.name: d for d in self.deployments}
        self.shared = shared
        self.strategy = strategy
        self.base_kwargs = base_kwargs
        self.stop = stop
        self.max_wait = max_wait
        self.timeout = timeout
        self.max_retries = max_retries
        self.budget = budget
        self.budget_mode = budget_mode
        self.stream_recovery = stream_recovery
        self.count_always = any(d.tpm is not None or d.context_window is not None for d in self.deployments)
        self.check_images = any(d.capabilities.images is False for d in self.deployments)
        self.prepared: PreparedCache = {}

    def begin(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None,
        kwargs: dict[str, Any],
        overrides: Overrides,
        *,
        streaming: bool,
        whole: bool,
        runs: AttemptRuns | None,
    ) -> tuple[Request, CallState]:
        """The call's immutable request and its fresh mutable state."""
        strategy = self.strategy if overrides.strategy is None else get_strategy(overrides.strategy)
        request = describe(
            messages,
            stop or self.stop or None,
            kwargs,
            strategy=strategy,
            tags=overrides.tags,
            priority=overrides.priority,
            streaming=streaming,
            whole=whole,
            stream_recovery=overrides.stream_recovery or self.stream_recovery,
            base_kwargs=self.base_kwargs,
            estimate=self.count_always or strategy.name in _COST_AWARE,
            check_images=self.check_images,
            runs=runs,
        )
        guard = None if self.budget is None else BudgetGuard(self.budget, self.budget_mode, request)
        return request, CallState(self, guard)


class CallState:
    """What one call changes as it goes: attempts, exclusions, the deadline, the budget guard."""

    __slots__ = (
        "attempts",
        "deadline",
        "done",
        "excluded",
        "guard",
        "limited",
        "min_window",
        "prepared",
        "running",
        "running_since",
        "timeout",
        "tried",
        "wait_until",
    )

    def __init__(self, engine: Engine, guard: BudgetGuard | None) -> None:
        now = _now()
        self.timeout = engine.timeout
        self.deadline = None if engine.timeout is None else now + engine.timeout
        self.wait_until = now + engine.max_wait
        self.guard = guard
        self.attempts: list[AttemptRecord] = []
        self.excluded: dict[str, str] = {}
        self.done: set[str] = set()
        self.limited: dict[str, Any] = {}
        self.prepared: dict[str, Prepared] = {}
        self.min_window: int | None = None
        self.tried = False
        self.running: str | None = None
        self.running_since = now

    def remaining(self) -> float | None:
        return None if self.deadline is None else self.deadline - _now()

    def wait_left(self) -> float:
        """Seconds the call may still wait for a busy or rate-limited deployment."""
        until = self.wait_until if self.deadline is None else min(self.wait_until, self.deadline)
        return max(0.0, until - _now())

    def check_deadline(self) -> None:
        if self.deadline is not None and _now() >= self.deadline:
            raise self.timeout_error()

    def timeout_error(self) -> GatewayTimeoutError:
        """The call's ``timeout`` expired: what was running, and how long each try took."""
        doing = f"while deployment {self.running!r} was running" if self.running else "between attempts"
        tries = "; ".join(
            f"{a.deployment}: {type(a.error).__name__} after {a.latency_ms:.0f} ms" for a in self.attempts
        )
        msg = f"The call's timeout of {self.timeout:g} s expired {doing}; attempts: {tries or 'none'}"
        return GatewayTimeoutError(msg, limit="timeout", seconds=self.timeout)

    def exhausted(self) -> Exception:
        """No deployment is left: the budget's refusal, why each was out, or every failed try."""
        reasons = {**self.excluded, **{name: a.reason or "limited" for name, a in self.limited.items()}}
        if not self.attempts and self.guard is not None and self.guard.refused:
            return self.guard.exhausted(reasons)
        if not self.attempts:
            return NoDeploymentAvailableError("No deployment can take this request", reasons)
        lines = "".join(f"\n  - {name}: excluded, {why}" for name, why in reasons.items())
        return AllDeploymentsFailedError(f"All {len(self.attempts)} attempts failed{lines}", self.attempts)


# ---------------------------------------------------------------------- the loop
def failover(engine: Engine, request: Request, call: CallState) -> Generator[Step, Any, Any]:
    """Every decision of one routed call, as steps; returns the served outcome (``Answer`` / ``Opened``)."""
    ordered, call.excluded = plan(engine.deployments, request, engine.shared.state, call.guard)
    refuse_unfit(engine.prepared, ordered, request)  # strict_params: decided before the first try
    while True:
        call.limited = {}
        call.tried = False
        for dep in ordered:
            if dep.name in call.done:
                continue
            if call.min_window is not None:
                why = exclusion(request, dep, call.min_window)
                if why is not None:
                    call.excluded[dep.name] = why
                    call.done.add(dep.name)
                    continue
            served = yield from _tries(engine, request, call, dep, gate_held=False)
            if served is not None:
                return served
        if call.tried:
            continue  # a deployment cooling down after a 429 is seen as limited next pass
        if not call.limited:
            raise call.exhausted()
        busy = next((name for name, a in call.limited.items() if a.reason == BUSY), None)
        if busy is not None:
            won = yield WaitGate(engine.shared.gates[busy], request.priority, call.wait_left())
            if not won:
                call.check_deadline()
                raise RateLimitError(f"Every deployment is busy or rate-limited: {sorted(call.limited)}")
            # The slot won is handed straight to a try at its deployment: never dropped.
            served = yield from _tries(engine, request, call, engine.by_name[busy], gate_held=True)
            if served is not None:
                return served
            continue
        yield Sleep(_limited_wait(call))


def _tries(
    engine: Engine, request: Request, call: CallState, dep: Deployment, *, gate_held: bool
) -> Generator[Step, Any, Any]:
    """Try ``dep`` until it serves (returned), refuses or is given up on (None)."""
    prepared = call.prepared.get(dep.name)
    if prepared is None:  # never with gate_held: a gate is waited for only after a try was refused
        prepared = call.prepared[dep.name] = prepare(engine.prepared, dep, request)
    number = 0
    while True:
        number += 1
        if not gate_held:
            call.check_deadline()
        call.running, call.running_since = dep.name, _now()
        index = len(call.attempts) + 1
        outcome = yield Try(
            dep, prepared, number, index, gate_held=gate_held, guard=call.guard, timeout=call.remaining()
        )
        gate_held = False
        if outcome is DEADLINE:
            cut = GatewayTimeoutError(f"cut by the call's timeout of {call.timeout:g} s", limit="timeout")
            call.attempts.append(AttemptRecord(dep.name, cut, (_now() - call.running_since) * 1000))
            raise call.timeout_error()
        call.running = None
        if isinstance(outcome, Admission):  # refused: nothing was taken
            if outcome.limited:  # a retry too: another worker may have spent the new window first
                call.limited[dep.name] = outcome
            else:
                call.excluded[dep.name] = outcome.reason or "refused"
                call.done.add(dep.name)
            return None
        if not isinstance(outcome, Failed):
            return outcome  # served
        call.tried = True
        delay = _after_failure(engine, request, call, dep, outcome, number)
        if delay is None:
            return None
        yield Sleep(delay)


def _after_failure(
    engine: Engine, request: Request, call: CallState, dep: Deployment, failed: Failed, number: int
) -> float | None:
    """Record a failed try; raise, or the delay before retrying ``dep`` (None: move on)."""
    call.attempts.append(failed.record(dep))
    error, decision = failed.error, failed.decision
    if call.deadline is not None and _now() >= call.deadline:
        call.running = dep.name
        raise call.timeout_error() from error
    if decision.needs_larger_window:
        window = dep.context_window or request.counted(dep)
        call.min_window = max(call.min_window or 0, window)
    if decision.action is Action.RAISE:
        raise error
    delay = _retry_delay(engine, call, dep, error, number) if decision.action is Action.RETRY else None
    if decision.cooldown:
        # Cooling down for everyone: this call retries once the wait is over if that fits its
        # time, else moves on (and sees the deployment as rate-limited on its next pass).
        return None if delay is None else max(delay, decision.cooldown) + _COOLDOWN_MARGIN
    if delay is None:
        call.done.add(dep.name)
    return delay


def _retry_delay(engine: Engine, call: CallState, dep: Deployment, error: BaseException, number: int) -> float | None:
    """Seconds before trying ``dep`` again, if its retry policy and the call's time allow it."""
    policy = dep.retry_policy
    tries = policy.max_attempts if engine.max_retries is None else min(policy.max_attempts, engine.max_retries + 1)
    if number >= tries:
        return None
    asked = getattr(error, "retry_after", None)
    if isinstance(asked, (int, float)) and asked > min(policy.max_retry_after, engine.max_wait):
        return None  # a longer wait than the call may spend waiting: another deployment serves sooner
    delay = policy.backoff(number, error)
    if call.deadline is not None and _now() + delay >= call.deadline:
        return None
    return delay


def _limited_wait(call: CallState) -> float:
    """Seconds to sleep before a rate-limited deployment frees up; raise when that is past the call's bound."""
    waits = [a.retry_after for a in call.limited.values() if a.retry_after is not None]
    wait = min(waits) if waits else 0.05
    if wait > call.wait_left():
        names = ", ".join(f"{n} ({a.reason})" for n, a in call.limited.items())
        raise RateLimitError(f"Every deployment is rate-limited: {names}", retry_after=wait)
    return wait + 0.001


# ---------------------------------------------------------------------- the drivers (I/O only)
def drive_sync(engine: Engine, request: Request, call: CallState, attempt: Callable[[Shared, Request, Try], T]) -> Any:
    """Run the loop, performing each step by blocking; returns the served outcome."""
    steps = failover(engine, request, call)
    outcome: Any = None
    while True:
        try:
            step = steps.send(outcome)
        except StopIteration as done:
            return done.value
        if isinstance(step, Try):
            outcome = attempt(engine.shared, request, step)
        elif isinstance(step, Sleep):
            time.sleep(step.seconds)
            outcome = None
        else:
            outcome = step.gate.enter(step.priority, step.timeout)


async def drive_async(
    engine: Engine, request: Request, call: CallState, attempt: Callable[[Shared, Request, Try], Awaitable[T]]
) -> Any:
    """Run the loop, performing each step by awaiting; a try past the call's deadline is cancelled."""
    if engine.count_always or call.guard is not None:  # else no deployment counts tokens: nothing to count ahead
        await count_ahead(request, engine.deployments, budget=call.guard is not None)  # a large prompt: off the loop
    steps = failover(engine, request, call)
    outcome: Any = None
    while True:
        try:
            step = steps.send(outcome)
        except StopIteration as done:
            return done.value
        if isinstance(step, Try):
            if step.timeout is None:
                outcome = await attempt(engine.shared, request, step)
            else:
                try:
                    async with asyncio.timeout(step.timeout):
                        outcome = await attempt(engine.shared, request, step)
                except TimeoutError:
                    outcome = DEADLINE
        elif isinstance(step, Sleep):
            await asyncio.sleep(step.seconds)
            outcome = None
        else:
            outcome = await step.gate.aenter(step.priority, step.timeout)
