"""The one retry policy every provider (and later the router) uses.

Exponential backoff with jitter, a provider's ``Retry-After`` honoured, a bound
on attempts and on total time, and only errors marked retryable are retried.
The SDKs' own retry loops are switched off so this policy is the only one.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, Field
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
)
from tenacity.stop import stop_base

from langchain_multigateway.errors import GatewayError

__all__ = ["RetryPolicy", "is_retryable"]

T = TypeVar("T")


def is_retryable(error: BaseException) -> bool:
    """Whether trying the same request again may succeed."""
    return isinstance(error, GatewayError) and error.retryable


class RetryPolicy(BaseModel):
    """How often and how patiently to retry one request.

    Attributes:
        max_attempts: Tries in all, the first included (1 means no retry).
        initial_delay: Seconds before the first retry.
        multiplier: Growth factor of the delay per retry.
        max_delay: Cap on one backoff delay.
        jitter: Random fraction (0..1) of the delay added or removed, so that
            many clients do not retry in lockstep.
        deadline: Cap in seconds on the whole call, waits included; None for no cap.
        max_retry_after: A provider asking to wait longer than this is not
            waited on: the error is raised (a router moves on instead).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_attempts: int = Field(default=3, ge=1)
    initial_delay: float = Field(default=0.5, ge=0)
    multiplier: float = Field(default=2.0, ge=1)
    max_delay: float = Field(default=20.0, ge=0)
    jitter: float = Field(default=0.25, ge=0, le=1)
    deadline: float | None = Field(default=60.0, gt=0)
    max_retry_after: float = Field(default=60.0, ge=0)

    def backoff(self, retry_number: int, error: BaseException | None) -> float:
        """Delay before retry ``retry_number`` (1-based) after ``error``."""
        delay = min(self.max_delay, self.initial_delay * self.multiplier ** (retry_number - 1))
        if self.jitter:
            delay *= 1 + random.uniform(-self.jitter, self.jitter)
        asked = getattr(error, "retry_after", None)
        if isinstance(asked, (int, float)):
            delay = max(delay, float(asked))
        return max(0.0, delay)

    def _stop(self) -> stop_base:
        stop: stop_base = stop_after_attempt(self.max_attempts) | _stop_on_long_retry_after(self)
        if self.deadline is not None:
            stop = stop | stop_after_delay(self.deadline) | _stop_before_deadline(self)
        return stop

    def _wait(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        return self.backoff(state.attempt_number, error)

    def retrying(self, sleep: Callable[[float], None] | None = None) -> Retrying:
        """A tenacity ``Retrying`` for this policy."""
        retrying = Retrying(stop=self._stop(), wait=self._wait, retry=retry_if_exception(is_retryable), reraise=True)
        return retrying if sleep is None else retrying.copy(sleep=sleep)

    def async_retrying(self, sleep: Callable[[float], Awaitable[None]] | None = None) -> AsyncRetrying:
        """A tenacity ``AsyncRetrying`` for this policy."""
        retrying = AsyncRetrying(
            stop=self._stop(), wait=self._wait, retry=retry_if_exception(is_retryable), reraise=True
        )
        return retrying if sleep is None else retrying.copy(sleep=sleep)

    def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` under this policy."""
        return self.retrying()(fn)

    async def acall(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Await ``fn()`` under this policy."""

        async def attempt() -> T:
            # tenacity awaits only coroutine functions; fn may be a plain callable returning an awaitable.
            return await fn()

        return await self.async_retrying()(attempt)


class _stop_on_long_retry_after(stop_base):  # noqa: N801 - tenacity's naming style
    """Stop when the provider asks for a wait longer than the policy accepts."""

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy

    def __call__(self, state: RetryCallState) -> bool:
        error = state.outcome.exception() if state.outcome else None
        asked = getattr(error, "retry_after", None)
        return isinstance(asked, (int, float)) and asked > self.policy.max_retry_after


class _stop_before_deadline(stop_base):  # noqa: N801 - tenacity's naming style
    """Stop when the wait the provider asked for would cross the deadline."""

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy

    def __call__(self, state: RetryCallState) -> bool:
        if self.policy.deadline is None:
            return False
        error = state.outcome.exception() if state.outcome else None
        asked = getattr(error, "retry_after", None)
        if not isinstance(asked, (int, float)):
            return False
        elapsed = state.seconds_since_start or 0.0
        return elapsed + asked > self.policy.deadline
