"""Limits learned from the provider: the documented header formats parsed, budgets counted down,
and a router skipping a deployment whose announced budget is spent (real HTTP on loopback)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from langchain_multigateway.chat_models._ratelimit_headers import parse_duration, rate_limits_from_headers
from langchain_multigateway.chat_models.anthropic import AnthropicChatModel
from langchain_multigateway.chat_models.openai import OpenAIChatModel
from langchain_multigateway.errors import RateLimitError
from langchain_multigateway.routing import Deployment, RoutingChatModel
from langchain_multigateway.routing.strategies import RequestInfo, get_strategy
from langchain_multigateway.state import MemoryState
from langchain_multigateway.state.learned import LearnedLimits
from langchain_multigateway.testing import ScriptedChatModel
from tests.loopback import Reply, chat_completion, chat_stream, serve

SPENT = {
    "x-ratelimit-limit-requests": "60",
    "x-ratelimit-remaining-requests": "0",
    "x-ratelimit-reset-requests": "30s",
    "x-ratelimit-limit-tokens": "150000",
    "x-ratelimit-remaining-tokens": "149000",
    "x-ratelimit-reset-tokens": "6m0s",
}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# ---------------------------------------------------------------------- the documented wire formats
def test_openai_headers_as_documented() -> None:
    limits = rate_limits_from_headers(
        {
            "X-RateLimit-Limit-Requests": "60",
            "x-ratelimit-remaining-requests": "59",
            "x-ratelimit-reset-requests": "1s",
            "x-ratelimit-limit-tokens": "150000",
            "x-ratelimit-remaining-tokens": "149984",
            "x-ratelimit-reset-tokens": "6m0s",
        }
    )
    assert limits == {
        "limit_requests": 60,
        "remaining_requests": 59,
        "reset_requests": 1.0,
        "limit_tokens": 150000,
        "remaining_tokens": 149984,
        "reset_tokens": 60.0,  # 360 s announced, capped: one header keeps a deployment out a minute at most
    }


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("20ms", 0.02), ("1s", 1.0), ("6m0s", 360.0), ("1h2m3.5s", 3723.5), ("17.5", 17.5), ("0s", 0.0)],
)
def test_go_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "-1", "nan", "inf", "1e309", "soon", "1x", "5s later"])
def test_unreadable_durations_are_none(text: str) -> None:
    assert parse_duration(text) is None


def test_anthropic_headers_as_documented() -> None:
    now = 1_800_000_000.0
    reset = datetime.fromtimestamp(now + 12, tz=UTC).isoformat().replace("+00:00", "Z")
    limits = rate_limits_from_headers(
        {
            "anthropic-ratelimit-requests-limit": "50",
            "anthropic-ratelimit-requests-remaining": "0",
            "anthropic-ratelimit-requests-reset": reset,
            "anthropic-ratelimit-input-tokens-limit": "40000",
            "anthropic-ratelimit-input-tokens-remaining": "39000",
            "anthropic-ratelimit-input-tokens-reset": reset,
            "retry-after": "12",
        },
        now=now,
    )
    assert limits == {
        "limit_requests": 50,
        "remaining_requests": 0,
        "reset_requests": pytest.approx(12.0),
        "limit_tokens": 40000,
        "remaining_tokens": 39000,
        "reset_tokens": pytest.approx(12.0),
        "retry_after": 12.0,
    }


def test_retry_after_forms() -> None:
    assert rate_limits_from_headers({"retry-after-ms": "1500"}) == {"retry_after": 1.5}
    when = datetime.now(UTC) + timedelta(seconds=30)
    http_date = when.strftime("%a, %d %b %Y %H:%M:%S GMT")
    found = rate_limits_from_headers({"Retry-After": http_date})
    assert found is not None
    assert 25 < found["retry_after"] <= 30


def test_hostile_values_are_left_out() -> None:
    limits = rate_limits_from_headers(
        {
            "x-ratelimit-remaining-requests": "-5",
            "x-ratelimit-limit-requests": "nan",
            "x-ratelimit-remaining-tokens": "lots",
            "x-ratelimit-reset-requests": "99999999h",
            "retry-after": "1e308",
        }
    )
    assert limits == {"reset_requests": 60.0, "retry_after": 60.0}
    assert rate_limits_from_headers({"content-type": "application/json"}) is None
    assert rate_limits_from_headers(None) is None


# ---------------------------------------------------------------------- counting down a budget
def test_admissions_count_down_an_announced_budget_until_it_resets() -> None:
    clock = Clock()
    learned = LearnedLimits(clock)
    assert learned.take("a", lambda: 10) == 0  # nothing announced: nothing held back
    learned.observe("a", {"remaining_requests": 2, "limit_requests": 10, "reset_requests": 5.0})
    assert learned.take("a", lambda: 10) == 0
    assert learned.take("a", lambda: 10) == 0
    refused = learned.take("a", lambda: 10)
    assert not isinstance(refused, int)
    assert refused.limited
    assert refused.retry_after == pytest.approx(5.0)
    assert "no requests left" in (refused.reason or "")
    learned.give_back("a", 0)  # a request counted but never sent frees its place
    assert learned.take("a", lambda: 10) == 0
    clock.now += 5.0  # the window passed while spent: one probe, the rest wait for its answer
    assert learned.take("a", lambda: 10) == 0
    held = learned.take("a", lambda: 10)
    assert not isinstance(held, int)
    assert held.retry_after is not None
    assert held.retry_after <= 0.05
    learned.observe("a", {"remaining_requests": 9, "reset_requests": 5.0}, age=0.01)
    assert learned.take("a", lambda: 10) == 0


def test_tokens_are_counted_only_when_announced_and_refused_past_what_is_left() -> None:
    learned = LearnedLimits(Clock())
    asked: list[int] = []

    def tokens() -> int:
        asked.append(1)
        return 600

    learned.observe("a", {"remaining_requests": 100, "reset_requests": 1.0})
    assert learned.take("a", tokens) == 0
    assert asked == []  # no token budget announced: the prompt is not even estimated
    learned.observe("a", {"remaining_tokens": 1000, "limit_tokens": 1000, "reset_tokens": 2.0})
    assert learned.take("a", tokens) == 600
    refused = learned.take("a", tokens)
    assert not isinstance(refused, int)
    assert "400 tokens left" in (refused.reason or "")
    assert learned.headroom("a") == pytest.approx(0.4)


def test_an_older_answer_never_raises_what_is_left_within_a_window() -> None:
    clock = Clock()
    learned = LearnedLimits(clock)
    learned.observe("a", {"remaining_requests": 1, "reset_requests": 10.0})
    assert learned.take("a", lambda: 0) == 0  # counted down to 0
    clock.now += 0.5
    # An answer written before that request arrived (slow: sent 0.6 s ago) announces 3 left.
    learned.observe("a", {"remaining_requests": 3, "reset_requests": 9.6}, age=0.6)
    assert not isinstance(learned.take("a", lambda: 0), int)
    # A new window (its reset far past the one held) replaces it.
    clock.now += 10.0
    learned.observe("a", {"remaining_requests": 3, "reset_requests": 10.0}, age=0.01)
    assert learned.take("a", lambda: 0) == 0


def test_a_spent_announcement_cools_the_deployment_down_in_the_state() -> None:
    clock = Clock()
    state = MemoryState(clock=clock)
    state.observe_limits("a", {"remaining_requests": 0, "reset_requests": 7.0})
    refused = state.admit("a")
    assert not refused.ok
    assert refused.limited
    assert refused.retry_after == pytest.approx(7.0)
    clock.now += 7.1
    assert state.admit("a").ok


def test_least_busy_and_balanced_put_a_nearly_spent_deployment_last() -> None:
    state = MemoryState()
    deps = [Deployment(model=ScriptedChatModel(model=n), name=n) for n in ("a", "b")]
    info = RequestInfo(input_tokens=10, output_tokens=10)
    assert [d.name for d in get_strategy("least_busy").order(deps, info, state)] == ["a", "b"]
    state.observe_limits("a", {"remaining_requests": 5, "limit_requests": 100, "reset_requests": 30.0})
    busy = state.admit("b")  # b has one in flight, a has 5 % of its budget left
    assert [d.name for d in get_strategy("least_busy").order(deps, info, state)] == ["b", "a"]
    assert [d.name for d in get_strategy("balanced").order(deps, info, state)] == ["b", "a"]
    state.release("b", busy, ok=True)


# ---------------------------------------------------------------------- through the router, real HTTP
def _router(a: str, b: str, **kwargs: object) -> RoutingChatModel:
    return RoutingChatModel(
        deployments=[
            Deployment(model=OpenAIChatModel(model="m", base_url=a, api_key="k"), name="a"),
            Deployment(model=OpenAIChatModel(model="m", base_url=b, api_key="k"), name="b"),
        ],
        **kwargs,
    )


def test_a_deployment_announcing_its_budget_spent_is_skipped_before_a_429() -> None:
    with (
        serve(Reply(body=chat_completion("from a"), headers=SPENT)) as (a, script_a),
        serve(Reply(body=chat_completion("from b"))) as (b, script_b),
    ):
        router = _router(a, b)
        first = router.invoke("hi")
        assert first.content == "from a"
        assert first.response_metadata["rate_limits"]["remaining_requests"] == 0
        assert [router.invoke("hi").content for _ in range(3)] == ["from b"] * 3
        assert len(script_a.requests) == 1
        assert len(script_b.requests) == 3
        assert router.state.stats("a").retry_after == pytest.approx(30.0, abs=1.0)

        off = _router(a, b, learn_limits=False)
        assert [off.invoke("hi").content for _ in range(2)] == ["from a"] * 2


def test_a_stream_and_an_async_call_learn_too() -> None:
    events = chat_stream(["from", " a"])
    with (
        serve(Reply(sse=events, headers=SPENT)) as (a, script_a),
        serve(Reply(body=chat_completion("from b"))) as (b, _),
    ):
        router = _router(a, b)
        chunks = list(router.stream("hi"))
        assert "".join(str(c.content) for c in chunks) == "from a"
        assert asyncio.run(router.ainvoke("hi")).content == "from b"
        assert len(script_a.requests) == 1


def test_a_429_announcing_its_reset_keeps_the_deployment_out_for_every_call() -> None:
    error = {"error": {"message": "Rate limit reached", "type": "requests"}}
    with (
        serve(Reply(429, error, headers=SPENT)) as (a, script_a),
        serve(Reply(body=chat_completion("from b"))) as (
            b,
            _,
        ),
    ):
        router = _router(a, b, max_retries=0)
        assert router.invoke("hi").content == "from b"
        assert router.invoke("hi").content == "from b"
        assert len(script_a.requests) == 1  # the second call never sent to a
        only_a = RoutingChatModel(
            deployments=[Deployment(model=OpenAIChatModel(model="m", base_url=a, api_key="k"), name="a")],
            max_wait=0,
            state=router.state,
        )
        with pytest.raises(RateLimitError):
            only_a.invoke("hi")
        assert len(script_a.requests) == 1


def test_anthropic_headers_reach_the_router() -> None:
    reset = (datetime.now(UTC) + timedelta(seconds=20)).isoformat().replace("+00:00", "Z")
    headers = {
        "anthropic-ratelimit-requests-limit": "50",
        "anthropic-ratelimit-requests-remaining": "0",
        "anthropic-ratelimit-requests-reset": reset,
    }
    message = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-x",
        "content": [{"type": "text", "text": "from a"}],
        "stop_reason": "end_turn",
        "usage": {"input_tokens": 3, "output_tokens": 2},
    }
    with (
        serve(Reply(body=message, headers=headers)) as (a, script_a),
        serve(Reply(body=chat_completion("from b"))) as (b, _),
    ):
        router = RoutingChatModel(
            deployments=[
                Deployment(model=AnthropicChatModel(model="claude-x", base_url=a, api_key="k"), name="a"),
                Deployment(model=OpenAIChatModel(model="m", base_url=b, api_key="k"), name="b"),
            ]
        )
        assert router.invoke("hi").content == "from a"
        assert router.invoke("hi").content == "from b"
        assert len(script_a.requests) == 1
