"""Rate limits learned from the providers: what each deployment last announced, less what was sent since.

A provider says in its response headers how many requests and tokens are left and when
they reset (see ``chat_models._ratelimit_headers``). :class:`LearnedLimits` keeps the
newest such announcement per deployment and counts every admission after it against it,
so the router stops sending before the provider would answer 429, and starts again when
the announced reset passes (or the next answer announces room). Configured ``rpm``/``tpm``
are enforced by the state as before: what is learned can only refuse more, never less.

When an announcement says the budget is spent, the state's own :meth:`cooldown` is set
until it resets, so with a Redis state every process skips that deployment, not only the
one that read the header. Counting admissions against an announcement is per process.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping

from langchain_multigateway.state.base import Admission

__all__ = ["LOW_HEADROOM", "Budget", "LearnedLimits"]

LOW_HEADROOM = 0.1
"""Below this share of an announced budget, load-aware strategies try a deployment last."""
_NO_RESET = 60.0
"""How long an announcement without a reset time is believed (a minute: the usual window)."""
_MAX_WAIT = 60.0
_PROBE_HOLD = 1.0
"""Seconds a probe may go unanswered before another one is let through."""
_PROBE_POLL = 0.05
"""How soon a request held back behind a probe looks again (the probe's answer frees the rest)."""
_SAME_WINDOW = 0.25
"""Seconds by which two announced resets may differ and still be one window (network jitter)."""


def _number(limits: Mapping[str, float], key: str) -> float | None:
    value = limits.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        return None
    return float(value)


class Budget:
    """One announced budget (requests or tokens): what is left and until when (monotonic seconds).

    Each announcement's reset, counted from when its answer arrived, is no earlier than the
    provider's real one (the header was written before the answer travelled): so within one
    window the earliest reset is the best, and what is left never rises (an answer announcing
    more than was counted down to was written before the latest requests arrived).

    When the reset passes with budget to spare, the announcement is forgotten. When it passes
    with the budget spent (requests were being held back), one request goes first as a probe
    and the rest wait for its answer to announce the new window: windows that do not start
    when we guess (a provider opening one at the first request after the last) cost at most
    that probe's 429, never a burst of them.
    """

    __slots__ = ("left", "limit", "probing", "until", "window")

    def __init__(self) -> None:
        self.left: float | None = None
        self.limit: float | None = None
        self.until = 0.0
        self.window = 0.0
        self.probing = False

    def observe(self, left: float, limit: float | None, reset: float | None, now: float, age: float) -> None:
        """``age``: seconds since the request was sent (the header was written within them)."""
        until = now + (min(reset, _MAX_WAIT) if reset is not None else _NO_RESET)
        held = self.left is not None and now < self.until and not self.probing
        if held and self.left is not None and until - age <= self.until + _SAME_WINDOW:
            # Its window can end no later than the one held: the same window, told earlier or later.
            left, until = min(left, self.left), min(until, self.until)
        self.left, self.until, self.probing = left, until, False
        if limit is not None:
            self.limit = limit
        if reset is not None:
            self.window = max(self.window, min(reset, _MAX_WAIT))

    def current(self, now: float) -> float | None:
        """What is left now (None: nothing known); past the reset, nothing or one probe."""
        if self.left is None:
            return None
        if now >= self.until:
            if self.left >= 1 and not self.probing:
                self.left = None
                return None
            self.left, self.until, self.probing = 1.0, now + max(self.window, _PROBE_HOLD), True
        return self.left

    def seen(self, now: float) -> float | None:
        """What is left now, read without starting a probe (None: nothing known, or the window passed)."""
        return self.left if self.left is not None and now < self.until else None

    def unanswered(self, opened: bool) -> None:
        """A request sent while probing ended with no announcement: if the provider ``opened`` it
        (an answer, or a stream the caller left), the window is open and nothing is known any more;
        else (an error without headers, a cancelled call) the next request may probe at once."""
        if not self.probing:
            return
        if opened:
            self.left, self.probing = None, False
        elif self.left is not None and self.left < 1:
            self.left = 1.0

    def wait(self, now: float) -> float:
        """Seconds a refused request should wait: to the reset, or (while a probe is out) a moment."""
        return min(self.until - now, _PROBE_POLL) if self.probing else self.until - now


class LearnedLimits:
    """The newest announced budgets per deployment; thread-safe, a few microseconds per call.

    Args:
        clock: Monotonic seconds (the state's own clock, so tests can move time).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._known: dict[str, tuple[Budget, Budget]] = {}

    def observe(self, name: str, limits: Mapping[str, float], age: float = 0.0) -> float | None:
        """Note an answer's announced limits; the seconds to keep ``name`` out when they say it is spent.

        ``age``: seconds between sending the request and noting its answer (the headers were
        written somewhere in between; a slow answer's reset is not mistaken for a new window).
        """
        now = self.clock()
        wait = None
        with self._lock:
            budgets = self._known.get(name)
            if budgets is None:
                budgets = self._known[name] = (Budget(), Budget())
            for kind, budget in zip(("requests", "tokens"), budgets, strict=True):
                left = _number(limits, f"remaining_{kind}")
                if left is None:
                    continue
                reset = _number(limits, f"reset_{kind}")
                budget.observe(left, _number(limits, f"limit_{kind}"), reset, now, max(age, 0.0))
                if budget.left is not None and budget.left < 1 and reset is not None:
                    wait = max(wait or 0.0, budget.until - now)
        asked = _number(limits, "retry_after")
        if asked is not None and asked > 0:
            wait = max(wait or 0.0, min(asked, _MAX_WAIT))
        return wait

    def take(self, name: str, tokens: Callable[[], int]) -> Admission | int:
        """Count one request (and ``tokens()``, read only when tokens were announced) against what is left.

        Returns the tokens counted (give them to :meth:`give_back` if the request is not sent),
        or the refusal when the announced budget cannot hold it (then nothing is counted).
        """
        budgets = self._known.get(name)
        if budgets is None:
            return 0
        requests, token_budget = budgets
        now = self.clock()
        with self._lock:
            left = requests.current(now)
            if left is not None and left < 1:
                wait = requests.wait(now)
                reason = f"provider announced no requests left (resets in {wait:.2f}s)"
                return Admission(ok=False, reason=reason, retry_after=wait, limited=True)
            tokens_left = token_budget.current(now)
            needed = tokens() if tokens_left is not None else 0
            if tokens_left is not None and needed > tokens_left:
                wait = token_budget.wait(now)
                reason = f"provider announced {tokens_left:.0f} tokens left, ~{needed} needed (resets in {wait:.2f}s)"
                return Admission(ok=False, reason=reason, retry_after=wait, limited=True)
            if left is not None and requests.left is not None:
                requests.left -= 1
            if tokens_left is not None and token_budget.left is not None:
                token_budget.left -= needed
        return needed

    def give_back(self, name: str, tokens: int) -> None:
        """Undo a :meth:`take` whose request was then not sent (the state refused it)."""
        with self._lock:
            budgets = self._known.get(name)
            if budgets is None:
                return
            requests, token_budget = budgets
            if requests.left is not None:
                requests.left += 1
            if token_budget.left is not None and tokens:
                token_budget.left += tokens

    def unanswered(self, name: str, *, opened: bool) -> None:
        """A request counted by :meth:`take` and sent ended without announcing limits.

        Without this, a probe whose answer says nothing (the provider stopped sending the
        headers, a stream left before the last chunk that carries them, a cancelled call)
        would hold every other request back until the probe's own window passed, and again
        after each later probe: one request per window, for good.
        """
        if name not in self._known:
            return  # nothing announced: no probe to free (the usual case, answered without the lock)
        with self._lock:
            budgets = self._known.get(name)
            if budgets is not None:
                for budget in budgets:
                    budget.unanswered(opened)

    def headroom(self, name: str) -> float | None:
        """The smaller share left of the announced request and token budgets (0..1); None when unknown."""
        budgets = self._known.get(name)
        if budgets is None:
            return None
        now = self.clock()
        shares = []
        with self._lock:
            for budget in budgets:
                left = budget.seen(now)
                if budget.probing and left is not None and left >= 1:
                    continue  # a probe may go: ranking the deployment last would keep it from ever going
                if left is not None and budget.limit:
                    shares.append(max(0.0, min(1.0, left / budget.limit)))
        return min(shares) if shares else None

    def left(self, name: str) -> tuple[float | None, float | None, float | None]:
        """Requests and tokens left of ``name``'s announced budgets, and seconds until the sooner of
        their resets (None: not announced, or the window passed); a read, it starts no probe."""
        budgets = self._known.get(name)
        if budgets is None:
            return None, None, None
        now = self.clock()
        with self._lock:
            requests, tokens = budgets[0].seen(now), budgets[1].seen(now)
            resets = [b.until - now for b, left in zip(budgets, (requests, tokens), strict=True) if left is not None]
        return requests, tokens, min(resets) if resets else None
