"""Per-key limits, judged before the upstream is called: requests and tokens per minute, and spend.

Windows are sliding 60-second windows. Held in this process by default (with
``--workers`` > 1 each worker counts its own; the server warns); in the config's shared
state (``state: {backend: redis}``) when there is one, so every worker and host counts
against the same window: a key's window is then a RouterState entry named ``key:<id>``,
admitted before the call and released with its real tokens after it. Spend starts from the ledger's total
for the key's current budget period (read once per key and period) and grows with
every call this process serves. A call is refused once the key's spend has reached
its budget; the last call let in may pass the budget by its own cost, since what a
call costs is known only when it ends. Calls in flight count against the budget at the
largest cost one of the key's calls has had, so concurrent calls cannot all pass on the
same remaining spend; until a first call has ended (its cost unknown) a budgeted key
runs one call at a time (the others get a 429 with ``Retry-After``).

With shared state, budgets are shared too: each key's spend for its current period
lives in the Redis spend store (:class:`~langchain_multigateway.state.spend_redis.RedisSpendStore`),
under ``key:<id>@<period start>``. A call is judged and its estimate held in one
atomic step, so the workers and hosts sharing the store cannot all pass on the same
remaining spend; the real cost replaces the estimate when the call ends. The estimate
is the largest cost one of the key's calls has had in this process; before this process
has seen one end, what the call may cost at its router's prices (its prompt, estimated,
and its ``max_tokens``, else 1,024 output tokens, at the dearest deployment), so a new
key's first calls, sent at once to every worker, are held against the budget too. An unreachable
store refuses budgeted calls (503): each worker granting the whole budget again would
be worse.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from langchain_multigateway.server.errors import ApiError
from langchain_multigateway.server.keys import VirtualKey
from langchain_multigateway.state.base import Admission, RouterState
from langchain_multigateway.state.spend import SpendStore, SpendStoreError

__all__ = ["KeyHold", "KeyLimits"]

_WINDOW = 60.0
SpentSince = Callable[[VirtualKey, float], float]


@dataclass
class KeyHold:
    """What a call holds in shared state until it is recorded."""

    window: Admission | None = None
    """Its place in the key's shared rpm / tpm windows."""
    budget: tuple[str, str] | None = None
    """``(budget name, reservation id)`` of its estimate in the shared spend store."""


class KeyLimits:
    """rpm, tpm and budget per virtual key.

    Args:
        spent_since: ``(key, since_epoch) -> USD`` already spent (the ledger's total);
            None when there is no ledger (spend then counts from the server's start).
        shared: A shared RouterState (Redis) for the rpm / tpm windows; None: this process.
        spend: A shared spend store for the budgets; None: this process (seeded from the ledger).
    """

    def __init__(
        self,
        spent_since: SpentSince | None = None,
        shared: RouterState | None = None,
        spend: SpendStore | None = None,
    ) -> None:
        self._spent_since = spent_since
        self._shared = shared
        self._store = spend
        self._releases: set[asyncio.Task[Any]] = set()
        self._requests: dict[str, deque[float]] = {}
        self._tokens: dict[str, deque[tuple[float, int]]] = {}
        self._token_sums: dict[str, int] = {}
        self._spend: dict[str, tuple[float, float]] = {}  # key id -> (period start, USD)
        self._in_flight: dict[str, int] = {}  # key id -> budgeted calls admitted and not yet recorded
        self._call_cost: dict[str, float] = {}  # key id -> the largest cost one call has had

    def admit(self, key: VirtualKey, now: float | None = None) -> None:
        """Count a request against ``key``, or raise a 429 :class:`ApiError` saying which limit it hit."""
        now = time.time() if now is None else now
        local_budget = key.budget_usd is not None and self._store is None  # else judged by :meth:`ahold`
        if local_budget:
            self._check_budget(key, now)
        if self._shared is None:  # else rpm and tpm are judged by :meth:`ahold`
            self._check_rates(key, now)
        if local_budget:  # last: nothing after it refuses, so the reservation is released
            self._in_flight[key.id] = self._in_flight.get(key.id, 0) + 1

    def cancel(self, key: VirtualKey) -> None:
        """Undo :meth:`admit` for a call refused after it (by the shared rpm/tpm windows)."""
        if key.budget_usd is not None and self._in_flight.get(key.id, 0) > 0:
            self._in_flight[key.id] -= 1

    def _check_rates(self, key: VirtualKey, now: float) -> None:
        if key.tpm is not None:
            self._check_tpm(key, now)
        if key.rpm is not None:
            window = self._requests.setdefault(key.id, deque())
            while window and window[0] <= now - _WINDOW:
                window.popleft()
            if len(window) >= key.rpm:
                wait = window[0] + _WINDOW - now
                msg = f"key {key.name!r} is over its limit of {key.rpm} requests per minute; retry in {wait:.0f} s"
                raise ApiError(429, "rate_limit", msg, code="key_rpm_exceeded", retry_after=wait)
            window.append(now)

    async def ahold(self, key: VirtualKey, estimate: Callable[[], float | None] | None = None) -> KeyHold | None:
        """With shared state: count the call in ``key``'s shared windows and budget (429 when over).

        ``estimate``: what the call may cost at its router's prices (None: no price known),
        held for a key whose calls this process has not seen end yet.
        """
        hold = KeyHold(window=await self._hold_window(key))
        if self._store is not None and key.budget_usd is not None:
            guess = self._call_cost.get(key.id)
            if guess is None and estimate is not None:
                guess = estimate()
            # The reservation runs in a thread that a cancelled wait would not stop: shielded, so a
            # call cancelled meanwhile (the server stopping) gives back what the thread still holds.
            reserving = asyncio.ensure_future(asyncio.to_thread(self._reserve, key, guess))
            try:
                hold.budget = await asyncio.shield(reserving)
            except BaseException:
                reserving.add_done_callback(self._give_back)
                if hold.window is not None:
                    self._release(key, hold.window, 0)
                raise
        return hold if hold.window is not None or hold.budget is not None else None

    def _give_back(self, reserving: asyncio.Future[tuple[str, str]]) -> None:
        """Drop a reservation whose call will never run (nothing spent)."""
        if reserving.cancelled() or reserving.exception() is not None or self._store is None:
            return
        budget, reservation = reserving.result()
        self._background(asyncio.to_thread(self._store.settle, budget, None, reservation, 0, 0.0))

    def _reserve(self, key: VirtualKey, estimate: float | None) -> tuple[str, str]:
        """Judge ``key``'s budget and hold this call's estimate in the shared store, in one step."""
        assert self._store is not None
        assert key.budget_usd is not None
        now = time.time()
        budget = f"{key.tag}@{int(key.period_start(now))}"
        reservation = uuid.uuid4().hex
        try:
            # The limit is raised by the call's own estimate: as in this process, the call that
            # crosses the budget is let in; the others in flight count at their estimates.
            over, totals = self._store.reserve(
                budget, None, reservation, 0, estimate, None, key.budget_usd + (estimate or 0.0)
            )
        except SpendStoreError as exc:
            msg = f"key {key.name!r} has a budget and the shared budget store cannot be reached; retry shortly"
            raise ApiError(503, "unavailable", msg, code="budget_store_unavailable", retry_after=1.0) from exc
        if over is not None:
            raise self._over_budget(key, totals.spent_cost_usd, now, totals.reserved_cost_usd)
        return budget, reservation

    async def _hold_window(self, key: VirtualKey) -> Admission | None:
        if self._shared is None or (key.rpm is None and key.tpm is None):
            return None
        admission = await self._shared.aadmit(key.tag, rpm=key.rpm, tpm=key.tpm)
        if not admission.ok:
            which = "tokens" if "tpm" in (admission.reason or "") else "requests"
            limit = key.tpm if which == "tokens" else key.rpm
            wait = admission.retry_after
            msg = f"key {key.name!r} is over its limit of {limit} {which} per minute" + (
                f"; retry in {wait:.0f} s" if wait is not None else ""
            )
            code = "key_tpm_exceeded" if which == "tokens" else "key_rpm_exceeded"
            raise ApiError(429, "rate_limit", msg, code=code, retry_after=wait)
        return admission

    def record(
        self,
        key: VirtualKey,
        tokens: int,
        cost_usd: float | None,
        now: float | None = None,
        hold: KeyHold | None = None,
    ) -> None:
        """Add a finished call's tokens and cost to ``key``'s windows and spend (releasing its ``hold``).

        ``cost_usd`` None: the call failed or was cut, which says nothing of what a call costs (counted as 0
        in the spend, but a call's cost stays unknown: else a key whose first call was hung up would have
        its next calls let in at once as if calls were free).
        """
        now = time.time() if now is None else now
        if hold is not None and hold.window is not None and self._shared is not None:
            self._release(key, hold.window, tokens)
        elif self._shared is None and key.tpm is not None and tokens:
            self._tokens.setdefault(key.id, deque()).append((now, tokens))
            self._token_sums[key.id] = self._token_sums.get(key.id, 0) + tokens
        if hold is not None and hold.budget is not None and self._store is not None:
            budget, reservation = hold.budget
            self._background(asyncio.to_thread(self._store.settle, budget, None, reservation, tokens, cost_usd or 0.0))
            if cost_usd is not None:
                self._call_cost[key.id] = max(self._call_cost.get(key.id, 0.0), cost_usd)
        elif key.budget_usd is not None and self._store is None:
            self.cancel(key)
            if cost_usd:
                start, spent = self._spent(key, now)
                self._spend[key.id] = (start, spent + cost_usd)
            if cost_usd is not None:  # even a free call makes the cost of a call known (0)
                self._call_cost[key.id] = max(self._call_cost.get(key.id, 0.0), cost_usd)

    def _release(self, key: VirtualKey, hold: Admission, tokens: int) -> None:
        assert self._shared is not None
        options: dict[str, Any] = {"ok": True, "tokens": tokens, "counts_against_breaker": False}
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._shared.release(key.tag, hold, **options)
            return
        self._background(self._shared.arelease(key.tag, hold, **options), loop)

    def _background(self, work: Any, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Run ``work`` (a coroutine) without making the answer wait for it."""
        try:
            loop = loop or asyncio.get_running_loop()
        except RuntimeError:
            asyncio.run(work)
            return
        task = loop.create_task(work)
        self._releases.add(task)  # held until done, so it is not collected half-way
        task.add_done_callback(self._releases.discard)

    def spent(self, key: VirtualKey, now: float | None = None) -> float:
        """USD ``key`` has spent in its current budget period."""
        return self._spent(key, time.time() if now is None else now)[1]

    def _spent(self, key: VirtualKey, now: float) -> tuple[float, float]:
        start = key.period_start(now)
        held = self._spend.get(key.id)
        if held is None or held[0] != start:
            spent = self._spent_since(key, start) if self._spent_since is not None else 0.0
            held = self._spend[key.id] = (start, spent)
        return held

    def _check_budget(self, key: VirtualKey, now: float) -> None:
        assert key.budget_usd is not None
        spent = self._spent(key, now)[1]
        in_flight = self._in_flight.get(key.id, 0)
        per_call = self._call_cost.get(key.id)
        if in_flight and per_call is None:
            msg = (
                f"key {key.name!r} has a budget and its first call is still running, so what a call costs "
                "is not known yet; retry in a second"
            )
            raise ApiError(429, "rate_limit", msg, code="key_budget_pending", retry_after=1.0)
        if spent + in_flight * (per_call or 0.0) < key.budget_usd:
            return
        raise self._over_budget(key, spent, now, in_flight * (per_call or 0.0))

    def _over_budget(self, key: VirtualKey, spent: float, now: float, reserved: float) -> ApiError:
        assert key.budget_usd is not None
        if spent < key.budget_usd:
            msg = (
                f"key {key.name!r} has spent ${spent:.4f} of its ${key.budget_usd:.2f} budget and its "
                f"calls in flight may spend the rest (${reserved:.4f} held); retry when they end"
            )
            return ApiError(429, "rate_limit", msg, code="key_budget_reserved", retry_after=1.0)
        if key.period_seconds:
            resets = key.period_start(now) + key.period_seconds
            when = datetime.fromtimestamp(resets, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")
            period = f"for this period (it resets at {when})"
        else:
            period = "(a lifetime budget)"
        msg = (
            f"key {key.name!r} has spent ${spent:.4f} of its ${key.budget_usd:.2f} budget {period}; "
            "ask the gateway's admin for a key with a larger budget"
        )
        return ApiError(429, "rate_limit", msg, code="budget_exceeded")

    def _check_tpm(self, key: VirtualKey, now: float) -> None:
        assert key.tpm is not None
        window = self._tokens.get(key.id)
        if not window:
            return
        while window and window[0][0] <= now - _WINDOW:
            self._token_sums[key.id] -= window.popleft()[1]
        used = self._token_sums.get(key.id, 0)
        if used >= key.tpm:
            wait = window[0][0] + _WINDOW - now if window else 1.0
            msg = f"key {key.name!r} used {used} of its {key.tpm} tokens per minute; retry in {wait:.0f} s"
            raise ApiError(429, "rate_limit", msg, code="key_tpm_exceeded", retry_after=wait)
