"""RoutingChatModel: filter, failover matrix, breakers, limits, waits, priority, streaming, metadata."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from langchain_core.messages import AIMessageChunk, HumanMessage

from langchain_multigateway._retry import RetryPolicy
from langchain_multigateway.errors import (
    AllDeploymentsFailedError,
    AuthenticationError,
    ContentPolicyError,
    ContextWindowExceededError,
    GatewayConnectionError,
    GatewayTimeoutError,
    InvalidRequestError,
    ModelNotFoundGatewayError,
    PermissionDeniedError,
    ProviderError,
    RateLimitError,
    StreamInterruptedError,
)
from langchain_multigateway.routing import (
    Capabilities,
    Deployment,
    FailoverPolicy,
    NoDeploymentAvailableError,
    RoutingChatModel,
)
from langchain_multigateway.state import MemoryState
from langchain_multigateway.testing import ScriptedChatModel, Step

FAST = RetryPolicy(max_attempts=2, initial_delay=0, jitter=0)


class Clock:
    def __init__(self) -> None:
        self.now = 5000.0

    def __call__(self) -> float:
        return self.now


def dep(name: str, steps: list[Any] | None = None, **kwargs: Any) -> Deployment:
    model = ScriptedChatModel(model=f"model-{name}", steps=steps or [], default_reply=f"from {name}")
    kwargs.setdefault("retry_policy", FAST)
    return Deployment(model=model, name=name, **kwargs)


def scripted(router: RoutingChatModel, name: str) -> ScriptedChatModel:
    model = router.deployment(name).model
    assert isinstance(model, ScriptedChatModel)
    return model


# ---------------------------------------------------------------------- failover matrix
@pytest.mark.parametrize(
    ("error", "calls_to_a", "counts"),
    [
        (RateLimitError("429"), 2, 2),
        (GatewayTimeoutError("slow"), 2, 2),
        (GatewayConnectionError("reset"), 2, 2),
        (ProviderError("500", status_code=500), 2, 2),
        (ProviderError("malformed", retryable=False), 1, 1),
        (AuthenticationError("401"), 1, 1),
        (PermissionDeniedError("403"), 1, 1),
        (ModelNotFoundGatewayError("404"), 1, 1),
        (ValueError("a bug in a third-party model"), 1, 1),
    ],
)
def test_failover_moves_on(error: Exception, calls_to_a: int, counts: int) -> None:
    router = RoutingChatModel(deployments=[dep("a", [error, error]), dep("b", priority=1)])
    msg = router.invoke("hi")
    assert msg.content == "from b"
    assert scripted(router, "a").call_count == calls_to_a
    assert msg.response_metadata["attempts"] == calls_to_a + 1
    failed = msg.response_metadata["failed_attempts"]
    assert [f["deployment"] for f in failed] == ["a"] * calls_to_a
    assert {f["error_type"] for f in failed} == {type(error).__name__}
    assert router.health()["a"].consecutive_failures == counts


@pytest.mark.parametrize("limit", ["connect_timeout", "first_token_timeout", "stream_idle_timeout", "timeout"])
def test_a_time_limit_that_fired_fails_over_at_once(limit: str) -> None:
    silent = GatewayTimeoutError("no first token", limit=limit, seconds=1.0)
    router = RoutingChatModel(deployments=[dep("a", [silent, silent]), dep("b", priority=1)])
    message = router.invoke("hi")
    assert message.response_metadata["deployment"] == "b"
    assert scripted(router, "a").call_count == 1  # a silent route stays silent: not retried
    assert router.health()["a"].consecutive_failures == 1  # and counted against its breaker


def test_a_first_try_success_carries_no_failed_attempts() -> None:
    router = RoutingChatModel(deployments=[dep("a"), dep("b", priority=1)])
    meta = router.invoke("hi").response_metadata
    assert meta["attempts"] == 1
    assert "failed_attempts" not in meta


def test_rate_limit_with_a_long_retry_after_cools_down_and_moves_on() -> None:
    # 30 s is longer than the call may wait (max_wait, 5 s): the next deployment serves now.
    router = RoutingChatModel(deployments=[dep("a", [RateLimitError("429", retry_after=30)]), dep("b", priority=1)])
    assert router.invoke("1").response_metadata["deployment"] == "b"
    assert router.invoke("2").response_metadata["deployment"] == "b"
    assert scripted(router, "a").call_count == 1
    assert router.health()["a"].retry_after == pytest.approx(30, abs=1)


def test_rate_limit_with_a_short_retry_after_waits_and_retries_the_same_deployment() -> None:
    a = dep("a", [RateLimitError("429", retry_after=0.2), "from a, later"])
    router = RoutingChatModel(deployments=[a, dep("b", priority=1)])
    message = router.invoke("1")
    assert message.content == "from a, later"
    assert scripted(router, "b").call_count == 0
    first, second = scripted(router, "a").calls
    assert second.started_at - first.started_at >= 0.2  # Retry-After honoured: never a tight loop
    assert message.response_metadata["attempts"] == 2


def test_rate_limit_retry_after_past_the_call_timeout_fails_over() -> None:
    a = dep("a", [RateLimitError("429", retry_after=2)])
    router = RoutingChatModel(deployments=[a, dep("b", priority=1)], timeout=1)
    assert router.invoke("1").response_metadata["deployment"] == "b"
    assert scripted(router, "a").call_count == 1


def test_invalid_request_raises_at_once() -> None:
    router = RoutingChatModel(deployments=[dep("a", [InvalidRequestError("bad field")]), dep("b", priority=1)])
    with pytest.raises(InvalidRequestError):
        router.invoke("hi")
    assert scripted(router, "b").call_count == 0
    assert router.health()["a"].consecutive_failures == 0


def test_content_policy_setting() -> None:
    # Default: the provider's refusal is raised, the content is not sent elsewhere.
    strict = RoutingChatModel(deployments=[dep("a", [ContentPolicyError("no: safety")]), dep("b", priority=1)])
    with pytest.raises(ContentPolicyError, match="safety"):
        strict.invoke("hi")
    assert scripted(strict, "b").call_count == 0
    assert strict.health()["a"].consecutive_failures == 0
    moving = RoutingChatModel(
        deployments=[dep("a", [ContentPolicyError("no")]), dep("b", priority=1)],
        failover=FailoverPolicy(content_policy="next"),
    )
    assert moving.invoke("hi").content == "from b"


def test_context_window_exceeded_moves_to_a_larger_window() -> None:
    router = RoutingChatModel(
        deployments=[
            dep("small", [ContextWindowExceededError("too long")], context_window=4000),
            dep("same", context_window=4000, priority=1),
            dep("large", context_window=128_000, priority=2),
        ]
    )
    msg = router.invoke("hi")
    assert msg.response_metadata["deployment"] == "large"
    assert scripted(router, "same").call_count == 0


def test_all_failed_lists_every_attempt() -> None:
    router = RoutingChatModel(
        deployments=[dep("a", [ProviderError("x")] * 2), dep("b", [AuthenticationError("key")], priority=1)]
    )
    with pytest.raises(AllDeploymentsFailedError) as info:
        router.invoke("hi")
    err = info.value
    assert [a.deployment for a in err.attempts] == ["a", "a", "b"]
    assert isinstance(err.attempts[-1].error, AuthenticationError)
    assert "b: AuthenticationError" in str(err)
    assert not err.retryable


async def test_async_failover_and_metadata() -> None:
    router = RoutingChatModel(deployments=[dep("a", [GatewayTimeoutError("t")] * 2), dep("b", priority=1)])
    msg = await router.ainvoke("hi")
    meta = msg.response_metadata
    assert meta["deployment"] == "b"
    assert meta["provider"] == "scripted"
    assert meta["model"] == "model-b"
    assert meta["model_name"] == "model-b"
    assert meta["attempts"] == 3
    assert meta["latency_ms"] >= 0
    assert meta["cached"] is False
    with pytest.raises(AllDeploymentsFailedError):
        await RoutingChatModel(deployments=[dep("x", [ProviderError("p")] * 2)]).ainvoke("hi")


def test_retry_respects_max_retries_and_long_retry_after() -> None:
    router = RoutingChatModel(
        deployments=[dep("a", [ProviderError("1"), ProviderError("2")]), dep("b", priority=1)], max_retries=0
    )
    router.invoke("hi")
    assert scripted(router, "a").call_count == 1
    patient = RetryPolicy(max_attempts=3, initial_delay=0, jitter=0, max_retry_after=1)
    slow = ProviderError("overloaded", retry_after=10)
    other = RoutingChatModel(deployments=[dep("a", [slow], retry_policy=patient), dep("b", priority=1)])
    other.invoke("hi")
    assert scripted(other, "a").call_count == 1
    timed = RoutingChatModel(
        deployments=[
            dep("a", [ProviderError("x")], retry_policy=RetryPolicy(max_attempts=3, initial_delay=5, jitter=0)),
            dep("b", priority=1),
        ],
        timeout=1.0,
    )
    timed.invoke("hi")
    assert scripted(timed, "a").call_count == 1


# ---------------------------------------------------------------------- breaker through the router
def test_breaker_opens_half_opens_and_closes() -> None:
    clock = Clock()
    state = MemoryState(failure_threshold=3, cooldown=10, clock=clock)
    one_shot = RetryPolicy(max_attempts=1)
    router = RoutingChatModel(
        deployments=[dep("a", [ProviderError("down")] * 3, retry_policy=one_shot), dep("b", priority=1)],
        state=state,
    )
    for _ in range(3):
        assert router.invoke("x").response_metadata["deployment"] == "b"
    assert router.health()["a"].breaker == "open"
    for _ in range(3):
        router.invoke("x")
    assert scripted(router, "a").call_count == 3  # open: skipped without a call
    clock.now += 10
    assert router.health()["a"].breaker == "half_open"
    msg = router.invoke("x")  # the probe: a's script is exhausted, so it answers
    assert msg.response_metadata["deployment"] == "a"
    assert router.health()["a"].breaker == "closed"


def test_breaker_open_everywhere_says_why() -> None:
    state = MemoryState(failure_threshold=1, cooldown=60)
    router = RoutingChatModel(
        deployments=[dep("a", [ProviderError("x")], retry_policy=RetryPolicy(max_attempts=1))], state=state
    )
    with pytest.raises(AllDeploymentsFailedError):
        router.invoke("x")
    with pytest.raises(NoDeploymentAvailableError) as info:
        router.invoke("x")
    assert "circuit open" in info.value.excluded["a"]
    assert "a: excluded, circuit open" in str(info.value)


# ---------------------------------------------------------------------- filter
def test_capability_filter_and_why_excluded() -> None:
    router = RoutingChatModel(
        deployments=[
            dep("no-tools", capabilities=Capabilities(tools=False)),
            dep("no-images", capabilities=Capabilities(images=False), priority=1),
            dep("tiny", context_window=50, priority=2),
            dep("tagged", tags=["eu"], priority=3),
        ]
    )

    def add(a: int, b: int) -> int:
        """Add."""
        return a + b

    assert router.bind_tools([add]).invoke("x").response_metadata["deployment"] == "no-images"  # type: ignore[attr-defined]
    image = HumanMessage(content=[{"type": "text", "text": "what?"}, {"type": "image", "url": "http://x/y.png"}])
    assert router.invoke([image]).response_metadata["deployment"] == "no-tools"
    long_prompt = "word " * 400
    with pytest.raises(NoDeploymentAvailableError) as info:
        router.bind_tools([add]).invoke([image, HumanMessage(long_prompt)], routing_tags="eu,us")  # type: ignore[attr-defined]
    excluded = info.value.excluded
    assert excluded["no-tools"] == "does not support tool calling"
    assert excluded["no-images"] == "does not accept image inputs"
    assert excluded["tiny"].startswith("context window 50 <")
    assert "tags" in excluded["tagged"]
    assert "no-tools: excluded, does not support tool calling" in str(info.value)
    assert info.value.attempts == []


def test_context_window_counts_tokens_only_near_the_limit() -> None:
    router = RoutingChatModel(
        deployments=[dep("tiny", context_window=200), dep("big", context_window=100_000, priority=1)], max_tokens=20
    )
    assert router.invoke("short question").response_metadata["deployment"] == "tiny"
    # 300 characters: over the char-count upper bound, so tokens are counted; they still fit
    assert router.invoke("ab " * 100).response_metadata["deployment"] == "tiny"
    assert router.invoke("lorem ipsum dolor " * 80).response_metadata["deployment"] == "big"


def test_tag_filter_from_run_config() -> None:
    router = RoutingChatModel(deployments=[dep("a", tags=["us"]), dep("b", tags=["eu", "gdpr"], priority=1)])
    assert router.invoke("x", config={"metadata": {"routing_tags": ["eu"]}}).response_metadata["deployment"] == "b"
    assert (
        router.invoke("x", config={"configurable": {"routing_tags": "eu,gdpr"}}).response_metadata["deployment"] == "b"
    )
    assert router.invoke("x", routing_tags=["us"]).response_metadata["deployment"] == "a"


# ---------------------------------------------------------------------- limits and waits
def test_rpm_limit_skips_to_next() -> None:
    router = RoutingChatModel(deployments=[dep("a", rpm=2), dep("b", priority=1)])
    served = [router.invoke("x").response_metadata["deployment"] for _ in range(4)]
    assert served == ["a", "a", "b", "b"]
    assert router.health()["a"].remaining_rpm == 0


def test_tpm_reservation_reconciled_with_usage() -> None:
    usage = {"input_tokens": 10, "output_tokens": 5, "total_tokens": 15}
    a = dep("a", [Step(reply="ok", usage=usage)] * 10, tpm=3000)
    router = RoutingChatModel(deployments=[a, dep("b", priority=1)], max_tokens=1000)
    long_prompt = "x" * 4000  # ~1000 tokens estimated + 1000 reserved output
    assert router.invoke(long_prompt).response_metadata["deployment"] == "a"
    health = router.health()["a"]
    assert health.tokens_last_minute == 15  # reconciled to the real usage
    assert router.invoke(long_prompt).response_metadata["deployment"] == "a"
    huge = "x" * 20_000
    assert router.invoke(huge).response_metadata["deployment"] == "b"


def test_all_limited_waits_then_serves() -> None:
    router = RoutingChatModel(deployments=[dep("a", [RateLimitError("429", retry_after=0.2), "late"])], max_wait=2)
    start = time.perf_counter()
    assert router.invoke("x").content == "late"
    assert time.perf_counter() - start >= 0.2


async def test_all_limited_raises_with_retry_after() -> None:
    router = RoutingChatModel(deployments=[dep("a", [RateLimitError("429", retry_after=30)])], max_wait=0.1)
    with pytest.raises(RateLimitError) as first:
        await router.ainvoke("x")
    assert "provider asked to wait" in str(first.value)
    with pytest.raises(RateLimitError) as info:
        await router.ainvoke("x")
    assert info.value.retry_after == pytest.approx(30, abs=1)
    with pytest.raises(RateLimitError):
        router.invoke("x")
    waiting = RoutingChatModel(deployments=[dep("a", [RateLimitError("429", retry_after=0.1), "late"])], max_wait=2)
    assert (await waiting.ainvoke("x")).content == "late"


async def test_priority_orders_waiters_at_max_concurrency() -> None:
    slow = [Step(reply=f"r{i}", latency=0.05) for i in range(10)]
    router = RoutingChatModel(deployments=[dep("a", slow, max_concurrency=1)], max_wait=5)
    first = asyncio.create_task(router.ainvoke("first"))
    await asyncio.sleep(0.01)
    tasks = [asyncio.create_task(router.ainvoke(f"low{i}", config={"metadata": {"priority": 5}})) for i in range(3)]
    await asyncio.sleep(0.005)
    urgent = asyncio.create_task(router.ainvoke("urgent", config={"metadata": {"priority": 0}}))
    await asyncio.gather(first, urgent, *tasks)
    order = [c.messages[0].content for c in scripted(router, "a").calls]
    assert order == ["first", "urgent", "low0", "low1", "low2"]


def test_priority_queue_sync_threads_and_timeout() -> None:
    import threading

    router = RoutingChatModel(
        deployments=[dep("a", [Step(reply="r", latency=0.1)] * 5, max_concurrency=1)], max_wait=0.02
    )
    blocker = threading.Thread(target=router.invoke, args=("block",))
    blocker.start()
    time.sleep(0.02)
    with pytest.raises(RateLimitError):
        router.invoke("too late")
    blocker.join()
    patient = RoutingChatModel(deployments=[dep("a", [Step(reply="r", latency=0.05)] * 5, max_concurrency=1)])
    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(str(patient.invoke("x").content))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == ["r", "r", "r"]
    assert patient.health()["a"].in_flight == 0


# ---------------------------------------------------------------------- streaming
def test_stream_fails_over_before_first_chunk() -> None:
    router = RoutingChatModel(
        deployments=[dep("a", [Step(reply="never", error=ProviderError("x"), fail_after=0)] * 2), dep("b", priority=1)]
    )
    chunks = list(router.stream("x"))
    text = "".join(str(c.content) for c in chunks)
    assert text == "from b"
    last = chunks[-1]
    assert last.chunk_position == "last"
    assert last.response_metadata["deployment"] == "b"
    assert last.response_metadata["attempts"] == 3
    assert [f["error_type"] for f in last.response_metadata["failed_attempts"]] == ["ProviderError"] * 2
    assert sum(1 for c in chunks if c.response_metadata.get("model_name")) == 1
    assert sum(1 for c in chunks if c.usage_metadata) == 1


def test_stream_never_fails_over_after_first_chunk() -> None:
    router = RoutingChatModel(
        deployments=[
            dep("a", [Step(reply="one two three", error=GatewayConnectionError("cut"), fail_after=2)]),
            dep("b", priority=1),
        ]
    )
    got: list[str] = []

    def consume() -> None:
        for chunk in router.stream("x"):
            got.append(str(chunk.content))

    with pytest.raises(StreamInterruptedError) as info:
        consume()
    assert "".join(got) == "one two "
    assert info.value.delivered == "one two "  # a truncated answer is never presented as success
    assert info.value.deployment == "a"
    assert isinstance(info.value.cause, GatewayConnectionError)
    assert scripted(router, "b").call_count == 0
    assert router.health()["a"].failures == 1
    assert router.health()["a"].in_flight == 0


def test_empty_stream_is_not_a_failure() -> None:
    router = RoutingChatModel(deployments=[dep("a", [Step(reply="", chunks=[])]), dep("b", priority=1)])
    chunks = list(router.stream("x"))
    assert "".join(str(c.content) for c in chunks) == ""
    assert chunks[-1].response_metadata["deployment"] == "a"
    assert scripted(router, "b").call_count == 0


async def test_astream_failover_and_no_repeat() -> None:
    router = RoutingChatModel(
        deployments=[
            dep(
                "a",
                [Step(reply="never", error=ProviderError("x"), fail_after=0)] * 2
                + [Step(reply="p q r", error=ProviderError("cut"), fail_after=1)],
            ),
            dep("b", priority=1),
        ]
    )
    text = "".join([str(c.content) async for c in router.astream("x")])
    assert text == "from b"
    got: list[str] = []
    with pytest.raises(StreamInterruptedError) as info:
        async for chunk in router.astream("x"):
            got.append(str(chunk.content))
    assert got == ["p "]
    assert info.value.delivered == "p "
    assert isinstance(info.value.cause, ProviderError)


def test_stream_from_model_without_stream_support() -> None:
    class NoStream(ScriptedChatModel):
        _stream = ScriptedChatModel.__mro__[1]._stream  # type: ignore[assignment]
        _astream = ScriptedChatModel.__mro__[1]._astream  # type: ignore[assignment]

    router = RoutingChatModel(deployments=[Deployment(model=NoStream(steps=["whole answer"]), name="n")])
    chunks = list(router.stream("x"))
    assert "".join(str(c.content) for c in chunks) == "whole answer"
    assert chunks[-1].response_metadata["deployment"] == "n"


async def test_astream_from_model_without_stream_support() -> None:
    class NoStream(ScriptedChatModel):
        _stream = ScriptedChatModel.__mro__[1]._stream  # type: ignore[assignment]
        _astream = ScriptedChatModel.__mro__[1]._astream  # type: ignore[assignment]

    router = RoutingChatModel(deployments=[Deployment(model=NoStream(steps=["whole"]), name="n")])
    chunks = [c async for c in router.astream("x")]
    assert "".join(str(c.content) for c in chunks) == "whole"


def test_stream_consumer_stopping_early_releases() -> None:
    router = RoutingChatModel(deployments=[dep("a", [Step(reply="a b c d")])])
    stream = router.stream("x")
    next(stream)
    stream.close()
    assert router.health()["a"].in_flight == 0


def test_stream_without_last_marker_gets_closing_chunk() -> None:
    class Unmarked(ScriptedChatModel):
        def _stream(self, *args: Any, **kwargs: Any) -> Any:
            from langchain_core.outputs import ChatGenerationChunk

            yield ChatGenerationChunk(message=AIMessageChunk(content="plain"))

    router = RoutingChatModel(deployments=[Deployment(model=Unmarked(model="u"), name="u")])
    chunks = list(router.stream("x"))
    assert chunks[-1].chunk_position == "last"
    assert chunks[-1].response_metadata["model_name"] == "u"
    assert chunks[-1].response_metadata["deployment"] == "u"


# ---------------------------------------------------------------------- metadata, health, overrides
def test_metadata_passes_served_model_through() -> None:
    step = Step(reply="hi", model_name="served-model-2025")
    router = RoutingChatModel(deployments=[dep("a", [step])])
    meta = router.invoke("x").response_metadata
    assert meta["model_name"] == "served-model-2025"
    assert meta["model"] == "served-model-2025"
    assert meta["model_provider"] == "scripted"


def test_health_with_provider_probe() -> None:
    class Probed(ScriptedChatModel):
        def health_check(self) -> dict[str, bool]:
            return {"ok": True}

        async def ahealth_check(self) -> dict[str, bool]:
            return {"ok": True}

    router = RoutingChatModel(
        deployments=[Deployment(model=Probed(), name="p"), dep("s", priority=1)], strategy="least_latency"
    )
    router.invoke("x")
    health = router.health(check_providers=True)
    assert health["p"].provider_health == {"ok": True}
    assert health["s"].provider_health is None
    assert health["p"].ewma_latency_ms is not None
    assert health["p"].available
    ahealth = asyncio.run(router.ahealth(check_providers=True))
    assert ahealth["p"].provider_health == {"ok": True}


def test_per_call_strategy_override() -> None:
    router = RoutingChatModel(
        deployments=[
            dep("pricey", input_price=10, output_price=30),
            dep("cheap", input_price=0.1, output_price=0.2, priority=1),
        ]
    )
    assert router.invoke("x").response_metadata["deployment"] == "pricey"
    assert router.invoke("x", routing_strategy="cheapest").response_metadata["deployment"] == "cheap"
    via_config = router.invoke("x", config={"configurable": {"routing_strategy": "cheapest"}})
    assert via_config.response_metadata["deployment"] == "cheap"
    assert scripted(router, "cheap").calls[0].kwargs == {}  # router keys never reach the model


def test_construction_rules() -> None:
    with pytest.raises(ValueError):
        RoutingChatModel(deployments=[])
    twins = RoutingChatModel(deployments=[ScriptedChatModel(), ScriptedChatModel()])
    assert [d.name for d in twins.deployments] == ["scripted:scripted-model", "scripted:scripted-model#2"]
    with pytest.raises(KeyError):
        twins.deployment("nope")
    with pytest.raises(ValueError):
        RoutingChatModel(deployments=[ScriptedChatModel()], strategy="fastest")
    router = RoutingChatModel(deployments=[dep("a")], temperature=0.3, max_tokens=50, stop=["END"])
    router.invoke("x")
    call = scripted(router, "a").calls[0]
    assert call.kwargs == {"temperature": 0.3, "max_tokens": 50}
    assert router._get_ls_params(model="o")["ls_model_name"] == "o"
    assert router._identifying_params["deployments"] == ["a"]


def test_a_tool_choice_naming_no_tool_is_refused_at_bind_time() -> None:
    router = RoutingChatModel(deployments=[dep("a"), dep("b", priority=1)])

    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    with pytest.raises(ValueError, match=r"tool_choice='nope' names no bound tool.*\['add'\]"):
        router.bind_tools([add], tool_choice="nope")
    router.bind_tools([add], tool_choice="add")  # a real name is fine


def test_a_request_that_cannot_be_built_raises_at_once_and_spares_the_breaker() -> None:
    from langchain_multigateway.routing import RequestPreparationError

    router = RoutingChatModel(deployments=[dep("a"), dep("b", priority=1)])
    unbuildable = router.bind_tools([object()])  # not a tool any deployment can describe
    for _ in range(6):
        with pytest.raises(RequestPreparationError, match="could not build the request for deployment 'a'"):
            unbuildable.invoke("hi")
    assert scripted(router, "a").call_count == 0
    assert scripted(router, "b").call_count == 0
    assert router.health()["a"].breaker == "closed"
    assert router.invoke("hi").response_metadata["deployment"] == "a"
