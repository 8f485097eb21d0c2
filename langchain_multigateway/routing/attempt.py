"""One try at one deployment: take what it needs, call the provider, give everything back exactly once.

What a try takes is a :class:`Slot`: the deployment's concurrency-gate slot, the
budget reservation, and the state's admission (in-flight count, rpm/tpm
reservation, a half-open breaker's probe). Each attempt function runs the provider
inside one ``try/finally`` whose ``finally`` is the slot's only release, so the
slot is given back on success, on error, on cancellation, on KeyboardInterrupt, and
(for streams, whose chunks are one generator holding the slot) when the consumer
stops reading or abandons the stream. Callback handlers hear of the outcome only
after that release, so no handler can stand between taking and giving back.

The four attempt functions (invoke/stream, sync/async) differ only in I/O; every
decision lives in :class:`Slot` and in the failover policy. The call to the provider
itself is :mod:`~langchain_multigateway.routing.calling`.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatGenerationChunk, ChatResult

from langchain_multigateway.errors import AttemptRecord, GatewayTimeoutError
from langchain_multigateway.routing.calling import (
    generate_async,
    generate_sync,
    provider_stream_async,
    provider_stream_sync,
)
from langchain_multigateway.routing.deployment import Deployment
from langchain_multigateway.routing.gate import ConcurrencyGate
from langchain_multigateway.routing.learned import announced, announced_by_error, take_learned
from langchain_multigateway.routing.policy import Action, Decision, FailoverPolicy
from langchain_multigateway.routing.prepare import Prepared, input_error
from langchain_multigateway.routing.request import Request
from langchain_multigateway.routing.structured import refusal_watch
from langchain_multigateway.state.base import Admission, RouterState

if TYPE_CHECKING:
    from langchain_multigateway.routing.budget import BudgetGuard

__all__ = [
    "BUSY",
    "Answer",
    "Failed",
    "Opened",
    "Shared",
    "Slot",
    "Try",
    "invoke_async",
    "invoke_sync",
    "stream_async",
    "stream_sync",
]

BUSY = "at max_concurrency"
_HANDLER_RAISED = Decision(Action.RAISE, counts_against_breaker=False)
"""A callback handler raised (``raise_error=True``): the caller's own code failed, not the deployment."""
_now = time.perf_counter


class Shared:
    """What every attempt of a router shares: its state, its gates and its failover policy."""

    __slots__ = ("gates", "learn_limits", "policy", "state")

    def __init__(
        self,
        state: RouterState,
        gates: dict[str, ConcurrencyGate],
        policy: FailoverPolicy,
        *,
        learn_limits: bool = True,
    ) -> None:
        self.state = state
        self.gates = gates
        self.policy = policy
        self.learn_limits = learn_limits
        """Providers' rate-limit headers are noted in ``state`` and refuse admissions past them."""


class Try:
    """A step of the failover loop: try ``dep`` once (``number`` counts tries at it in this call)."""

    __slots__ = ("dep", "gate_held", "guard", "index", "number", "prepared", "timeout")

    def __init__(
        self,
        dep: Deployment,
        prepared: Prepared,
        number: int,
        index: int,
        *,
        gate_held: bool,
        guard: BudgetGuard | None,
        timeout: float | None,
    ) -> None:
        self.dep = dep
        self.prepared = prepared
        self.number = number
        self.index = index
        """The attempt's number in the whole call (child runs' ``attempt`` metadata)."""
        self.gate_held = gate_held
        """The call already holds ``dep``'s gate slot (won by waiting); the attempt owns it now."""
        self.guard = guard
        self.timeout = timeout
        """Seconds left of the call's ``timeout`` (None: no limit)."""


class Failed:
    """A try that failed; its slot was already given back."""

    __slots__ = ("decision", "elapsed", "error")

    def __init__(self, error: BaseException, decision: Decision, elapsed: float) -> None:
        self.error = error
        self.decision = decision
        self.elapsed = elapsed

    def record(self, dep: Deployment) -> AttemptRecord:
        return AttemptRecord(dep.name, self.error, self.elapsed * 1000)


class Slot:
    """What one try holds, and the outcome it will be released with."""

    __slots__ = (
        "admission",
        "child",
        "cooldown",
        "counts",
        "cut_at",
        "dep",
        "dropped",
        "error",
        "failure",
        "first_at",
        "gate",
        "guard",
        "hold",
        "learned",
        "limits",
        "ok",
        "parts",
        "released",
        "released_at",
        "shared",
        "started",
        "usage",
    )

    def __init__(self, shared: Shared, dep: Deployment, gate: ConcurrencyGate | None, guard: BudgetGuard | None):
        self.shared = shared
        self.dep = dep
        self.gate = gate
        self.guard = guard
        self.hold: object | None = None
        self.learned: int | None = None
        """Tokens counted against the provider's announced budget (None: nothing counted)."""
        self.limits: Mapping[str, float] | None = None
        """The rate limits the provider announced with its answer or error."""
        self.admission: Admission | None = None
        self.started = _now()
        self.first_at: float | None = None
        self.usage: Mapping[str, Any] | None = None
        self.parts: list[str] = []
        self.child: Any = None
        self.dropped: Mapping[str, str] = {}
        self.ok = False
        self.counts = False
        self.cooldown: float | None = None
        self.error: BaseException | None = None
        self.failure: Failed | None = None
        self.released = False
        self.released_at = 0.0
        self.cut_at: float | None = None
        """When the call's ``timeout`` runs out (passed down as the provider's own request timeout)."""

    # ------------------------------------------------------------------ noting the outcome
    def saw(self, chunk: ChatGenerationChunk) -> None:
        """A chunk passed through: its usage, the first one's time, the text delivered."""
        if self.first_at is None:
            self.first_at = _now()
        usage = getattr(chunk.message, "usage_metadata", None)
        if usage:
            self.usage = usage
        if chunk.message.response_metadata:
            self.limits = announced(chunk.message.response_metadata) or self.limits
        if chunk.text:
            self.parts.append(chunk.text)
        if self.child is not None:
            self.child.chunks.append(chunk)

    def succeeded(self, message: BaseMessage | None) -> None:
        self.ok = True
        if message is not None:
            self.usage = getattr(message, "usage_metadata", None)
            self.limits = announced(message.response_metadata) or self.limits

    def failed(self, exc: Exception) -> Failed:
        """The provider failed: decide what it means (an input error or a handler's counts against nothing)."""
        raised = None if self.child is None else self.child.raised
        if raised is not None:
            error, decision = raised, _HANDLER_RAISED
        else:
            error = input_error(self.dep, exc) or exc
            decision = self.shared.policy.decide(error)
        self.error = error
        # A time limit that fired once the call's own time was up is the caller's deadline, not the
        # deployment's silence (async cuts such a try by cancelling it; it counts on no breaker either).
        by_deadline = self.cut_at is not None and _now() >= self.cut_at and isinstance(error, GatewayTimeoutError)
        self.counts = decision.counts_against_breaker and not by_deadline
        self.cooldown = decision.cooldown
        self.usage = getattr(exc, "usage_metadata", None) or self.usage
        self.limits = announced_by_error(error) or announced_by_error(exc) or self.limits
        self.failure = Failed(error, decision, _now() - self.started)
        return self.failure

    def ended(self, exc: BaseException) -> BaseException:
        """Note how the try ended early; the exception to raise (an input error re-typed as one)."""
        if isinstance(exc, Exception):
            return self.failed(exc).error
        self.interrupted(exc)
        return exc

    def interrupted(self, exc: BaseException) -> None:
        """Cancelled, interrupted, or (``GeneratorExit``) the consumer stopped reading: not the deployment's fault."""
        self.error = exc
        self.ok = isinstance(exc, GeneratorExit)
        self.counts = False

    @property
    def delivered(self) -> str:
        """The text that passed through so far."""
        return "".join(self.parts)

    # ------------------------------------------------------------------ the one release
    def release(self) -> None:
        """Give back everything taken, once, with the noted outcome."""
        if self.released:
            return
        self.released = True
        self.released_at = _now()
        state, name = self.shared.state, self.dep.name
        try:
            if self.admission is not None:
                usage = self.usage if self.ok else None
                state.release(
                    name,
                    self.admission,
                    ok=self.ok,
                    latency=_now() - self.started,
                    ttft=None if self.first_at is None else self.first_at - self.started,
                    tokens=usage.get("total_tokens") if usage else None,
                    counts_against_breaker=self.counts,
                )
                if self.cooldown:
                    state.cooldown(name, self.cooldown)
            elif self.learned is not None:
                state.learned.give_back(name, self.learned)  # never sent: it used none of the budget
            if self.limits is not None and self.shared.learn_limits:
                state.observe_limits(name, self.limits, self.released_at - self.started)
            elif self.learned is not None and self.admission is not None:
                state.learned.unanswered(name, opened=self.ok)  # a probe that said nothing frees the rest
        finally:
            try:
                if self.gate is not None:
                    self.gate.leave()
            finally:
                if self.hold is not None and self.guard is not None:
                    self.guard.settle(self.hold, self.dep, self.usage)

    def finish(self, stream: Any, result: ChatResult | None) -> None:
        """End of the try: close the provider's stream, release, then tell the handlers (sync)."""
        try:
            close = None if stream is None else getattr(stream, "close", None)  # None: no AttributeError raised
            if close is not None:
                close()  # hand the provider's connection back now, not at garbage collection
        finally:
            self.release()
            if self.child is not None:
                self.child.report(self.error, result)

    async def afinish(self, stream: Any, result: ChatResult | None) -> None:
        """End of the try (async): the same order as :meth:`finish`."""
        try:
            close = None if stream is None else getattr(stream, "aclose", None)
            if close is not None:
                await close()
        finally:
            self.release()
            if self.child is not None:
                await self.child.report(self.error, result)

    # ------------------------------------------------------------------ the answer's metadata
    def metadata(self, attempts: list[AttemptRecord]) -> dict[str, Any]:
        """The router's ``response_metadata`` keys for the answer this slot served."""
        dep = self.dep
        meta: dict[str, Any] = {
            "deployment": dep.name,
            "provider": dep.provider,
            "model": dep.model_name,
            "attempts": len(attempts) + 1,
            "latency_ms": round((_now() - self.started) * 1000, 3),
            "cached": False,
        }
        if self.first_at is not None:
            meta["ttft_ms"] = round((self.first_at - self.started) * 1000, 3)
        if attempts:
            meta["failed_attempts"] = [a.as_metadata() for a in attempts]
        if self.dropped:
            meta["dropped_params"] = dict(self.dropped)  # call parameters this deployment's API does not take
        return meta


def take(shared: Shared, request: Request, step: Try) -> Slot | Admission:
    """Take a slot at ``step.dep`` (never waits), or say why not; on refusal nothing is held."""
    slot = _enter(shared, step, request)
    if not isinstance(slot, Slot):
        return slot
    dep = step.dep
    try:
        admission = shared.state.admit(dep.name, tokens=_tpm_tokens(request, dep), rpm=dep.rpm, tpm=dep.tpm)
    except BaseException:
        slot.release()
        raise
    return _admitted(slot, admission)


async def atake(shared: Shared, request: Request, step: Try) -> Slot | Admission:
    """:func:`take` for the event loop: a shared state's admission is awaited, never blocking the loop.

    Cancelled while Redis answers, the slot's gate and budget hold are given back here, and
    the state forgets the admission it may have granted (RedisState does, once Redis answers).
    """
    slot = _enter(shared, step, request)
    if not isinstance(slot, Slot):
        return slot
    dep = step.dep
    try:
        admission = await shared.state.aadmit(dep.name, tokens=_tpm_tokens(request, dep), rpm=dep.rpm, tpm=dep.tpm)
    except BaseException:
        slot.release()
        raise
    return _admitted(slot, admission)


def _tpm_tokens(request: Request, dep: Deployment) -> int:
    return request.tpm_tokens(dep) if dep.tpm is not None else 0


def _enter(shared: Shared, step: Try, request: Request) -> Slot | Admission:
    """The gate slot and budget hold a try needs before its admission; on refusal nothing is held."""
    dep = step.dep
    gate = shared.gates.get(dep.name)
    if gate is not None and not step.gate_held and not gate.try_enter():
        return Admission(ok=False, reason=BUSY, limited=True)
    slot = Slot(shared, dep, gate, step.guard)  # from here the gate slot (if any) is the slot's
    slot.dropped = step.prepared.dropped
    if step.timeout is not None:
        slot.cut_at = slot.started + step.timeout
    if shared.learn_limits:
        counted = take_learned(shared.state, dep.name, request)
        if isinstance(counted, Admission):  # the provider said its budget is spent: skip it before a 429
            slot.release()
            return counted
        slot.learned = counted
    if step.guard is None:
        return slot
    try:
        slot.hold = step.guard.hold(dep)  # raises when on_budget_exceeded="raise"
    except BaseException:
        slot.release()
        raise
    if slot.hold is None:
        slot.release()
        return Admission(ok=False, reason=step.guard.reason(dep))
    return slot


def _admitted(slot: Slot, admission: Admission) -> Slot | Admission:
    """The slot, admitted; or the state's refusal, with the gate and budget hold given back."""
    if admission.ok:
        slot.admission = admission
        return slot
    slot.release()
    return admission


class Answer:
    """A served, non-streamed try: its slot (released) and the result."""

    __slots__ = ("result", "slot")

    def __init__(self, slot: Slot, result: ChatResult) -> None:
        self.slot = slot
        self.result = result

    def finish(self, attempts: list[AttemptRecord]) -> ChatResult:
        """The result, its message carrying the served model and the router's metadata."""
        message = self.result.generations[0].message
        meta = message.response_metadata
        dep = self.slot.dep
        if not meta.get("model_name"):
            meta["model_name"] = dep.model_name
            meta.setdefault("model_provider", dep.provider)
        meta.update(self.slot.metadata(attempts))
        meta["provider"] = meta.get("model_provider") or dep.provider
        meta["model"] = meta["model_name"]
        meta.pop("ttft_ms", None)
        return self.result


class Opened:
    """A stream past its failover boundary: ``head`` read, the rest in ``chunks`` (a generator holding ``slot``)."""

    __slots__ = ("chunks", "head", "slot")

    def __init__(self, slot: Slot, head: list[ChatGenerationChunk], chunks: Any) -> None:
        self.slot = slot
        self.head = head
        self.chunks = chunks


# ---------------------------------------------------------------------- the attempts
def invoke_sync(shared: Shared, request: Request, step: Try) -> Answer | Failed | Admission:
    """One non-streamed try."""
    slot = take(shared, request, step)
    if not isinstance(slot, Slot):
        return slot
    result: ChatResult | None = None
    try:
        if request.runs is not None:
            slot.child = request.runs.start(step.dep, step.prepared, request.messages, request.stop, step.index)
        result = generate_sync(step.prepared, request, slot.child, step.timeout)
        slot.succeeded(result.generations[0].message)
    except BaseException as exc:
        slot.ended(exc)
        if slot.failure is None:
            raise  # cancelled or interrupted: no outcome of the provider's
    finally:
        slot.finish(None, result)
    if slot.failure is not None or result is None:
        return _failure(slot)
    return Answer(slot, result)


async def invoke_async(shared: Shared, request: Request, step: Try) -> Answer | Failed | Admission:
    """One non-streamed try (async)."""
    slot = await atake(shared, request, step)
    if not isinstance(slot, Slot):
        return slot
    result: ChatResult | None = None
    try:
        if request.runs is not None:
            slot.child = await request.runs.astart(step.dep, step.prepared, request.messages, request.stop, step.index)
        result = await generate_async(step.prepared, request, slot.child, step.timeout)
        slot.succeeded(result.generations[0].message)
    except BaseException as exc:
        slot.ended(exc)
        if slot.failure is None:
            raise
    finally:
        await slot.afinish(None, result)
    if slot.failure is not None or result is None:
        return _failure(slot)
    return Answer(slot, result)


def _failure(slot: Slot) -> Failed:
    assert slot.failure is not None
    return slot.failure


def stream_sync(shared: Shared, request: Request, step: Try) -> Opened | Failed | Admission:
    """One streamed try, up to its first chunk (the failover boundary), or its end when the caller is not streaming."""
    slot = take(shared, request, step)
    if not isinstance(slot, Slot):
        return slot
    chunks = _chunks_sync(slot, request, step)
    try:
        head = list(chunks) if request.whole else [next(chunks)]
    except StopIteration:
        return Opened(slot, [], chunks)  # a valid, empty answer (already released as a success)
    except Exception:
        if slot.failure is None:
            raise  # a handler raised as the try ended well: the deployment did not fail
        return slot.failure
    return Opened(slot, head, chunks)


async def stream_async(shared: Shared, request: Request, step: Try) -> Opened | Failed | Admission:
    """One streamed try, up to its first chunk (async)."""
    slot = await atake(shared, request, step)
    if not isinstance(slot, Slot):
        return slot
    chunks = _chunks_async(slot, request, step)
    try:
        head = [c async for c in chunks] if request.whole else [await chunks.__anext__()]
    except StopAsyncIteration:
        return Opened(slot, [], chunks)
    except Exception:
        if slot.failure is None:
            raise
        return slot.failure
    return Opened(slot, head, chunks)


def _chunks_sync(slot: Slot, request: Request, step: Try) -> Iterator[ChatGenerationChunk]:
    """The provider's chunks; the slot is released when this generator ends, however it ends."""
    stream: Iterator[ChatGenerationChunk] | None = None
    try:
        if request.runs is not None:
            slot.child = request.runs.start(step.dep, step.prepared, request.messages, request.stop, step.index)
        stream = provider_stream_sync(step.prepared, request, slot.child, step.timeout)
        watch = refusal_watch(request.structured)  # a structured answer's refusal meets the content policy here
        for chunk in stream:
            slot.saw(chunk)
            if watch is None:
                yield chunk
            else:
                yield from watch.take(chunk)
        if watch is not None:
            yield from watch.end()
        slot.succeeded(None)
    except BaseException as exc:
        error = slot.ended(exc)
        if error is exc:
            raise
        raise error from exc
    finally:
        slot.finish(stream, None)


async def _chunks_async(slot: Slot, request: Request, step: Try) -> AsyncIterator[ChatGenerationChunk]:
    """The provider's chunks (async); the slot is released when this generator ends, however it ends."""
    stream: AsyncIterator[ChatGenerationChunk] | None = None
    try:
        if request.runs is not None:
            slot.child = await request.runs.astart(step.dep, step.prepared, request.messages, request.stop, step.index)
        stream = await provider_stream_async(step.prepared, request, slot.child, step.timeout)
        watch = refusal_watch(request.structured)
        async for chunk in stream:
            slot.saw(chunk)
            if watch is None:
                yield chunk
            else:
                for held in watch.take(chunk):
                    yield held
        if watch is not None:
            for held in watch.end():
                yield held
        slot.succeeded(None)
    except BaseException as exc:
        error = slot.ended(exc)
        if error is exc:
            raise
        raise error from exc
    finally:
        await slot.afinish(stream, None)
