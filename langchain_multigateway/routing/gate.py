"""Per-deployment concurrency gate whose waiting line is ordered by request priority.

Works for threads and for asyncio tasks at once: a freed slot goes straight to
the waiter with the lowest ``priority`` number (then the longest waiting).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import threading

__all__ = ["ConcurrencyGate"]


class _Waiter:
    __slots__ = ("cancelled", "event", "future", "granted", "loop")

    def __init__(self) -> None:
        self.granted = False
        self.cancelled = False
        self.event: threading.Event | None = None
        self.future: asyncio.Future[None] | None = None
        self.loop: asyncio.AbstractEventLoop | None = None


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class ConcurrencyGate:
    """At most ``limit`` holders; the rest wait in priority order."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.active = 0
        self._lock = threading.Lock()
        self._line: list[tuple[int, int, _Waiter]] = []
        self._seq = itertools.count()

    @property
    def waiting(self) -> int:
        with self._lock:
            return sum(1 for _, _, w in self._line if not w.cancelled)

    def try_enter(self) -> bool:
        """Take a slot if one is free now (never waits)."""
        with self._lock:
            if self.active < self.limit and not self._line:
                self.active += 1
                return True
            return False

    def _queue(self, priority: int) -> _Waiter | None:
        waiter = _Waiter()
        with self._lock:
            if self.active < self.limit and not self._line:
                self.active += 1
                return None
            heapq.heappush(self._line, (priority, next(self._seq), waiter))
            return waiter

    def _give_up(self, waiter: _Waiter) -> bool:
        """Leave the line; True when a slot was granted meanwhile (the caller owns it)."""
        with self._lock:
            if waiter.granted:
                return True
            waiter.cancelled = True
            return False

    def enter(self, priority: int = 0, timeout: float | None = None) -> bool:
        """Wait for a slot (a thread); False when ``timeout`` passed first."""
        waiter = self._queue(priority)
        if waiter is None:
            return True
        event = waiter.event = threading.Event()
        with self._lock:
            granted = waiter.granted
        try:
            if granted or event.wait(timeout):
                return True
        except BaseException:  # KeyboardInterrupt from a signal handler: leave the line, or hand back what was won
            if self._give_up(waiter):
                self.leave()
            raise
        return self._give_up(waiter)

    async def aenter(self, priority: int = 0, timeout: float | None = None) -> bool:
        """Wait for a slot (a task); False when ``timeout`` passed first."""
        loop = asyncio.get_running_loop()
        waiter = _Waiter()
        waiter.loop = loop
        future = waiter.future = loop.create_future()
        with self._lock:
            if self.active < self.limit and not self._line:
                self.active += 1
                return True
            heapq.heappush(self._line, (priority, next(self._seq), waiter))
        try:
            await asyncio.wait_for(future, timeout)
        except TimeoutError:
            return self._give_up(waiter)
        except asyncio.CancelledError:
            if self._give_up(waiter):
                self.leave()
            raise
        return True

    def leave(self) -> None:
        """Give a slot back: to the first waiter in line, or to the pool."""
        with self._lock:
            while self._line:
                _, _, waiter = heapq.heappop(self._line)
                if waiter.cancelled:
                    continue
                waiter.granted = True
                if waiter.event is not None:
                    waiter.event.set()
                elif waiter.future is not None and waiter.loop is not None:
                    waiter.loop.call_soon_threadsafe(_resolve, waiter.future)
                return
            self.active = max(0, self.active - 1)
