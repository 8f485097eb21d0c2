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
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from langchain_multigateway.server.errors import ApiError
from langchain_multigateway.server.keys import VirtualKey
from langchain_multigateway.state.base import Admission, RouterState

__all__ = ["KeyLimits"]

_WINDOW = 60.0
SpentSince = Callable[[VirtualKey, float], float]


class KeyLimits:
    """rpm, tpm and budget per virtual key.

    Args:
        spent_since: ``(key, since_epoch) -> USD`` already spent (the ledger's total);
            None when there is no ledger (spend then counts from the server's start).
        shared: A shared RouterState (Redis) for the rpm / tpm windows; None: this process.
    """

    def __init__(self, spent_since: SpentSince | None = None, shared: RouterState | None = None) -> None:
        self._spent_since = spent_since
        self._shared = shared
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
        if key.budget_usd is not None:
            self._check_budget(key, now)
        if self._shared is None:  # else rpm and tpm are judged by :meth:`ahold`
            self._check_rates(key, now)
        if key.budget_usd is not None:  # last: nothing after it refuses, so the reservation is released
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

    async def ahold(self, key: VirtualKey) -> Admission | None:
        """With shared state: count the call in ``key``'s shared windows (429 when full); None otherwise."""
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
        self, key: VirtualKey, tokens: int, cost_usd: float, now: float | None = None, hold: Admission | None = None
    ) -> None:
        """Add a finished call's tokens and cost to ``key``'s windows and spend (releasing its ``hold``)."""
        now = time.time() if now is None else now
        if hold is not None and self._shared is not None:
            self._release(key, hold, tokens)
        elif key.tpm is not None and tokens:
            self._tokens.setdefault(key.id, deque()).append((now, tokens))
            self._token_sums[key.id] = self._token_sums.get(key.id, 0) + tokens
        if key.budget_usd is not None:
            self.cancel(key)
            if cost_usd:
                start, spent = self._spent(key, now)
                self._spend[key.id] = (start, spent + cost_usd)
            # Even a free or failed call makes the cost of a call known (0 at least).
            self._call_cost[key.id] = max(self._call_cost.get(key.id, 0.0), cost_usd or 0.0)

    def _release(self, key: VirtualKey, hold: Admission, tokens: int) -> None:
        assert self._shared is not None
        options: dict[str, Any] = {"ok": True, "tokens": tokens, "counts_against_breaker": False}
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._shared.release(key.tag, hold, **options)
            return
        task = loop.create_task(self._shared.arelease(key.tag, hold, **options))
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
        if spent < key.budget_usd:
            msg = (
                f"key {key.name!r} has spent ${spent:.4f} of its ${key.budget_usd:.2f} budget and its "
                f"{in_flight} call(s) in flight may spend the rest; retry when they end"
            )
            raise ApiError(429, "rate_limit", msg, code="key_budget_reserved", retry_after=1.0)
        if key.period_seconds:
            resets = key.period_start(now) + key.period_seconds
            when = datetime.fromtimestamp(resets, tz=timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
            period = f"for this period (it resets at {when})"
        else:
            period = "(a lifetime budget)"
        msg = (
            f"key {key.name!r} has spent ${spent:.4f} of its ${key.budget_usd:.2f} budget {period}; "
            "ask the gateway's admin for a key with a larger budget"
        )
        raise ApiError(429, "rate_limit", msg, code="budget_exceeded")

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
