"""Bad input is the caller's error, raised at once: it never counts against a deployment's breaker.

Run against real OpenAIChatModel deployments on a loopback HTTP server, so the
errors come from the real request-building and sending code.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from langchain_core.messages import HumanMessage, RemoveMessage

from langchain_multigateway.chat_models.openai import OpenAIChatModel
from langchain_multigateway.errors import InvalidRequestError
from langchain_multigateway.routing import Deployment, RequestPreparationError, RoutingChatModel
from langchain_multigateway.state import MemoryState
from langchain_multigateway.testing import ScriptedChatModel
from tests.loopback import Reply, Script, chat_completion, serve


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, Script]]:
    with serve(Reply(body=chat_completion("fine"))) as found:
        yield found


def two_deployments(url: str) -> RoutingChatModel:
    deployments = [
        Deployment(model=OpenAIChatModel(model=name, base_url=url, api_key="placeholder"), name=name, priority=i)
        for i, name in enumerate(("primary", "fallback"))
    ]
    return RoutingChatModel(deployments=deployments, state=MemoryState(failure_threshold=2))


def assert_untouched(router: RoutingChatModel, *, sent: bool = False) -> None:
    for name, health in router.health().items():
        assert health.breaker == "closed", name
        assert health.consecutive_failures == 0, f"{name}'s breaker was charged for the caller's input"
        assert health.in_flight == 0, name
        if not sent:
            assert health.failures == 0, f"{name} was charged for the caller's input"


BAD_INPUTS: dict[str, Any] = {
    "lone surrogate": "a prompt with a lone surrogate \ud800 in it",
    "lone surrogate in a later message": [HumanMessage("fine"), HumanMessage("bad \udfff")],
    "unsendable message type": [RemoveMessage(id="m1")],
}


@pytest.mark.parametrize("kind", list(BAD_INPUTS))
def test_bad_input_raises_at_once_and_opens_no_breaker(server: tuple[str, Script], kind: str) -> None:
    url, script = server
    script.set(Reply(body=chat_completion("fine")))
    router = two_deployments(url)
    for _ in range(4):  # more than the failure threshold
        with pytest.raises(RequestPreparationError) as info:
            router.invoke(BAD_INPUTS[kind])
        assert isinstance(info.value, InvalidRequestError)
    assert script.requests == [], "nothing should have been sent"
    assert_untouched(router)
    assert router.invoke("hello").response_metadata["deployment"] == "primary"


async def test_bad_input_raises_at_once_async_and_streaming(server: tuple[str, Script]) -> None:
    url, script = server
    script.set(Reply(body=chat_completion("fine")))
    router = two_deployments(url)
    for _ in range(3):
        with pytest.raises(RequestPreparationError):
            await router.ainvoke("bad \ud800")
        with pytest.raises(RequestPreparationError):
            [c async for c in router.astream([RemoveMessage(id="m1")])]
        with pytest.raises(RequestPreparationError):
            list(router.stream("bad \ud800"))
    assert script.requests == []
    assert_untouched(router)


def test_the_error_says_what_was_wrong_and_where(server: tuple[str, Script]) -> None:
    url, _ = server
    router = two_deployments(url)
    with pytest.raises(RequestPreparationError, match=r"message 1 .*lone surrogate.*U\+DFFF"):
        router.invoke([HumanMessage("fine"), HumanMessage("bad \udfff")])
    with pytest.raises(RequestPreparationError, match="Cannot send a RemoveMessage"):
        router.invoke([RemoveMessage(id="m1")])


def test_an_invalid_tool_schema_raises_at_once(server: tuple[str, Script]) -> None:
    url, script = server
    script.set(Reply(body=chat_completion("fine")))
    router = two_deployments(url)
    unbuildable = router.bind_tools([{"not": "a tool"}])
    for _ in range(3):
        with pytest.raises(RequestPreparationError):
            unbuildable.invoke("hi")
    assert script.requests == []
    assert_untouched(router)


def test_a_provider_400_about_the_input_counts_against_no_breaker(server: tuple[str, Script]) -> None:
    url, script = server
    bad_request = {"error": {"message": "messages[0].content: invalid value", "type": "invalid_request_error"}}
    script.set(Reply(400, bad_request))
    router = two_deployments(url)
    for _ in range(4):
        with pytest.raises(InvalidRequestError, match="invalid value"):
            router.invoke("hi")
    assert len(script.requests) == 4, "a 400 is not retried nor sent to another deployment"
    assert_untouched(router, sent=True)
    script.set(Reply(body=chat_completion("fine")))
    assert router.invoke("hello").content == "fine"


def test_a_third_party_model_failing_with_a_plain_exception_still_fails_over() -> None:
    # Not our provider: a plain exception may be its transport failing, so it fails over.
    primary = ScriptedChatModel(model="p", steps=[RuntimeError("socket closed")])
    router = RoutingChatModel(
        deployments=[Deployment(model=primary, name="p"), Deployment(model=ScriptedChatModel(), name="s", priority=1)]
    )
    assert router.invoke("hi").response_metadata["deployment"] == "s"
