"""Adversarial review of the router (issues 10 and 12): attacks that broke it, each with its fix.

Every test attacks with default settings where it can, then checks that
``health()`` shows nothing held and that the next call is served.
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessageChunk, BaseMessage
from langchain_core.messages.tool import tool_call_chunk
from langchain_core.outputs import ChatGenerationChunk

from langchain_multigateway.chat_models.openai import OpenAIChatModel
from langchain_multigateway.errors import (
    ContentPolicyError,
    GatewayConnectionError,
    GatewayTimeoutError,
    RateLimitError,
    StreamInterruptedError,
)
from langchain_multigateway.routing import Capabilities, Deployment, FailoverPolicy, RoutingChatModel
from langchain_multigateway.state import MemoryState
from langchain_multigateway.testing import ScriptedChatModel, Step
from tests.loopback import Reply, Script, chat_completion, chat_stream, serve, sse
from tests.unit.test_router_release import assert_idle, dep


def _interrupt(*_: Any) -> None:
    raise KeyboardInterrupt


def test_keyboard_interrupt_while_waiting_at_a_gate_leaves_the_line_sync() -> None:
    # A sync call waiting for a busy deployment's slot is interrupted (Ctrl-C): it must leave the
    # line, or the slot freed later is handed to a waiter that is gone and the gate stays full.
    router = RoutingChatModel(
        deployments=[dep("a", [Step(reply="slow", latency=0.6), "after"], max_concurrency=1)], max_wait=5
    )
    holder = threading.Thread(target=router.invoke, args=("hold the slot",))
    holder.start()
    while router.health()["a"].concurrency_in_use == 0:
        time.sleep(0.005)
    previous = signal.signal(signal.SIGALRM, _interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.15)
        with pytest.raises(KeyboardInterrupt):
            router.invoke("wait in line")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    holder.join()
    assert_idle(router)
    assert router.invoke("next").content == "after"
    assert_idle(router)


class ToolCallCut(BaseChatModel):
    """Streams some text and half a tool call's arguments, then the connection drops."""

    @property
    def _llm_type(self) -> str:
        return "tool-call-cut"

    def _generate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any) -> Any:
        raise GatewayConnectionError("streams only")

    def _stream(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> Iterator[ChatGenerationChunk]:
        yield ChatGenerationChunk(message=AIMessageChunk(content="Checking. "))
        half = tool_call_chunk(name="lookup", args='{"query": "weath', id="call-1", index=0)
        yield ChatGenerationChunk(message=AIMessageChunk(content="", tool_call_chunks=[half]))
        raise GatewayConnectionError("connection reset mid-arguments")


def test_a_tool_call_cut_mid_arguments_is_never_continued_from_a_text_prefix() -> None:
    # The caller already holds half a tool call: a continuation from the text would hand it
    # the truncated arguments ({"query": "weath"}) as a finished call. The interruption stands.
    resumer = ScriptedChatModel(model="model-resumer", steps=["done."])
    router = RoutingChatModel(
        deployments=[
            Deployment(model=ToolCallCut(), name="cut"),
            Deployment(model=resumer, name="resumer", capabilities=Capabilities(continue_prefix=True), priority=1),
        ],
        stream_recovery="continue",
    )
    got: list[Any] = []
    with pytest.raises(StreamInterruptedError) as info:
        got.extend(router.stream("what is the weather"))
    assert info.value.deployment == "cut"
    assert info.value.delivered == "Checking. "
    assert isinstance(info.value.cause, GatewayConnectionError)
    assert resumer.call_count == 0  # never sent a prefix
    assert len(got) == 2
    assert_idle(router)


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, Script]]:
    with serve(Reply(body=chat_completion("fine"))) as found:
        yield found


@pytest.mark.parametrize("retry_after", ["99999999", "inf", "Wed, 21 Oct 2099 07:28:00 GMT"])
def test_a_huge_retry_after_does_not_take_the_deployment_out_for_good(
    server: tuple[str, Script], retry_after: str
) -> None:
    # One 429 whose Retry-After is years away (or inf) cooled the deployment down for every caller
    # for that long. The cooldown is capped (FailoverPolicy.max_cooldown, 60 s by default).
    url, script = server
    script.set(
        Reply(429, body={"error": {"message": "slow down"}}, headers={"Retry-After": retry_after}),
        Reply(body=chat_completion("served again")),
    )
    model = OpenAIChatModel(model="m", base_url=url, api_key="placeholder")
    now = [time.monotonic()]
    router = RoutingChatModel(deployments=[Deployment(model=model, name="d0")], state=MemoryState(clock=lambda: now[0]))
    with pytest.raises(RateLimitError):  # too long to wait for in this call: raised at once
        router.invoke("first")
    assert len(script.requests) == 1
    held = router.health()["d0"].retry_after
    assert held is not None
    assert 0 < held <= FailoverPolicy().max_cooldown
    now[0] += FailoverPolicy().max_cooldown + 1  # the capped cooldown has passed (the state's clock, no sleeping)
    assert router.invoke("second").content == "served again"
    assert_idle(router)


class RaisingHandler(BaseCallbackHandler):
    """A handler with ``raise_error=True`` (its exceptions reach the caller) that fails at one point."""

    raise_error = True

    def __init__(self, where: str) -> None:
        self.where = where
        self.tokens = 0

    def on_llm_new_token(self, token: str, **kwargs: Any) -> None:
        self.tokens += 1
        if (self.where, self.tokens) in (("first token", 1), ("third token", 3)):
            raise LookupError(f"handler failed at the {self.where}")

    def on_llm_end(self, response: Any, **kwargs: Any) -> None:
        if self.where == "end":
            raise LookupError("handler failed at the end")


def streaming_pair(url: str) -> RoutingChatModel:
    deployments = [
        Deployment(
            model=OpenAIChatModel(model=f"m{i}", base_url=url, api_key="placeholder"),
            name=f"d{i}",
            priority=i,
            capabilities=Capabilities(continue_prefix=True),
        )
        for i in range(2)
    ]
    return RoutingChatModel(deployments=deployments, stream_recovery="continue")


@pytest.mark.parametrize("where", ["first token", "third token", "end"])
@pytest.mark.parametrize("is_async", [False, True])
def test_a_callback_handler_raising_is_the_callers_error_not_the_deployments(
    server: tuple[str, Script], where: str, is_async: bool
) -> None:
    # A raise_error handler failing mid-stream was classed as a provider failure: the request was
    # sent again to the next deployment (answered twice), the breaker counted it, and a handler
    # failing after the answer had ended made "continue" ask another deployment to extend it.
    url, script = server
    script.set(sse(*chat_stream(["one ", "two ", "three ", "four"])))
    router = streaming_pair(url)
    handler = RaisingHandler(where)

    async def read_async() -> None:
        async for _ in router.astream("count", config={"callbacks": [handler]}):
            pass

    with pytest.raises(LookupError, match=f"at the {where}"):
        if is_async:
            asyncio.run(read_async())
        else:
            for _ in router.stream("count", config={"callbacks": [handler]}):
                pass
    assert len(script.requests) == 1  # asked once, never again elsewhere
    assert all(h.consecutive_failures == 0 and h.breaker == "closed" for h in router.health().values())
    assert_idle(router)
    script.set(sse(*chat_stream(["fine"])))
    assert "".join(str(c.content) for c in router.stream("again")) == "fine"


def test_a_content_policy_refusal_mid_stream_is_not_routed_around_by_continue() -> None:
    # content_policy="raise" (the default) must hold mid-stream too: "continue" sent the refused
    # answer's prefix to the next deployment and presented its continuation as the answer.
    refused = Step(reply="one two three", error=ContentPolicyError("Output blocked by content policy"), fail_after=2)
    resumer = ScriptedChatModel(model="model-resumer", steps=["three"])
    router = RoutingChatModel(
        deployments=[
            dep("refuses", [refused]),
            Deployment(model=resumer, name="resumer", capabilities=Capabilities(continue_prefix=True), priority=1),
        ],
        stream_recovery="continue",
    )
    got: list[str] = []
    with pytest.raises(StreamInterruptedError) as info:
        got.extend(str(c.content) for c in router.stream("count"))
    assert isinstance(info.value.cause, ContentPolicyError)
    assert info.value.delivered == "".join(got) == "one two "
    assert resumer.call_count == 0  # never sent to another deployment
    assert_idle(router)


@pytest.mark.parametrize("how", ["invoke", "ainvoke", "stream"])
def test_the_callers_own_timeout_counts_on_no_breaker(server: tuple[str, Script], how: str) -> None:
    # The call's timeout is handed down as the provider's request timeout (sync); when it fired,
    # the sync path counted it against the deployment, so callers with a tight timeout opened the
    # breakers of healthy deployments for everyone (async cuts the try and counted nothing).
    url, script = server
    script.set(Reply(body=chat_completion("slow but fine"), delay=0.4))
    deployments = [
        Deployment(model=OpenAIChatModel(model=f"m{i}", base_url=url, api_key="placeholder"), name=f"d{i}", priority=i)
        for i in range(2)
    ]
    state = MemoryState(failure_threshold=1)
    hurried = RoutingChatModel(deployments=deployments, state=state, timeout=0.15)
    for _ in range(2):
        with pytest.raises(GatewayTimeoutError):
            if how == "invoke":
                hurried.invoke("x")
            elif how == "ainvoke":
                asyncio.run(hurried.ainvoke("x"))
            else:
                list(hurried.stream("x"))
    for name, health in hurried.health().items():
        assert (health.breaker, health.consecutive_failures) == ("closed", 0), name
    assert_idle(hurried)
    patient = RoutingChatModel(deployments=deployments, state=state)  # same deployments and state, no timeout
    assert patient.invoke("x").content == "slow but fine"


def test_a_given_name_is_never_renamed_and_one_deployment_is_never_listed_twice() -> None:
    # A name given in the "<provider>:<model>" shape was taken for a made-up one: the router
    # renamed the user's deployment and gave its name to another (so router.deployment(name) and
    # config references reached the wrong one); two such given names were numbered, not refused.
    # The same Deployment object listed twice was renamed in place: two entries, one name, one state.
    unnamed = Deployment(model=ScriptedChatModel(model="m"))
    named = Deployment(model=ScriptedChatModel(model="m"), name="scripted:m")
    router = RoutingChatModel(deployments=[unnamed, named])
    assert router.deployment("scripted:m") is named
    assert unnamed.name == "scripted:m#2"
    with pytest.raises(ValueError, match="'scripted:m' is used twice"):
        RoutingChatModel(deployments=[Deployment(model=ScriptedChatModel(model="m"), name="scripted:m"), named])
    twice = Deployment(model=ScriptedChatModel(model="m"))
    with pytest.raises(ValueError, match="listed twice"):
        RoutingChatModel(deployments=[twice, twice])


CONTENT_FILTER_EVENT = {
    "error": {
        "message": "The response was filtered due to the prompt triggering content management policy",
        "type": "invalid_request_error",
        "code": "content_filter",
    }
}


@pytest.mark.parametrize("after_chunks", [0, 2])
def test_a_content_filter_error_event_in_an_openai_stream_is_raised_not_routed_around(
    server: tuple[str, Script], after_chunks: int
) -> None:
    # An OpenAI-format stream's error event was a plain retryable ProviderError whatever it said, so
    # a content-filter refusal was retried and then sent to the next deployment (4 requests), and
    # after chunks "continue" resumed it elsewhere. It is typed as the same refusal over HTTP would be.
    url, script = server
    events = [*chat_stream(["one ", "two "])[:after_chunks], CONTENT_FILTER_EVENT]
    script.set(Reply(sse=events, content_type="text/event-stream"))
    router = streaming_pair(url)
    if after_chunks:
        with pytest.raises(StreamInterruptedError) as info:
            list(router.stream("count"))
        assert isinstance(info.value.cause, ContentPolicyError)
    else:
        with pytest.raises(ContentPolicyError):
            list(router.stream("count"))
    assert len(script.requests) == 1
    assert_idle(router)
