"""Streams cut mid-answer: never a truncated success; resumed on a deployment that can continue a prefix.

Scripted deployments stand in for providers here (what matters is what the router
sends and relays); the same behaviour against a real HTTP fake provider is in
``tests/integration/test_failover_scenarios.py``.
"""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.messages import AIMessage

from langchain_multigateway.errors import GatewayConnectionError, StreamInterruptedError
from langchain_multigateway.routing import Capabilities, Deployment, RequestPreparationError, RoutingChatModel
from langchain_multigateway.testing import ScriptedChatModel, Step

ANSWER = "one two three four five six"
CUT = Step(reply=ANSWER, error=GatewayConnectionError("connection reset"), fail_after=3)
USAGE = {"input_tokens": 10, "output_tokens": 3, "total_tokens": 13}


def dep(name: str, steps: list[Any], *, continues: bool = False, priority: int = 0) -> Deployment:
    model = ScriptedChatModel(model=f"model-{name}", steps=steps, default_reply=f"from {name}")
    caps = Capabilities(continue_prefix=True) if continues else Capabilities()
    return Deployment(model=model, name=name, capabilities=caps, priority=priority)


def scripted(router: RoutingChatModel, name: str) -> ScriptedChatModel:
    model = router.deployment(name).model
    assert isinstance(model, ScriptedChatModel)
    return model


def text_of(chunks: list[Any]) -> str:
    return "".join(str(c.content) for c in chunks)


def continuing_router(**kwargs: Any) -> RoutingChatModel:
    return RoutingChatModel(
        deployments=[
            dep("cut", [CUT]),
            dep("plain", ["never sent a prefix"], priority=1),
            dep("resumer", [Step(reply="four five six", usage=USAGE)], continues=True, priority=2),
        ],
        **kwargs,
    )


def test_continue_resumes_on_a_deployment_that_can_continue_a_prefix() -> None:
    router = continuing_router(stream_recovery="continue")
    chunks = list(router.stream("count"))
    assert text_of(chunks) == ANSWER  # the delivered part, then only the continuation
    (sent,) = scripted(router, "resumer").calls
    prefix = sent.messages[-1]
    assert isinstance(prefix, AIMessage)
    assert prefix.content == "one two three "  # exactly what the caller had received
    assert scripted(router, "plain").call_count == 0  # cannot continue: never sent a prefix
    last = chunks[-1]
    assert last.response_metadata["deployment"] == "resumer"
    assert last.response_metadata["attempts"] == 2
    assert [a["deployment"] for a in last.response_metadata["failed_attempts"]] == ["cut"]
    assert last.usage_metadata is not None
    assert last.usage_metadata["output_tokens"] >= USAGE["output_tokens"]
    assert all(h.in_flight == 0 for h in router.health().values())


async def test_continue_async_and_per_call() -> None:
    router = continuing_router()  # default "error"; asked for per call
    chunks = [c async for c in router.astream("count", stream_recovery="continue")]
    assert text_of(chunks) == ANSWER
    assert chunks[-1].response_metadata["deployment"] == "resumer"


def test_default_error_keeps_the_delivered_text_and_sends_no_prefix() -> None:
    router = continuing_router()
    got: list[str] = []
    with pytest.raises(StreamInterruptedError) as info:
        for chunk in router.stream("count"):
            got.append(str(chunk.content))
    assert "".join(got) == info.value.delivered == "one two three "
    assert info.value.deployment == "cut"
    assert isinstance(info.value.cause, GatewayConnectionError)
    assert scripted(router, "resumer").call_count == 0


def test_with_no_deployment_able_to_continue_the_interruption_stands() -> None:
    router = RoutingChatModel(
        deployments=[dep("cut", [CUT]), dep("plain", ["x"], priority=1)], stream_recovery="continue"
    )
    with pytest.raises(StreamInterruptedError) as info:
        list(router.stream("count"))
    assert isinstance(info.value.cause, GatewayConnectionError)  # not masked by a refused prefill
    assert scripted(router, "plain").call_count == 0


def test_a_caller_not_streaming_never_sees_a_partial_answer() -> None:
    # invoke() on a router set to stream underneath reads each stream whole before passing it on,
    # so a cut mid-answer fails over like any failure before the first chunk.
    router = RoutingChatModel(deployments=[dep("cut", [CUT, CUT]), dep("whole", [ANSWER], priority=1)], streaming=True)
    message = router.invoke("count")
    assert message.content == ANSWER
    assert message.response_metadata["deployment"] == "whole"
    assert [c.stream for c in scripted(router, "cut").calls] == [True, True]  # it did stream underneath
    assert [c.stream for c in scripted(router, "cut").calls] == [True, True]  # it did stream underneath


async def test_a_caller_not_streaming_never_sees_a_partial_answer_async() -> None:
    router = RoutingChatModel(deployments=[dep("cut", [CUT, CUT]), dep("whole", [ANSWER], priority=1)], streaming=True)
    message = await router.ainvoke("count")
    assert message.content == ANSWER


def test_an_unknown_stream_recovery_is_refused() -> None:
    router = continuing_router()
    with pytest.raises(RequestPreparationError, match="stream_recovery must be one of"):
        list(router.stream("count", stream_recovery="retry"))
