"""Budget spend kept outside the process, per period: the interface, periods, and the judging rule.

A :class:`SpendStore` keeps, per budget name, what was spent (tokens and USD) in each
period bucket and what calls in flight have reserved. :meth:`SpendStore.reserve` judges a
call and holds its estimate in one atomic step, so processes sharing the store cannot all
pass on the same remaining spend; :meth:`SpendStore.settle` replaces the estimate with the
real spend. Two implementations: Redis (:mod:`.spend_redis`, shared across hosts) and
SQLite (:mod:`.spend_sqlite`, the usage ledger's file, shared by the processes of one host
and surviving restarts).

Periods (UTC):

- ``None``: all time.
- ``"1d"``: the current calendar day; ``"7d"``, ``"30d"`` (any ``"<n>d"``): the current day
  and the ``n - 1`` days before it, a window that slides one day at a time.
- ``"1mo"``: the current calendar month.

USD is stored as integer nano-dollars, so sums never drift.
"""

from __future__ import annotations

import re
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

__all__ = [
    "Hold",
    "SpendStore",
    "SpendStoreError",
    "SpendTotals",
    "buckets",
    "check_period",
    "judge",
    "nano",
    "period_seconds",
]

_DAYS = re.compile(r"^([1-9][0-9]{0,2})d$")
RESERVATION_LEASE = 600.0
"""Seconds after which a reservation never settled (its process died) stops counting."""


def check_period(period: str | None) -> str | None:
    """``period`` if it is one this module knows; else a ValueError saying which are."""
    if period is None or period == "1mo" or _DAYS.match(period):
        return period
    raise ValueError(f"period must be None, '1d', '<n>d' (e.g. '30d', up to 999) or '1mo' (got {period!r})")


def buckets(period: str | None, at: float | None = None) -> tuple[str, list[str]]:
    """``(bucket written now, buckets summed now)`` for ``period`` at time ``at`` (epoch seconds)."""
    if period is None:
        return "all", ["all"]
    now = datetime.fromtimestamp(time.time() if at is None else at, tz=UTC)
    if period == "1mo":
        month = f"m{now:%Y-%m}"
        return month, [month]
    match = _DAYS.match(period)
    if match is None:
        check_period(period)
    days = int(match.group(1)) if match else 1
    summed = [f"d{now - timedelta(days=back):%Y-%m-%d}" for back in range(days)]
    return summed[0], summed


def period_seconds(period: str | None) -> float:
    """How long a bucket of ``period`` must be kept (for TTLs), with a day of slack."""
    if period is None:
        return 400 * 86400.0
    if period == "1mo":
        return 32 * 86400.0
    match = _DAYS.match(period)
    return (int(match.group(1)) + 1) * 86400.0 if match else 2 * 86400.0


def nano(usd: float | None) -> int:
    """USD as integer nano-dollars."""
    return round((usd or 0.0) * 1e9)


class SpendStoreError(RuntimeError):
    """The budget's store could not be read or written, so the call was not sent.

    A budget has no safe local fallback: each process would grant the whole budget again.
    """


@dataclass(frozen=True)
class SpendTotals:
    """Spend in the current period and reservations in flight, as judged."""

    spent_tokens: int = 0
    spent_cost_usd: float = 0.0
    reserved_tokens: int = 0
    reserved_cost_usd: float = 0.0


@dataclass(frozen=True)
class Hold:
    """One call's reservation request: its key, its estimate, and the limits it is judged on."""

    key: str
    tokens: int
    cost: float | None
    max_tokens: int | None
    max_cost: float | None


def judge(totals: SpendTotals, hold: Hold) -> str | None:
    """Which limit ``hold`` would pass (``"tokens"``, ``"cost"``) or None.

    The rule ``Budget`` applies: spend plus reservations plus this estimate must stay within
    each limit; a call of unknown cost fits only while spend plus reservations is below it.
    (The Redis script applies the same rule on the server.)
    """
    if hold.max_tokens is not None and totals.spent_tokens + totals.reserved_tokens + hold.tokens > hold.max_tokens:
        return "tokens"
    if hold.max_cost is not None:
        held = nano(totals.spent_cost_usd) + nano(totals.reserved_cost_usd)
        limit = nano(hold.max_cost)
        if (held >= limit) if hold.cost is None else (held + nano(hold.cost) > limit):
            return "cost"
    return None


class SpendStore(ABC):
    """Spend per budget and period, with atomic judge-and-hold reservations."""

    def reserve(
        self,
        budget: str,
        period: str | None,
        key: str,
        tokens: int,
        cost: float | None,
        max_tokens: int | None,
        max_cost: float | None,
    ) -> tuple[str | None, SpendTotals]:
        """Judge a call and, if it fits, hold its estimate under ``key``, in one atomic step.

        Returns the limit it would pass (None: held) and the totals it was judged on.
        """
        return self._reserve(budget, period, Hold(key, int(tokens), cost, max_tokens, max_cost))

    @abstractmethod
    def _reserve(self, budget: str, period: str | None, hold: Hold) -> tuple[str | None, SpendTotals]:
        """:meth:`reserve`'s work, for each store."""

    @abstractmethod
    def settle(self, budget: str, period: str | None, key: str, tokens: int, cost: float) -> None:
        """Drop reservation ``key`` (if held) and add the real spend to the current bucket."""

    @abstractmethod
    def totals(self, budget: str, period: str | None) -> SpendTotals:
        """Spend in the current period and reservations in flight."""

    @abstractmethod
    def reset(self, budget: str, period: str | None) -> None:
        """Spend in the current period back to zero (reservations are kept)."""
