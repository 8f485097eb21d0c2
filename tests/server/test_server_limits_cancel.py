"""A call cancelled while its key's budget estimate is being reserved in the shared spend store.

The reservation runs in a worker thread (the store's I/O), which cancelling the call's
task does not stop. Here the store is the real SQLite spend store, its reservation held
back by an event until the call's task has been cancelled (as the server's shutdown
cancels calls in flight): the reservation it still makes must be given back, or the
key's budget stays held by a call that never ran until the reservation's lease ends.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest

from langchain_multigateway.server.keys import VirtualKey
from langchain_multigateway.server.limits import KeyLimits
from langchain_multigateway.state.spend import Hold, SpendTotals
from langchain_multigateway.state.spend_sqlite import SQLiteSpendStore


class HeldBackStore(SQLiteSpendStore):
    """The SQLite spend store, whose reservations wait for ``go`` (``started`` once one waits, ``made`` after)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.started, self.go, self.made = threading.Event(), threading.Event(), threading.Event()

    def _reserve(self, budget: str, period: str | None, hold: Hold) -> tuple[str | None, SpendTotals]:
        self.started.set()
        self.go.wait(20)
        try:
            return super()._reserve(budget, period, hold)
        finally:
            self.made.set()


async def test_a_call_cancelled_while_its_budget_is_reserved_gives_the_reservation_back(tmp_path: Path) -> None:
    store = HeldBackStore(tmp_path / "spend.sqlite3")
    limits = KeyLimits(spend=store)
    key = VirtualKey(id="k-cancel", name="team-a", prefix="mg-abc", budget_usd=1.0)
    budget = f"{key.tag}@{int(key.period_start(time.time()))}"
    call = asyncio.ensure_future(limits.ahold(key, lambda: 0.4))
    assert await asyncio.to_thread(store.started.wait, 20)
    call.cancel()  # the server stops while the store is still reserving
    with pytest.raises(asyncio.CancelledError):
        await call
    store.go.set()  # the thread makes its reservation after all
    assert await asyncio.to_thread(store.made.wait, 20)
    deadline = time.monotonic() + 10
    while store.totals(budget, None).reserved_cost_usd > 0:
        assert time.monotonic() < deadline, "the cancelled call's reservation is still held"
        await asyncio.sleep(0.05)
    totals = store.totals(budget, None)
    assert (totals.reserved_cost_usd, totals.spent_cost_usd) == (0.0, 0.0)
