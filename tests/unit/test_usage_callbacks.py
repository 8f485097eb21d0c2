"""UsageCallbackHandler and track_usage: every way of calling a model, counted once."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from langchain_core.callbacks import (
    AsyncCallbackManager,
    AsyncCallbackManagerForLLMRun,
    CallbackManager,
    CallbackManagerForLLMRun,
    get_usage_metadata_callback,
)
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult, LLMResult
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda

from langchain_multigateway.errors import AllDeploymentsFailedError, AttemptRecord, ProviderError, RateLimitError
from langchain_multigateway.testing import ScriptedChatModel
from langchain_multigateway.testing.scripted import Step
from langchain_multigateway.usage import CallRecorder, PriceTable, UsageCallbackHandler, atrack_usage, track_usage

USAGE = UsageMetadata(input_tokens=10, output_tokens=5, total_tokens=15)


def scripted(model: str = "gpt-4o-mini", *steps: Any, provider: str = "openai", **usage: int) -> ScriptedChatModel:
    step_usage = UsageMetadata(**usage) if usage else USAGE  # type: ignore[typeddict-item]
    return ScriptedChatModel(
        model=model,
        model_provider=provider,
        steps=list(steps) or [Step(reply="hello there friend", usage=step_usage)],
        exhausted="cycle",
    )


def child_callbacks(run_manager: Any) -> Any:
    """What ``ParentRunManager.get_child`` does, for a chat-model run (whose manager lacks it)."""
    if run_manager is None:
        return None
    cls = AsyncCallbackManager if isinstance(run_manager, AsyncCallbackManagerForLLMRun) else CallbackManager
    manager = cls(handlers=[], parent_run_id=run_manager.run_id)
    manager.set_handlers(run_manager.inheritable_handlers)
    manager.add_tags(run_manager.inheritable_tags)
    manager.add_metadata(run_manager.inheritable_metadata)
    return manager


class Wrapper(BaseChatModel):
    """A minimal router: tries inner models in order, callbacks propagated to them."""

    inners: list[BaseChatModel]
    names: list[str] | None = None
    pass_usage: bool = True

    @property
    def _llm_type(self) -> str:
        return "test-wrapper"

    def _config(self, run_manager: Any, index: int) -> dict[str, Any]:
        name = self.names[index] if self.names else f"dep{index}"
        return {"callbacks": child_callbacks(run_manager), "metadata": {"deployment": name}}

    def _finish(self, message: BaseMessage, index: int) -> AIMessage:
        assert isinstance(message, AIMessage)
        meta = {**message.response_metadata, "deployment": self._config(None, index)["metadata"]["deployment"]}
        meta["attempts"] = index + 1
        return AIMessage(
            content=message.content,
            usage_metadata=message.usage_metadata if self.pass_usage else None,
            response_metadata=meta,
        )

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        errors: list[AttemptRecord] = []
        for index, inner in enumerate(self.inners):
            try:
                message = inner.invoke(messages, config=self._config(run_manager, index))  # type: ignore[arg-type]
            except ProviderError as exc:
                errors.append(AttemptRecord(f"dep{index}", exc, 1.0))
                continue
            return ChatResult(generations=[ChatGeneration(message=self._finish(message, index))])
        raise AllDeploymentsFailedError("all failed", errors)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        for index, inner in enumerate(self.inners):
            try:
                message = await inner.ainvoke(messages, config=self._config(run_manager, index))  # type: ignore[arg-type]
            except ProviderError:
                continue
            return ChatResult(generations=[ChatGeneration(message=self._finish(message, index))])
        raise AllDeploymentsFailedError("all failed", [])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        for chunk in self.inners[0].stream(messages, config=self._config(run_manager, 0)):  # type: ignore[arg-type]
            assert isinstance(chunk, AIMessageChunk)
            if chunk.chunk_position == "last":
                chunk = chunk.model_copy(
                    update={"response_metadata": {**chunk.response_metadata, "deployment": "dep0", "attempts": 1}}
                )
            yield ChatGenerationChunk(message=chunk)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        async for chunk in self.inners[0].astream(messages, config=self._config(run_manager, 0)):  # type: ignore[arg-type]
            assert isinstance(chunk, AIMessageChunk)
            yield ChatGenerationChunk(message=chunk)


# ---------------------------------------------------------------------- flat calls
def test_invoke_stream_batch_agree_with_get_usage_metadata_callback() -> None:
    llm = scripted()
    other = scripted("claude-3-5-haiku", provider="anthropic", input_tokens=7, output_tokens=3, total_tokens=10)
    with get_usage_metadata_callback() as core, track_usage() as usage:
        llm.invoke("hi")
        assert [c.content for c in llm.stream("hi")][-1] == ""
        llm.batch(["a", "b", "c"])
        other.invoke("hi")
        (ChatPromptTemplate.from_messages([("user", "{q}")]) | other).invoke({"q": "nested in a chain"})
    assert usage.usage_metadata == core.usage_metadata
    assert usage.calls == 7
    totals = usage.totals
    assert (totals.requests, totals.errors) == (7, 0)
    assert (totals.input_tokens, totals.output_tokens, totals.total_tokens) == (64, 31, 95)
    by_model = usage.by_model()
    assert by_model["gpt-4o-mini"].requests == 5
    assert by_model["claude-3-5-haiku"].output_tokens == 6
    assert set(usage.by_provider()) == {"openai", "anthropic"}
    assert list(usage.by_deployment()) == ["unknown"]
    assert usage.by_deployment()["unknown"].total_tokens == totals.total_tokens
    expected = 5 * (10 * 0.15 + 5 * 0.60) / 1e6 + 2 * (7 * 0.80 + 3 * 4.0) / 1e6
    assert usage.total_cost_usd == pytest.approx(expected)


async def test_async_calls_agree_with_core() -> None:
    llm = scripted()
    async with atrack_usage() as usage:
        with get_usage_metadata_callback() as core:
            await llm.ainvoke("hi")
            async for _ in llm.astream("hi"):
                pass
            await llm.abatch(["a", "b"])
            await asyncio.gather(*(llm.ainvoke(str(i)) for i in range(20)))
    assert usage.usage_metadata == core.usage_metadata
    assert usage.totals.requests == 24
    assert usage.totals.total_tokens == 24 * 15
    assert usage.active_runs() == 0


def test_cached_and_reasoning_tokens() -> None:
    usage_md = UsageMetadata(
        input_tokens=100,
        output_tokens=50,
        total_tokens=150,
        input_token_details={"cache_read": 60},
        output_token_details={"reasoning": 20},
    )
    llm = scripted(
        "o4-mini-2025-04-16",
        Step(reply="thought hard", usage=usage_md),
    )
    with track_usage() as usage:
        llm.invoke("hi")
    totals = usage.totals
    assert (totals.cached_tokens, totals.reasoning_tokens) == (60, 20)
    assert usage.total_cost_usd == pytest.approx((40 * 1.10 + 60 * 0.275 + 50 * 4.40) / 1e6)


def test_unknown_model_cost_is_none_not_invented() -> None:
    llm = scripted("my-local-gemma")
    with pytest.warns(RuntimeWarning, match="No price known for model 'my-local-gemma'"), track_usage() as usage:
        llm.invoke("hi")
        llm.invoke("hi")
    assert usage.totals.unpriced == 2
    assert usage.total_cost_usd == 0.0
    assert "n/a" in usage.summary()
    assert "not in cost_usd" in usage.summary()


def test_explicit_handler_and_custom_prices() -> None:
    handler = UsageCallbackHandler(prices={"gpt-4o-mini": {"input": 1.0, "output": 1.0}}, keep_records=True)
    scripted().invoke("hi", config={"callbacks": [handler]})
    assert handler.total_cost_usd == pytest.approx(15 / 1e6)
    assert len(handler.records) == 1
    assert handler.records[0].outcome == "ok"
    assert handler.records[0].to_dict()["tags"] == []
    handler.reset()
    assert handler.totals.requests == 0
    assert handler.records == []
    assert handler.usage_metadata == {}


def test_track_usage_scopes_nest_and_end() -> None:
    llm = scripted()
    with track_usage() as outer:
        llm.invoke("a")
        with track_usage() as inner:
            llm.invoke("b")
        llm.invoke("c")
    llm.invoke("after the block")
    assert outer.totals.requests == 3
    assert inner.totals.requests == 1


def test_threads_share_one_handler() -> None:
    llm = scripted()
    handler = UsageCallbackHandler()

    def work() -> None:
        for _ in range(25):
            llm.invoke("hi", config={"callbacks": [handler]})

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert handler.totals.requests == 200
    assert handler.totals.total_tokens == 200 * 15


def test_summary_and_exports() -> None:
    with track_usage() as usage:
        Wrapper(inners=[scripted()], names=["primary"]).invoke("hi")
        scripted("claude-haiku-4-5", provider="anthropic").invoke("hi")
    text = usage.summary()
    lines = text.splitlines()
    assert lines[0].split() == [
        "provider",
        "model",
        "deployment",
        "requests",
        "errors",
        "input",
        "output",
        "cached",
        "reasoning",
        "cost_usd",
    ]
    assert any(line.split()[:3] == ["openai", "gpt-4o-mini", "primary"] for line in lines)
    assert lines[-1].startswith("TOTAL")
    data = json.loads(usage.to_json(indent=2))
    assert data["totals"]["requests"] == 2
    assert data["by_deployment"]["primary"]["input_tokens"] == 10
    assert {b["deployment"] for b in data["buckets"]} == {"primary", None}
    assert data == usage.to_dict()


# ---------------------------------------------------------------------- nesting
def test_nested_chat_model_counts_served_call_once() -> None:
    router = Wrapper(inners=[scripted()], names=["primary"])
    with track_usage() as usage, get_usage_metadata_callback() as core:
        message = router.invoke("hi")
    assert message.usage_metadata == USAGE
    # LangChain's own handler sees two on_llm_end with usage: it counts the call twice.
    assert core.usage_metadata["gpt-4o-mini"]["total_tokens"] == 30
    assert usage.totals.requests == 1
    assert usage.totals.total_tokens == 15
    assert usage.by_deployment()["primary"].total_tokens == 15
    assert usage.calls == 1


def test_nested_failover_counts_failed_attempt_as_error_without_tokens() -> None:
    failing = scripted("gpt-4o", ProviderError("overloaded", provider="openai", model="gpt-4o"))
    router = Wrapper(inners=[failing, scripted()], names=["primary", "backup"])
    with track_usage(keep_records=True) as usage:
        message = router.invoke("hi")
    assert message.response_metadata["deployment"] == "backup"
    totals = usage.totals
    assert (totals.requests, totals.errors, totals.total_tokens) == (2, 1, 15)
    failed = usage.by_deployment()["primary"]
    assert (failed.requests, failed.errors, failed.total_tokens, failed.cost_usd) == (1, 1, 0, 0.0)
    assert usage.by_deployment()["backup"].total_tokens == 15
    assert [r.error_type for r in usage.records] == ["ProviderError", None]
    assert "router's attempt count" not in usage.summary()


async def test_nested_async_and_stream_count_once() -> None:
    router = Wrapper(inners=[scripted()])
    async with atrack_usage() as usage:
        await router.ainvoke("hi")
        async for _ in router.astream("hi"):
            pass
        await asyncio.gather(*(router.ainvoke(str(i)) for i in range(10)))
    assert usage.totals.requests == 12
    assert usage.totals.total_tokens == 12 * 15


def test_nested_stream_with_usage_in_last_chunk_counted_once() -> None:
    router = Wrapper(inners=[scripted()])
    with track_usage() as usage:
        chunks = list(router.stream("hi"))
    assert sum(1 for c in chunks if c.usage_metadata) == 1
    assert usage.totals.requests == 1
    assert usage.totals.total_tokens == 15
    assert usage.by_deployment()["dep0"].requests == 1


def test_outer_without_usage_falls_back_to_inner_records() -> None:
    router = Wrapper(inners=[scripted()], pass_usage=False)
    with track_usage() as usage:
        router.invoke("hi")
    assert usage.totals.requests == 1
    assert usage.totals.total_tokens == 15
    # the inner run's metadata named its deployment
    assert usage.by_deployment()["dep0"].requests == 1


def test_outer_failure_keeps_every_inner_attempt() -> None:
    failing = scripted("gpt-4o", ProviderError("down", provider="openai", model="gpt-4o"))
    router = Wrapper(inners=[failing, failing])
    with track_usage() as usage, pytest.raises(AllDeploymentsFailedError):
        router.invoke("hi")
    assert (usage.totals.requests, usage.totals.errors, usage.totals.total_tokens) == (2, 2, 0)
    assert set(usage.by_deployment()) == {"dep0", "dep1"}
    assert usage.calls == 1


def test_nesting_through_an_intermediate_chain() -> None:
    inner = scripted()

    class ChainWrapper(Wrapper):
        def _generate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any) -> Any:
            chain = RunnableLambda(lambda m: m) | inner
            message = chain.invoke(messages, config={"callbacks": child_callbacks(run_manager)})
            return ChatResult(generations=[ChatGeneration(message=self._finish(message, 0))])

    with track_usage() as usage:
        ChainWrapper(inners=[inner]).invoke("hi")
    assert usage.totals.requests == 1
    assert usage.totals.total_tokens == 15


def test_agent_loop_counts_each_model_turn() -> None:
    langchain_agents = pytest.importorskip("langchain.agents")
    from langchain_core.tools import tool

    @tool
    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    call = AIMessage("", tool_calls=[{"name": "add", "args": {"a": 1, "b": 2}, "id": "c1", "type": "tool_call"}])
    llm = ScriptedChatModel(
        model="gpt-4o-mini",
        model_provider="openai",
        steps=[Step(reply=call, usage=USAGE), Step(reply="3", usage=USAGE)],
    )
    agent = langchain_agents.create_agent(llm, tools=[add])
    with track_usage() as usage, get_usage_metadata_callback() as core:
        agent.invoke({"messages": [("user", "1 + 2?")]})
    assert usage.totals.requests == 2
    assert usage.usage_metadata == core.usage_metadata


# ---------------------------------------------------------------------- errors
def test_failed_call_is_an_error_without_tokens() -> None:
    llm = scripted("gpt-4o-mini", RateLimitError("slow down", provider="openai", model="gpt-4o-mini"))
    with track_usage(keep_records=True) as usage, pytest.raises(RateLimitError):
        llm.invoke("hi")
    record = usage.records[0]
    assert (record.outcome, record.error_type, record.total_tokens, record.has_usage) == (
        "error",
        "RateLimitError",
        0,
        False,
    )
    assert (record.provider, record.model) == ("openai", "gpt-4o-mini")


def test_billed_failure_counts_its_tokens() -> None:
    error = ProviderError("output rejected after generation", provider="openai", model="gpt-4o-mini")
    error.usage_metadata = {"input_tokens": 30, "output_tokens": 0, "total_tokens": 30}  # type: ignore[attr-defined]
    llm = scripted("gpt-4o-mini", error)
    with track_usage() as usage, pytest.raises(ProviderError):
        llm.invoke("hi")
    assert (usage.totals.errors, usage.totals.input_tokens) == (1, 30)
    assert usage.total_cost_usd == pytest.approx(30 * 0.15 / 1e6)


def test_stream_failing_midway_counts_error_and_no_tokens() -> None:
    llm = scripted(
        "gpt-4o-mini",
        Step(reply="a b c", chunks=["a ", "b ", "c"], error=ProviderError("cut"), fail_after=2, usage=USAGE),
    )
    with track_usage() as usage, pytest.raises(ProviderError):
        list(llm.stream("hi"))
    assert (usage.totals.requests, usage.totals.errors, usage.totals.total_tokens) == (1, 1, 0)


def test_router_error_with_attempts_is_attributed_per_deployment() -> None:
    handler = UsageCallbackHandler(keep_records=True)
    error = AllDeploymentsFailedError(
        "all failed",
        [
            AttemptRecord("primary", RateLimitError("429", provider="openai", model="gpt-4o"), 12.0),
            AttemptRecord("backup", ProviderError("500", provider="mistral", model="mistral-small-2503"), 30.0),
        ],
    )
    run_id = _start(handler)
    handler.on_llm_error(error, run_id=run_id)
    assert [(r.deployment, r.provider, r.error_type, r.latency_ms) for r in handler.records] == [
        ("primary", "openai", "RateLimitError", 12.0),
        ("backup", "mistral", "ProviderError", 30.0),
    ]
    assert handler.totals.errors == 2


def test_events_for_unknown_runs_are_ignored() -> None:
    handler = UsageCallbackHandler()
    import uuid

    handler.on_llm_end(LLMResult(generations=[]), run_id=uuid.uuid4())
    handler.on_llm_error(ValueError("x"), run_id=uuid.uuid4())
    handler.on_llm_new_token("x", run_id=uuid.uuid4())
    handler.on_chain_error(ValueError("x"), run_id=uuid.uuid4())
    assert handler.totals.requests == 0


def test_plain_llm_runs_and_empty_results() -> None:
    handler = UsageCallbackHandler(keep_records=True, prices=PriceTable())
    import uuid

    run_id = uuid.uuid4()
    handler.on_llm_start({}, ["prompt"], run_id=run_id, metadata={"ls_model_name": "gpt-4o", "ls_provider": "openai"})
    handler.on_llm_end(LLMResult(generations=[[]]), run_id=run_id)
    record = handler.records[0]
    assert (record.model, record.provider, record.has_usage, record.cost_usd) == ("gpt-4o", "openai", False, 0.0)


def _start(handler: CallRecorder) -> Any:
    import uuid

    run_id = uuid.uuid4()
    handler.on_chat_model_start({}, [[]], run_id=run_id, metadata={"ls_provider": "gateway", "ls_model_name": "router"})
    return run_id


# ---------------------------------------------------------------------- the real router
_HAVE_ROUTER = importlib.util.find_spec("langchain_multigateway.routing.router") is not None


@pytest.mark.skipif(not _HAVE_ROUTER, reason="RoutingChatModel not available")
def test_real_router_failover_counts_once_with_deployment() -> None:
    from langchain_multigateway.routing.deployment import Deployment
    from langchain_multigateway.routing.router import RoutingChatModel

    bad = scripted("gpt-4o", ProviderError("boom", provider="openai", model="gpt-4o"))
    router = RoutingChatModel(
        deployments=[Deployment(model=bad, name="primary"), Deployment(model=scripted(), name="backup")]
    )
    with track_usage() as usage:
        message = router.invoke("hi")
        chunks = list(router.stream("hi"))
    assert message.response_metadata["deployment"] == "backup"
    assert sum(1 for c in chunks if c.usage_metadata) == 1
    backup = usage.by_deployment()["backup"]
    assert (backup.requests, backup.errors, backup.total_tokens) == (2, 0, 30)
    attempts = message.response_metadata["attempts"]
    # failed attempts are errors without tokens, wherever the router reports them
    assert usage.totals.errors == 2 * (attempts - 1)
    assert usage.totals.total_tokens == 30
    assert usage.calls == 2


@pytest.mark.skipif(not _HAVE_ROUTER, reason="RoutingChatModel not available")
def test_real_router_total_failure_counts_each_attempt() -> None:
    from langchain_multigateway.routing.deployment import Deployment
    from langchain_multigateway.routing.router import RoutingChatModel

    bad = scripted("gpt-4o", ProviderError("boom", provider="openai", model="gpt-4o"))
    router = RoutingChatModel(deployments=[Deployment(model=bad, name="a"), Deployment(model=bad, name="b")])
    with track_usage() as usage, pytest.raises(AllDeploymentsFailedError) as info:
        router.invoke("hi")
    assert usage.totals.errors == len(info.value.attempts)
    assert usage.totals.total_tokens == 0
    assert set(usage.by_deployment()) == {"a", "b"}
