"""RetryPolicy: which errors are retried, how long it waits, when it stops."""

from __future__ import annotations

import pytest

from langchain_multigateway import RetryPolicy
from langchain_multigateway.errors import AuthenticationError, GatewayTimeoutError, ProviderError, RateLimitError


class Flaky:
    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def _sleeps(policy: RetryPolicy, fn: Flaky) -> list[float]:
    slept: list[float] = []
    assert policy.retrying(sleep=slept.append)(fn) == "ok"
    return slept


def test_retries_transient_errors_with_exponential_backoff() -> None:
    policy = RetryPolicy(max_attempts=4, initial_delay=1, multiplier=2, jitter=0)
    fn = Flaky(ProviderError("a"), GatewayTimeoutError("b"), ProviderError("c"))
    assert _sleeps(policy, fn) == [1, 2, 4]
    assert fn.calls == 4


def test_backoff_is_capped_and_jittered_within_bounds() -> None:
    policy = RetryPolicy(initial_delay=10, multiplier=10, max_delay=15, jitter=0.2)
    assert 8 <= policy.backoff(1, None) <= 12
    for n in range(2, 6):
        assert 12 <= policy.backoff(n, None) <= 18


def test_retry_after_is_a_floor_on_the_wait() -> None:
    policy = RetryPolicy(max_attempts=2, initial_delay=0.1, jitter=0)
    fn = Flaky(RateLimitError("slow", retry_after=5))
    assert _sleeps(policy, fn) == [5]


def test_non_retryable_error_is_raised_at_once() -> None:
    fn = Flaky(AuthenticationError("bad key"))
    with pytest.raises(AuthenticationError):
        RetryPolicy(max_attempts=5).retrying(sleep=lambda _: None)(fn)
    assert fn.calls == 1


def test_a_retryable_flag_on_the_instance_wins() -> None:
    fn = Flaky(ProviderError("permanent", retryable=False))
    with pytest.raises(ProviderError):
        RetryPolicy(max_attempts=5).retrying(sleep=lambda _: None)(fn)
    assert fn.calls == 1


def test_attempts_are_bounded() -> None:
    fn = Flaky(*[ProviderError(str(i)) for i in range(10)])
    with pytest.raises(ProviderError, match="2"):
        RetryPolicy(max_attempts=3).retrying(sleep=lambda _: None)(fn)
    assert fn.calls == 3


def test_retry_after_beyond_the_deadline_stops() -> None:
    fn = Flaky(RateLimitError("wait a minute", retry_after=120))
    with pytest.raises(RateLimitError):
        RetryPolicy(max_attempts=5, deadline=30, max_retry_after=600).retrying(sleep=lambda _: None)(fn)
    assert fn.calls == 1


def test_retry_after_beyond_max_retry_after_stops() -> None:
    fn = Flaky(RateLimitError("wait", retry_after=90))
    with pytest.raises(RateLimitError):
        RetryPolicy(max_attempts=5, deadline=None, max_retry_after=60).retrying(sleep=lambda _: None)(fn)
    assert fn.calls == 1


def test_plain_exceptions_are_not_retried() -> None:
    fn = Flaky(KeyError("bug"))
    with pytest.raises(KeyError):
        RetryPolicy().call(fn)
    assert fn.calls == 1


async def test_async_policy() -> None:
    calls = 0

    async def fn() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ProviderError("x")
        return "ok"

    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    policy = RetryPolicy(initial_delay=0.5, jitter=0)
    assert await policy.async_retrying(sleep=sleep)(fn) == "ok"
    assert slept == [0.5, 1.0]
    assert await RetryPolicy().acall(lambda: _ok()) == "ok"


async def _ok() -> str:
    return "ok"


def test_policy_validates_its_fields() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError, match="extra"):
        RetryPolicy(attempts=3)  # type: ignore[call-arg]
