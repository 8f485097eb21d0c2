"""The router's own limits: the call's ``timeout``, unique names, event loops, tpm and budget reservations."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from langchain_core.messages import HumanMessage

from langchain_multigateway.chat_models.openai import OpenAIChatModel
from langchain_multigateway.errors import BudgetExceededError, GatewayTimeoutError, RateLimitError
from langchain_multigateway.routing import Deployment, RoutingChatModel
from langchain_multigateway.state import MemoryState
from langchain_multigateway.testing import ScriptedChatModel, Step
from langchain_multigateway.tokens import count_message_tokens
from langchain_multigateway.usage.budgets import Budget
from tests.loopback import Reply, Script, chat_completion, serve


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, Script]]:
    with serve(Reply(body=chat_completion("fine"))) as found:
        yield found


def silent_router(url: str, timeout: float) -> RoutingChatModel:
    """Three deployments on one loopback server (each test scripts its delay)."""
    deployments = [
        Deployment(model=OpenAIChatModel(model=name, base_url=url, api_key="placeholder"), name=name, priority=i)
        for i, name in enumerate(("one", "two", "three"))
    ]
    return RoutingChatModel(deployments=deployments, timeout=timeout)


# ---------------------------------------------------------------------- timeout bounds the whole call
async def test_timeout_bounds_the_call_across_deployments_async(server: tuple[str, Script]) -> None:
    url, script = server
    router = silent_router(url, timeout=1.0)
    script.set(Reply(body=chat_completion("warm")))
    await router.deployment("one").model.ainvoke("warm up")  # the SDK's lazy import and client, untimed
    script.set(Reply(body=chat_completion("late"), delay=2.5))
    with pytest.raises(GatewayTimeoutError) as info:
        await router.ainvoke("hello")
    message = str(info.value)
    assert "timeout of 1 s" in message, message  # the limit
    assert "'one'" in message, message  # what was running
    assert "attempts:" in message, message  # each attempt's time
    assert "one:" in message, message
    # Cancelled in flight: the first deployment was never retried, the others never tried.
    assert [r["body"]["model"] for r in script.requests] == ["one"]
    for health in router.health().values():
        assert health.in_flight == 0
        assert health.consecutive_failures <= 1


def test_timeout_bounds_the_call_across_deployments_sync(server: tuple[str, Script]) -> None:
    url, script = server
    router = silent_router(url, timeout=1.0)
    script.set(Reply(body=chat_completion("warm")))
    router.deployment("one").model.invoke("warm up")
    script.set(Reply(body=chat_completion("late"), delay=2.5))
    with pytest.raises(GatewayTimeoutError) as info:
        router.invoke("hello")
    assert "'one'" in str(info.value)
    assert [r["body"]["model"] for r in script.requests] == ["one"]
    assert all(h.in_flight == 0 for h in router.health().values())


async def test_timeout_bounds_a_stream_before_its_first_chunk(server: tuple[str, Script]) -> None:
    url, script = server
    router = silent_router(url, timeout=1.0)
    script.set(Reply(body=chat_completion("warm")))
    await router.deployment("one").model.ainvoke("warm up")
    script.set(Reply(body=chat_completion("late"), delay=2.5))
    with pytest.raises(GatewayTimeoutError):
        [c async for c in router.astream("hello")]
    assert [r["body"]["model"] for r in script.requests] == ["one"]


def test_timeout_stops_retries_and_waits_too() -> None:
    slow = ScriptedChatModel(model="s", steps=[Step(reply="late", latency=0.3)] * 5)
    router = RoutingChatModel(deployments=[Deployment(model=slow, name="s", max_concurrency=1)], timeout=0.1)
    with pytest.raises(GatewayTimeoutError, match="'s'"):
        asyncio.run(router.ainvoke("x"))
    assert slow.call_count == 1


# ---------------------------------------------------------------------- unique deployment names
def test_duplicate_deployment_names_are_refused_by_name() -> None:
    def named(name: str) -> Deployment:
        return Deployment(model=ScriptedChatModel(), name=name)

    with pytest.raises(ValueError, match=r"deployment name 'a' is used twice"):
        RoutingChatModel(deployments=[named("a"), named("a"), named("a#2")])
    with pytest.raises(ValueError, match=r"deployment name 'a#2' is used twice"):
        RoutingChatModel(deployments=[named("a"), named("a#2"), named("a#2")])


def test_unnamed_twins_get_distinct_names_that_collide_with_nothing() -> None:
    taken = Deployment(model=ScriptedChatModel(), name="scripted:scripted-model#2")
    router = RoutingChatModel(deployments=[ScriptedChatModel(), ScriptedChatModel(), taken])
    names = [d.name for d in router.deployments]
    assert len(set(names)) == 3, names
    assert "scripted:scripted-model#2" in names


# ---------------------------------------------------------------------- event loops
def test_three_event_loops_in_a_row_through_the_router(server: tuple[str, Script]) -> None:
    url, script = server
    script.set(Reply(body=chat_completion("fine")))
    model = OpenAIChatModel(model="m", base_url=url, api_key="placeholder")
    router = RoutingChatModel(deployments=[Deployment(model=model, name="m", max_concurrency=2)])
    for _ in range(3):
        message = asyncio.run(router.ainvoke("hello"))
        assert message.content == "fine"
        assert message.response_metadata["attempts"] == 1
    assert router.health()["m"].failures == 0


# ---------------------------------------------------------------------- tpm reserves counted tokens
CHINESE = "请用中文详细解释一下机器学习中的梯度下降算法的原理和应用场景并举例说明。" * 3


async def test_tpm_admits_by_counted_tokens_not_characters() -> None:
    prompt_tokens = count_message_tokens([{"role": "user", "content": CHINESE}], "model-z")
    usage = {"input_tokens": prompt_tokens, "output_tokens": 1, "total_tokens": prompt_tokens + 1}
    model = ScriptedChatModel(model="model-z", steps=[Step(reply="好", usage=usage, latency=0.01)] * 300)
    router = RoutingChatModel(deployments=[Deployment(model=model, name="z", tpm=5000)], max_wait=0, max_tokens=1)

    async def one() -> int:
        try:
            await router.ainvoke(CHINESE)
        except RateLimitError:
            return 0
        return 1

    admitted = sum(await asyncio.gather(*(one() for _ in range(200))))
    real = admitted * (prompt_tokens + 1)
    assert admitted > 0
    assert real <= 5000, f"{admitted} calls admitted, {real} real tokens under tpm=5000"
    assert router.health()["z"].tokens_last_minute == real  # reconciled with the real usage


# ---------------------------------------------------------------------- budget and a model's own max_tokens
def test_a_router_budget_counts_a_deployments_own_max_tokens() -> None:
    # The model may write 10,000 tokens; the budget has 5,000 left: refused before sending.
    big = OpenAIChatModel(model="big", base_url="http://127.0.0.1:9/v1", api_key="placeholder", max_tokens=10_000)
    router = RoutingChatModel(deployments=[Deployment(model=big, name="big")], budget=Budget(max_tokens=5_000))
    with pytest.raises(BudgetExceededError, match="big"):
        router.invoke("hi")
    small = OpenAIChatModel(model="small", base_url="http://127.0.0.1:9/v1", api_key="placeholder", max_tokens=10)
    router = RoutingChatModel(
        deployments=[Deployment(model=big, name="big"), Deployment(model=small, name="small", priority=1)],
        budget=Budget(max_tokens=5_000),
        on_budget_exceeded="cheaper",
    )
    with pytest.raises(Exception) as info:  # small fits the budget and is tried (nothing listens on port 9)
        router.invoke("hi")
    assert not isinstance(info.value, BudgetExceededError)
    assert {a.deployment for a in info.value.attempts} == {"small"}  # type: ignore[attr-defined]


# ---------------------------------------------------------------------- breaker listeners
def test_a_breaker_listener_with_a_wrong_signature_is_refused_at_once() -> None:
    state = MemoryState()

    def listener(name: str) -> None:  # missing the state argument
        pass

    with pytest.raises(TypeError, match=r"listener\(deployment, state\)"):
        state.add_listener(listener)
    router = RoutingChatModel(deployments=[ScriptedChatModel()], state=state)
    with pytest.raises(TypeError, match=r"listener\(deployment, state\)"):
        router.watch_breakers(lambda: None)
    state.add_listener(lambda name, value: None)  # the right shape is fine


def test_timeout_message_lists_attempt_times() -> None:
    model = ScriptedChatModel(model="m", steps=[Step(reply="x", latency=0.3)])
    router = RoutingChatModel(deployments=[Deployment(model=model, name="m")], timeout=0.05)
    with pytest.raises(GatewayTimeoutError) as info:
        asyncio.run(router.ainvoke([HumanMessage("x")]))
    assert "m:" in str(info.value)
    assert "ms" in str(info.value)
