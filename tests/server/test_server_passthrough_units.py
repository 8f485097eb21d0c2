"""The lean path's pieces that need no server: a mixed router's other deployments, and upstream error bodies."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.messages import HumanMessage
from langchain_core.messages.ai import UsageMetadata

from langchain_multigateway.routing import Deployment, RoutingChatModel
from langchain_multigateway.server.passthrough import PassThrough, _error_message
from langchain_multigateway.testing import ScriptedChatModel
from langchain_multigateway.testing.scripted import Step


async def test_a_deployment_that_is_not_plain_openai_is_tried_by_the_routers_own_attempt() -> None:
    usage = UsageMetadata(input_tokens=3, output_tokens=2, total_tokens=5)
    scripted = ScriptedChatModel(model="m", steps=[Step(reply="from the script", usage=usage)])
    router = RoutingChatModel(deployments=[Deployment(model=scripted, name="scripted")], model="r")
    lean = PassThrough({"r": router})
    served = await lean.invoke("r", [HumanMessage("hi")], None, {})
    assert served.data is None  # nothing to pass through: the server renders the message itself
    message = served.result.generations[0].message
    assert message.text == "from the script"
    assert message.response_metadata["deployment"] == "scripted"
    assert all(h.in_flight == 0 for h in router.health().values())


def test_a_router_with_a_response_cache_takes_the_full_path() -> None:
    router = RoutingChatModel(deployments=[Deployment(model=ScriptedChatModel(model="m"), name="d")], model="r")
    assert PassThrough({"r": router}).serves("r")
    router.cache = False
    assert PassThrough({"r": router}).serves("r")
    router.cache = True
    assert not PassThrough({"r": router}).serves("r")  # LangChain's cache must see the call


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"error": {"message": "bad model", "type": "invalid_request_error"}}, "bad model"),
        ({"message": "flat"}, "flat"),
        ({"error": "plain"}, "plain"),
        ("upstream said no", "upstream said no"),
        ("", None),
        ({"detail": 1}, None),
    ],
)
def test_an_upstream_error_bodys_message_is_found_in_each_shape(body: Any, message: str | None) -> None:
    assert _error_message(body) == message


def test_with_langsmith_tracing_on_every_call_takes_the_traced_full_path(monkeypatch: pytest.MonkeyPatch) -> None:
    from langsmith import utils as ls_utils

    router = RoutingChatModel(deployments=[Deployment(model=ScriptedChatModel(model="m"), name="d")], model="r")
    monkeypatch.setenv("LANGSMITH_TRACING", "true")
    ls_utils.get_env_var.cache_clear()  # LangSmith reads its environment once
    try:
        assert not PassThrough({"r": router}).serves("r")  # the lean path makes no LangChain run to trace
    finally:
        monkeypatch.delenv("LANGSMITH_TRACING")
        ls_utils.get_env_var.cache_clear()
    assert PassThrough({"r": router}).serves("r")
