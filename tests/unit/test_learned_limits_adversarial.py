"""Attacks on learned limits: a probe that brings no announcement, health reads, hostile headers."""

from __future__ import annotations

import threading

import httpx
import pytest

from langchain_multigateway.chat_models._ratelimit_headers import rate_limits_from_headers
from langchain_multigateway.chat_models.openai import OpenAIChatModel
from langchain_multigateway.routing import Deployment, RoutingChatModel
from langchain_multigateway.state import MemoryState
from langchain_multigateway.state.learned import LearnedLimits
from tests.loopback import Reply, chat_completion, chat_stream, serve

SPENT_1S = {
    "x-ratelimit-limit-requests": "60",
    "x-ratelimit-remaining-requests": "0",
    "x-ratelimit-reset-requests": "1s",
}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _router(a: str, b: str, state: MemoryState, strategy: str = "ordered") -> RoutingChatModel:
    return RoutingChatModel(
        deployments=[
            Deployment(model=OpenAIChatModel(model="m", base_url=a, api_key="k"), name="a"),
            Deployment(model=OpenAIChatModel(model="m", base_url=b, api_key="k"), name="b"),
        ],
        strategy=strategy,
        state=state,
    )


def test_a_probe_answered_without_an_announcement_opens_the_deployment_again() -> None:
    clock = Clock()
    with (
        serve(Reply(body=chat_completion("from a"), headers=SPENT_1S)) as (a, script_a),
        serve(Reply(body=chat_completion("from b"))) as (b, _),
    ):
        script_a.set(
            Reply(body=chat_completion("from a"), headers=SPENT_1S), *[Reply(body=chat_completion("from a"))] * 5
        )
        router = _router(a, b, MemoryState(clock=clock))
        assert router.invoke("hi").content == "from a"
        assert router.invoke("hi").content == "from b"  # spent: skipped
        clock.now += 1.5
        assert router.invoke("hi").content == "from a"  # the probe, answered with no headers at all
        # The provider no longer announces anything: nothing is known, so nothing holds it back.
        assert [router.invoke("hi").content for _ in range(3)] == ["from a"] * 3


def test_an_abandoned_stream_probe_lets_the_next_probe_through() -> None:
    clock = Clock()
    events = chat_stream(["from", " a", " and", " more"])
    with (
        serve(Reply(body=chat_completion("from a"), headers=SPENT_1S)) as (a, script_a),
        serve(Reply(body=chat_completion("from b"))) as (b, _),
    ):
        script_a.set(
            Reply(body=chat_completion("from a"), headers=SPENT_1S),
            Reply(sse=events, headers=SPENT_1S),
            Reply(body=chat_completion("from a"), headers={**SPENT_1S, "x-ratelimit-remaining-requests": "30"}),
        )
        router = _router(a, b, MemoryState(clock=clock))
        assert router.invoke("hi").content == "from a"
        clock.now += 1.5
        stream = router.stream("hi")
        first = next(stream)
        assert first.response_metadata.get("deployment", "a") == "a"
        stream.close()  # abandoned before its last chunk (which carries the announcement)
        assert router.invoke("hi").content == "from a"


def test_a_cancelled_or_failed_probe_lets_the_next_one_through_at_once() -> None:
    clock = Clock()
    learned = LearnedLimits(clock)
    learned.observe("a", {"remaining_requests": 0, "limit_requests": 60, "reset_requests": 2.0})
    clock.now += 2.5
    assert learned.take("a", lambda: 0) == 0  # the probe
    assert not isinstance(learned.take("a", lambda: 0), int)  # the rest wait for its answer
    learned.unanswered("a", opened=False)  # cancelled, or an error without headers
    assert learned.take("a", lambda: 0) == 0  # another probe, not a wait of a whole window
    assert not isinstance(learned.take("a", lambda: 0), int)
    learned.unanswered("a", opened=True)  # answered, saying nothing: the window is open
    assert [learned.take("a", lambda: 0) for _ in range(5)] == [0] * 5


def test_least_busy_lets_the_probe_of_a_once_spent_deployment_through() -> None:
    """Reading the headroom to rank must not start a probe that ranks the deployment last for good."""
    clock = Clock()
    with (
        serve(Reply(body=chat_completion("from a"), headers=SPENT_1S)) as (a, script_a),
        serve(Reply(body=chat_completion("from b"))) as (b, _),
    ):
        script_a.set(
            Reply(body=chat_completion("from a"), headers=SPENT_1S),
            *[Reply(body=chat_completion("from a"), headers={**SPENT_1S, "x-ratelimit-remaining-requests": "59"})] * 5,
        )
        router = _router(a, b, MemoryState(clock=clock), strategy="least_busy")
        assert router.invoke("hi").content == "from a"
        assert router.invoke("hi").content == "from b"
        clock.now += 1.5
        assert [router.invoke("hi").content for _ in range(3)] == ["from a"] * 3
        health = router.health()
        assert health["a"].learned_remaining_requests == 57
        assert health["a"].learned_reset_s == pytest.approx(1.0, abs=0.01)
        assert health["a"].learned_remaining_tokens is None
        assert health["b"].learned_remaining_requests is None
        assert all(h.in_flight == 0 and h.concurrency_in_use == 0 for h in health.values())


def test_threads_taking_at_once_never_admit_past_what_was_announced() -> None:
    learned = LearnedLimits(Clock())  # frozen: every answer below is of the same window
    learned.observe("a", {"remaining_requests": 50, "limit_requests": 60, "reset_requests": 30.0})
    admitted: list[int] = []
    start = threading.Barrier(8)

    def work() -> None:
        start.wait()
        for _ in range(40):
            taken = learned.take("a", lambda: 0)
            if isinstance(taken, int):
                admitted.append(1)
                learned.observe("a", {"remaining_requests": 60, "reset_requests": 30.0})  # an older answer

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(admitted) == 50
    assert learned.left("a")[0] == 0


def test_a_header_sent_twice_reads_as_its_tightest_value() -> None:
    """A proxy adding its own limits to its upstream's: httpx joins the two with a comma."""
    headers = httpx.Headers(
        [
            ("x-ratelimit-remaining-requests", "100"),
            ("x-ratelimit-remaining-requests", "3"),
            ("x-ratelimit-reset-requests", "1s"),
            ("x-ratelimit-reset-requests", "20s"),
            ("x-ratelimit-limit-requests", "garbage"),
            ("x-ratelimit-limit-requests", "60"),
        ]
    )
    assert rate_limits_from_headers(headers) == {"remaining_requests": 3, "reset_requests": 20.0, "limit_requests": 60}
    assert rate_limits_from_headers({"x-ratelimit-remaining-requests": "nan, -1, x"}) is None
