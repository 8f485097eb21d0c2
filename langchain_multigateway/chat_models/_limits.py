"""Time limits of one request: which limit is in force now, and the error when one fires.

A provider request has four limits (see ``GatewayChatModel``): connecting, the first
token (or, for a non-streamed answer, its first byte), silence between stream chunks,
and the whole request. ``CallClock`` tracks one attempt against them; transports turn
its answers into httpx timeouts (sync) or ``asyncio.timeout`` scopes (async), and
every expiry becomes a ``GatewayTimeoutError`` naming the limit, its value and the server.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from langchain_multigateway.errors import GatewayTimeoutError

__all__ = [
    "CONNECT",
    "FIRST_TOKEN",
    "IDLE",
    "TOTAL",
    "CallClock",
    "TimeLimits",
    "default_first_token",
    "is_transport_timeout",
]

CONNECT = "connect_timeout"
FIRST_TOKEN = "first_token_timeout"
IDLE = "stream_idle_timeout"
TOTAL = "timeout"

_WHAT = {
    CONNECT: "could not connect",
    FIRST_TOKEN: "no first token",
    IDLE: "the stream went silent",
    TOTAL: "the request did not finish",
}
# httpx / httpx2 timeout classes by name (both libraries share them; the SDKs wrap them).
_CONNECT_PHASE_ERRORS = ("ConnectTimeout", "PoolTimeout")
_MIN_WAIT = 0.001
_TIMEOUT_ERRORS = frozenset({*_CONNECT_PHASE_ERRORS, "ReadTimeout", "WriteTimeout", "TimeoutException"})


def is_transport_timeout(exc: BaseException) -> bool:
    """Whether ``exc`` is (or wraps) an httpx-family timeout."""
    return any(type(e).__name__ in _TIMEOUT_ERRORS for e in _chain(exc))


# Default first-token limits when first_token_timeout is None (see the field's docstring).
_FIRST_TOKEN_STREAM = 15.0
_FIRST_TOKEN_STREAM_REASONING = 120.0
_FIRST_BYTE_NON_STREAMED = 120.0
_FIRST_BYTE_NON_STREAMED_REASONING = 300.0


def default_first_token(*, stream: bool, reasoning: bool) -> float:
    """The first-token limit used when ``first_token_timeout`` is None (see that field)."""
    if stream:
        return _FIRST_TOKEN_STREAM_REASONING if reasoning else _FIRST_TOKEN_STREAM
    return _FIRST_BYTE_NON_STREAMED_REASONING if reasoning else _FIRST_BYTE_NON_STREAMED


@dataclass(frozen=True)
class TimeLimits:
    """Seconds allowed per phase of one request; None means no limit."""

    connect: float | None
    first_token: float | None
    idle: float | None
    total: float | None

    def capped(self, seconds: float | None) -> TimeLimits:
        """These limits with the whole request capped at ``seconds`` (a caller's deadline)."""
        if seconds is None:
            return self
        total = seconds if self.total is None else min(self.total, seconds)
        return TimeLimits(self.connect, self.first_token, self.idle, total)


def _smaller(*pairs: tuple[float | None, str]) -> tuple[float | None, str]:
    """The tightest (seconds, limit name) of several; (None, TOTAL) when none applies."""
    best: tuple[float | None, str] = (None, TOTAL)
    for seconds, name in pairs:
        if seconds is not None and (best[0] is None or seconds < best[0]):
            best = (seconds, name)
    return best


class CallClock:
    """One attempt's progress against its :class:`TimeLimits`.

    ``next_wait()`` says how long the next read may block and which limit that is;
    ``saw(content=...)`` records progress; ``error(name)`` builds the typed error.
    """

    __slots__ = (
        "content_seen",
        "last_event",
        "limits",
        "model",
        "provider",
        "read_limit",
        "server",
        "start",
        "stream",
    )

    def __init__(
        self, limits: TimeLimits, *, stream: bool, server: str | None, provider: str, model: str | None
    ) -> None:
        self.limits = limits
        self.stream = stream
        self.server = server
        self.provider = provider
        self.model = model
        self.start = self.last_event = time.monotonic()
        self.content_seen = False
        self.read_limit: float | None = None  # a sync stream's per-read limit, once its body started

    # ------------------------------------------------------------------ waits
    def total_left(self) -> float | None:
        total = self.limits.total
        return None if total is None else total - (time.monotonic() - self.start)

    def next_wait(self) -> tuple[float | None, str]:
        """Seconds the next read may wait, and the limit that bounds it."""
        now = time.monotonic()
        if not self.content_seen:
            first = self.limits.first_token
            phase = (None if first is None else first - (now - self.start), FIRST_TOKEN)
        else:
            idle = self.limits.idle
            phase = (None if idle is None else idle - (now - self.last_event), IDLE)
        return _smaller(phase, (self.total_left(), TOTAL))

    def body_read_timeout(self) -> tuple[float | None, str]:
        """The per-read limit for a sync stream's body (httpx fixes it once, when the body starts).

        One limit must serve the wait for the first token and the silences after it, so
        it is the smaller of ``first_token_timeout`` and ``stream_idle_timeout`` (capped by
        what is left of the whole request): a stall is never waited out longer than either
        allows. The first-token deadline itself is checked after every read.
        """
        seconds, name = _smaller((self.limits.idle, IDLE), (self.limits.first_token, IDLE), (self.total_left(), TOTAL))
        if seconds is not None:
            self.read_limit = seconds = max(seconds, _MIN_WAIT)
        return seconds, name

    def http_timeouts(self) -> tuple[dict[str, float | None], str]:
        """httpx ``Timeout`` arguments for sending the request and awaiting its headers.

        The read limit is the first token's (a non-streamed answer's first byte comes
        only when it is complete); writing the body and waiting for a pooled
        connection count against the whole request.
        """
        read, name = self.next_wait()
        left = self.total_left()
        connect = self.limits.connect if left is None else _smaller((self.limits.connect, CONNECT), (left, TOTAL))[0]
        timeouts = {"connect": connect, "read": read, "write": left, "pool": connect}
        # A socket refuses a negative timeout; a spent limit must still fire, at once.
        return {k: v if v is None else max(v, _MIN_WAIT) for k, v in timeouts.items()}, name

    # ------------------------------------------------------------------ progress
    def saw(self, *, content: bool) -> None:
        self.last_event = time.monotonic()
        if content:
            self.content_seen = True

    def overdue(self) -> str | None:
        """The limit already passed (checked between reads), or None."""
        wait, name = self.next_wait()
        return name if wait is not None and wait <= 0 else None

    # ------------------------------------------------------------------ errors
    def error(self, name: str) -> GatewayTimeoutError:
        """The typed error for limit ``name``: which limit, how long, which server."""
        seconds = {
            CONNECT: self.limits.connect,
            FIRST_TOKEN: self.limits.first_token,
            IDLE: self.read_limit or self.limits.idle,
            TOTAL: self.limits.total,
        }[name]
        what = _WHAT[name]
        if name == FIRST_TOKEN and not self.stream:
            what = "no answer"
        shown = "?" if seconds is None else f"{seconds:g}"
        where = f" from {self.server}" if self.server else ""
        if name == CONNECT and self.server:
            where = f" to {self.server}"
        message = f"{what} within {shown} s ({name}){where}"
        return GatewayTimeoutError(message, provider=self.provider, model=self.model, limit=name, seconds=seconds)

    def classify(self, exc: BaseException, read_limit: str) -> GatewayTimeoutError:
        """The typed error for a transport's timeout exception raised during ``read_limit``'s phase."""
        names = {type(e).__name__ for e in _chain(exc)}
        if names & set(_CONNECT_PHASE_ERRORS):
            left = self.total_left()
            return self.error(TOTAL if left is not None and left <= 0 else CONNECT)
        return self.error(read_limit)


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen
