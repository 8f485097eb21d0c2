"""The router's engine: admission, the try/retry/failover loops (sync and async), outcomes."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from langchain_core.messages import BaseMessage

from langchain_multigateway.errors import AllDeploymentsFailedError, AttemptRecord, RateLimitError
from langchain_multigateway.routing._request import Prepared, RoutedCall
from langchain_multigateway.routing.deployment import Deployment
from langchain_multigateway.routing.policy import Action, NoDeploymentAvailableError
from langchain_multigateway.state.base import Admission

if TYPE_CHECKING:
    from langchain_multigateway.routing.policy import FailoverPolicy
    from langchain_multigateway.state.base import RouterState

__all__ = ["RoutingEngine", "Served"]

_BUSY = "at max_concurrency"
_now = time.perf_counter


class Served:
    """The attempt that answered: its deployment, admission, timing, earlier attempts,
    result, child run (when callbacks listen) and budget hold (when a budget is set)."""

    __slots__ = ("admission", "attempt", "attempts", "dep", "hold", "result", "started")

    def __init__(
        self,
        dep: Deployment,
        admission: Admission,
        started: float,
        attempts: list[AttemptRecord],
        result: Any,
        attempt: Any,
        hold: object | None,
    ) -> None:
        self.dep, self.admission, self.started, self.attempts = dep, admission, started, attempts
        self.result, self.attempt, self.hold = result, attempt, hold


class _Retry:
    """The same deployment is to be tried again after ``delay`` seconds."""

    __slots__ = ("delay",)

    def __init__(self, delay: float) -> None:
        self.delay = delay


_COOLING = _Retry(-1.0)
"""Moved on from a deployment cooling down after a 429; it may serve again after the wait."""


class RoutingEngine:
    """Mixin of RoutingChatModel holding its per-call machinery."""

    if TYPE_CHECKING:
        state: RouterState
        failover: FailoverPolicy
        max_wait: float
        timeout: float | None
        max_retries: int | None
        _rt: Any

        def _plan(self, call: RoutedCall) -> tuple[list[Deployment], dict[str, str]]: ...
        def _prepare(self, dep: Deployment, call: RoutedCall) -> Prepared: ...

    # ------------------------------------------------------------------ admission & outcomes
    def _admit(self, dep: Deployment, call: RoutedCall, *, gate_held: bool = False) -> Admission:
        gate = self._rt.gates.get(dep.name)
        if gate is not None and not gate_held and not gate.try_enter():
            return Admission(ok=False, reason=_BUSY, limited=True)
        tokens = call.input_tokens + call.reserve_output if (dep.tpm is not None) else 0
        admission = self.state.admit(dep.name, tokens=tokens, rpm=dep.rpm, tpm=dep.tpm)
        if not admission.ok and gate is not None:
            gate.leave()
        return admission

    def _release(self, dep: Deployment, admission: Admission, **outcome: Any) -> None:
        self.state.release(dep.name, admission, **outcome)
        gate = self._rt.gates.get(dep.name)
        if gate is not None:
            gate.leave()

    def _succeeded(self, served: Served, call: RoutedCall, message: BaseMessage) -> None:
        dep, attempts = served.dep, served.attempts
        elapsed = _now() - served.started
        usage = getattr(message, "usage_metadata", None)
        tokens = usage.get("total_tokens") if usage else None
        self._release(dep, served.admission, ok=True, latency=elapsed, tokens=tokens)
        if served.hold is not None and call.guard is not None:
            call.guard.settle(served.hold, dep, usage)
        meta = message.response_metadata
        if not meta.get("model_name"):
            meta["model_name"] = dep.model_name
            meta.setdefault("model_provider", dep.provider)
        meta["deployment"] = dep.name
        meta["provider"] = meta.get("model_provider") or dep.provider
        meta["model"] = meta["model_name"]
        meta["attempts"] = len(attempts) + 1
        if attempts:
            meta["failed_attempts"] = [a.as_metadata() for a in attempts]
        meta["latency_ms"] = round(elapsed * 1000, 3)
        meta["cached"] = False

    def _failed(
        self,
        dep: Deployment,
        call: RoutedCall,
        admission: Admission,
        error: Exception,
        started: float,
        number: int,
        attempts: list[AttemptRecord],
        deadline: float | None,
    ) -> _Retry | None:  # None: move on for good; _COOLING: move on for now
        """Record a failed try; raise, or say whether to retry the same deployment."""
        elapsed = _now() - started
        attempts.append(AttemptRecord(dep.name, error, elapsed * 1000))
        decision = self.failover.decide(error)
        self._release(dep, admission, ok=False, latency=elapsed, counts_against_breaker=decision.counts_against_breaker)
        if decision.cooldown:
            self.state.cooldown(dep.name, decision.cooldown)
        if decision.needs_larger_window:
            window = dep.context_window or call.counted(dep)
            call.min_window = max(call.min_window or 0, window)
        if decision.action is Action.RAISE:
            raise error
        if decision.cooldown:
            return _COOLING
        if decision.action is not Action.RETRY:
            return None
        policy = dep.retry_policy
        tries = policy.max_attempts if self.max_retries is None else min(policy.max_attempts, self.max_retries + 1)
        if number >= tries:
            return None
        asked = getattr(error, "retry_after", None)
        if isinstance(asked, (int, float)) and asked > policy.max_retry_after:
            return None
        delay = policy.backoff(number, error)
        if deadline is not None and _now() + delay > deadline:
            return None
        return _Retry(delay)

    def _deadline(self) -> float | None:
        return None if self.timeout is None else _now() + self.timeout

    def _exhausted(
        self, call: RoutedCall, attempts: list[AttemptRecord], excluded: dict[str, str], limited: dict[str, Admission]
    ) -> Exception:
        reasons = {**excluded, **{name: a.reason or "limited" for name, a in limited.items()}}
        if not attempts and call.guard is not None and call.guard.refused:
            return call.guard.exhausted(reasons)
        if not attempts:
            return NoDeploymentAvailableError("No deployment can take this request", reasons)
        lines = "".join(f"\n  - {name}: excluded, {why}" for name, why in reasons.items())
        return AllDeploymentsFailedError(f"All {len(attempts)} attempts failed{lines}", attempts)

    def _limited_wait(self, limited: dict[str, Admission], waited_until: float) -> float:
        """Seconds to sleep before the rate-limited deployments free up; raise if past the bound."""
        waits = [a.retry_after for a in limited.values() if a.retry_after is not None]
        wait = min(waits) if waits else 0.05
        if _now() + wait > waited_until:
            names = ", ".join(f"{n} ({a.reason})" for n, a in limited.items())
            raise RateLimitError(f"Every deployment is rate-limited: {names}", retry_after=wait)
        return wait + 0.001

    # ------------------------------------------------------------------ the sync loop
    def _route(self, call: RoutedCall, run: Any) -> Served:
        """Try deployments until ``run(prepared, attempt)`` succeeds."""
        ordered, excluded = self._plan(call)
        guard = call.guard
        attempts: list[AttemptRecord] = []
        deadline = self._deadline()
        wait_bound = _now() + (self.max_wait if deadline is None else min(self.max_wait, deadline - _now()))
        done: set[str] = set()
        gate_held: str | None = None
        while True:
            limited: dict[str, Admission] = {}
            attempted = False
            for dep in ordered:
                if dep.name in done:
                    continue
                if call.min_window is not None:
                    why = call.exclusion(dep)
                    if why is not None:
                        excluded[dep.name] = why
                        done.add(dep.name)
                        continue
                number = 0
                while True:
                    number += 1
                    hold = None
                    if guard is not None:
                        hold = guard.hold(dep)  # raises when on_budget_exceeded="raise"
                        if hold is None:
                            excluded[dep.name] = guard.reason(dep)
                            done.add(dep.name)
                            break
                    admission = self._admit(dep, call, gate_held=gate_held == dep.name)
                    gate_held = None
                    if not admission.ok:
                        if hold is not None and guard is not None:
                            guard.settle(hold, dep, None)
                        if admission.limited and number == 1:
                            limited[dep.name] = admission
                        else:
                            excluded[dep.name] = admission.reason or "refused"
                            done.add(dep.name)
                        break
                    started = _now()
                    attempted = True
                    attempt = None
                    try:
                        prepared = self._prepare(dep, call)
                        if call.runs is not None:
                            attempt = call.runs.start(dep, prepared, call.messages, call.stop, len(attempts) + 1)
                        result = run(prepared, attempt)
                    except Exception as exc:
                        if attempt is not None:
                            attempt.error(exc)
                        if hold is not None and guard is not None:
                            guard.settle(hold, dep, getattr(exc, "usage_metadata", None))
                        retry = self._failed(dep, call, admission, exc, started, number, attempts, deadline)
                        if retry is None or retry is _COOLING:
                            if retry is None:
                                done.add(dep.name)
                            break
                        time.sleep(retry.delay)
                        continue
                    except BaseException as exc:
                        if attempt is not None:
                            attempt.error(exc)
                        if hold is not None and guard is not None:
                            guard.settle(hold, dep, None)
                        self._release(dep, admission, ok=False, counts_against_breaker=False)
                        raise
                    return Served(dep, admission, started, attempts, result, attempt, hold)
            if attempted:
                continue  # a deployment cooling down after a 429 is seen as limited next pass
            if not limited:
                raise self._exhausted(call, attempts, excluded, {})
            busy = [name for name, a in limited.items() if a.reason == _BUSY]
            if busy:
                timeout = max(0.0, wait_bound - _now())
                if self._rt.gates[busy[0]].enter(call.priority, timeout):
                    gate_held = busy[0]
                    continue
                raise RateLimitError(f"Every deployment is busy or rate-limited: {sorted(limited)}", retry_after=None)
            time.sleep(self._limited_wait(limited, wait_bound))

    # ------------------------------------------------------------------ the async loop
    async def _aroute(self, call: RoutedCall, run: Any) -> Served:
        """Async twin of :meth:`_route`."""
        ordered, excluded = self._plan(call)
        guard = call.guard
        attempts: list[AttemptRecord] = []
        deadline = self._deadline()
        wait_bound = _now() + (self.max_wait if deadline is None else min(self.max_wait, deadline - _now()))
        done: set[str] = set()
        gate_held: str | None = None
        while True:
            limited: dict[str, Admission] = {}
            attempted = False
            for dep in ordered:
                if dep.name in done:
                    continue
                if call.min_window is not None:
                    why = call.exclusion(dep)
                    if why is not None:
                        excluded[dep.name] = why
                        done.add(dep.name)
                        continue
                number = 0
                while True:
                    number += 1
                    hold = None
                    if guard is not None:
                        hold = guard.hold(dep)  # raises when on_budget_exceeded="raise"
                        if hold is None:
                            excluded[dep.name] = guard.reason(dep)
                            done.add(dep.name)
                            break
                    admission = self._admit(dep, call, gate_held=gate_held == dep.name)
                    gate_held = None
                    if not admission.ok:
                        if hold is not None and guard is not None:
                            guard.settle(hold, dep, None)
                        if admission.limited and number == 1:
                            limited[dep.name] = admission
                        else:
                            excluded[dep.name] = admission.reason or "refused"
                            done.add(dep.name)
                        break
                    started = _now()
                    attempted = True
                    attempt = None
                    try:
                        prepared = self._prepare(dep, call)
                        if call.runs is not None:
                            attempt = await call.runs.astart(dep, prepared, call.messages, call.stop, len(attempts) + 1)
                        result = await run(prepared, attempt)
                    except Exception as exc:
                        if attempt is not None:
                            await attempt.error(exc)
                        if hold is not None and guard is not None:
                            guard.settle(hold, dep, getattr(exc, "usage_metadata", None))
                        retry = self._failed(dep, call, admission, exc, started, number, attempts, deadline)
                        if retry is None or retry is _COOLING:
                            if retry is None:
                                done.add(dep.name)
                            break
                        await asyncio.sleep(retry.delay)
                        continue
                    except BaseException as exc:
                        if attempt is not None:
                            await attempt.error(exc)
                        if hold is not None and guard is not None:
                            guard.settle(hold, dep, None)
                        self._release(dep, admission, ok=False, counts_against_breaker=False)
                        raise
                    return Served(dep, admission, started, attempts, result, attempt, hold)
            if attempted:
                continue  # a deployment cooling down after a 429 is seen as limited next pass
            if not limited:
                raise self._exhausted(call, attempts, excluded, {})
            busy = [name for name, a in limited.items() if a.reason == _BUSY]
            if busy:
                timeout = max(0.0, wait_bound - _now())
                if await self._rt.gates[busy[0]].aenter(call.priority, timeout):
                    gate_held = busy[0]
                    continue
                raise RateLimitError(f"Every deployment is busy or rate-limited: {sorted(limited)}", retry_after=None)
            await asyncio.sleep(self._limited_wait(limited, wait_bound))
