"""Router ↔ usage: failed attempts attributed per deployment (usage, ledger, spans), budgets, breaker gauge."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages.ai import UsageMetadata
from langchain_core.runnables import RunnableLambda
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from prometheus_client import CollectorRegistry
from pydantic import BaseModel

from langchain_multigateway._retry import RetryPolicy
from langchain_multigateway.errors import BudgetExceededError, ProviderError, RateLimitError, StreamInterruptedError
from langchain_multigateway.routing import Deployment, RoutingChatModel
from langchain_multigateway.state import MemoryState
from langchain_multigateway.telemetry import OpenTelemetryCallbackHandler, PrometheusCallbackHandler
from langchain_multigateway.testing import ScriptedChatModel, Step
from langchain_multigateway.usage import Budget, Ledger, LedgerCallbackHandler, PriceTable, atrack_usage, track_usage

USAGE = UsageMetadata(input_tokens=10, output_tokens=5, total_tokens=15)
ONCE = RetryPolicy(max_attempts=1)


def model(name: str, *steps: Any) -> ScriptedChatModel:
    return ScriptedChatModel(
        model=name,
        model_provider="openai",
        steps=list(steps) or [Step(reply="served answer", usage=USAGE)],
        exhausted="cycle",
    )


def failover_router(**kwargs: Any) -> RoutingChatModel:
    """A fails with a 429 (no Retry-After, no retry), B serves."""
    return RoutingChatModel(
        deployments=[
            Deployment(model=model("gpt-4o", RateLimitError("429", provider="openai")), name="A", retry_policy=ONCE),
            Deployment(model=model("gpt-4o-mini"), name="B", retry_policy=ONCE),
        ],
        **kwargs,
    )


def calls(router: RoutingChatModel, name: str) -> list[Any]:
    scripted = router.deployment(name).model
    assert isinstance(scripted, ScriptedChatModel)
    return scripted.calls


# ---------------------------------------------------------------------- 1. attempts per deployment
def _check_usage(usage: Any, served_usage: Any) -> None:
    by_dep = usage.by_deployment()
    assert set(by_dep) == {"A", "B"}
    a, b = by_dep["A"], by_dep["B"]
    assert (a.requests, a.errors, a.total_tokens, a.cost_usd) == (1, 1, 0, 0.0)
    assert (b.requests, b.errors, b.input_tokens, b.output_tokens, b.total_tokens) == (1, 0, 10, 5, 15)
    totals = usage.totals
    assert (totals.input_tokens, totals.output_tokens, totals.total_tokens) == (
        served_usage["input_tokens"],
        served_usage["output_tokens"],
        served_usage["total_tokens"],
    )
    assert (totals.requests, totals.errors) == (2, 1)
    assert usage.calls == 1
    assert "reported only by a router's attempt count" not in usage.summary()
    by_model = usage.by_model()
    assert by_model["gpt-4o"].errors == 1
    assert by_model["gpt-4o-mini"].total_tokens == 15


def _check_ledger(ledger: Ledger) -> None:
    rows = ledger.records()
    assert [(r["deployment"], r["outcome"], r["error_type"], r["total_tokens"]) for r in rows] == [
        ("A", "error", "RateLimitError", 0),
        ("B", "ok", None, 15),
    ]
    assert rows[0]["model"] == "gpt-4o"
    assert rows[1]["model"] == "gpt-4o-mini"


@pytest.mark.parametrize("streamed", [False, True], ids=["invoke", "stream"])
def test_failed_attempt_is_attributed_to_its_deployment(streamed: bool) -> None:
    router = failover_router()
    ledger = Ledger()
    with track_usage(keep_records=True) as usage:
        config: Any = {"callbacks": [LedgerCallbackHandler(ledger)]}
        if streamed:
            final = None
            for chunk in router.stream("hello", config=config):
                final = chunk if final is None else final + chunk
            assert final is not None
            message: Any = final
        else:
            message = router.invoke("hello", config=config)
    assert message.response_metadata["deployment"] == "B"
    assert message.response_metadata["attempts"] == 2
    _check_usage(usage, message.usage_metadata)
    _check_ledger(ledger)
    assert len(calls(router, "A")) == 1
    assert len(calls(router, "B")) == 1


@pytest.mark.parametrize("streamed", [False, True], ids=["ainvoke", "astream"])
async def test_failed_attempt_is_attributed_to_its_deployment_async(streamed: bool) -> None:
    router = failover_router()
    ledger = Ledger()
    async with atrack_usage() as usage:
        config: Any = {"callbacks": [LedgerCallbackHandler(ledger)]}
        if streamed:
            final = None
            async for chunk in router.astream("hello", config=config):
                final = chunk if final is None else final + chunk
            message: Any = final
        else:
            message = await router.ainvoke("hello", config=config)
    assert message.response_metadata["deployment"] == "B"
    _check_usage(usage, message.usage_metadata)
    _check_ledger(ledger)


class _Events(BaseCallbackHandler):
    def __init__(self) -> None:
        self.events: list[tuple[str, Any, Any, dict[str, Any]]] = []

    def on_chat_model_start(self, serialized: Any, messages: Any, *, run_id: Any, **kw: Any) -> None:
        self.events.append(("start", run_id, kw.get("parent_run_id"), dict(kw.get("metadata") or {})))

    def on_llm_end(self, response: Any, *, run_id: Any, **kw: Any) -> None:
        self.events.append(("end", run_id, kw.get("parent_run_id"), {}))

    def on_llm_error(self, error: BaseException, *, run_id: Any, **kw: Any) -> None:
        self.events.append(("error", run_id, kw.get("parent_run_id"), {"error": type(error).__name__}))


@pytest.mark.parametrize("path", ["invoke", "stream", "ainvoke", "astream"])
async def test_attempt_runs_are_children_with_deployment_metadata(path: str) -> None:
    router = failover_router()
    events = _Events()
    config: Any = {"callbacks": [events], "metadata": {"team": "search"}}
    if path == "invoke":
        router.invoke("hello", config=config)
    elif path == "stream":
        list(router.stream("hello", config=config))
    elif path == "ainvoke":
        await router.ainvoke("hello", config=config)
    else:
        [c async for c in router.astream("hello", config=config)]
    kinds = [e[0] for e in events.events]
    assert kinds == ["start", "start", "error", "start", "end", "end"]
    root = events.events[0][1]
    child_a, child_b = events.events[1], events.events[3]
    assert child_a[2] == root
    assert child_b[2] == root
    assert {k: child_a[3][k] for k in ("deployment", "attempt", "ls_model_name", "team")} == {
        "deployment": "A",
        "attempt": 1,
        "ls_model_name": "gpt-4o",
        "team": "search",
    }
    assert (child_b[3]["deployment"], child_b[3]["attempt"], child_b[3]["ls_provider"]) == ("B", 2, "openai")
    assert events.events[2][3] == {"error": "RateLimitError"}
    assert events.events[2][1] == child_a[1]
    assert events.events[4][1] == child_b[1]
    assert events.events[5][1] == root


def test_stream_failure_after_the_first_chunk_counts_once_under_its_deployment() -> None:
    broken = Step(reply="a b c", chunks=["a ", "b ", "c"], error=ProviderError("cut"), fail_after=2, usage=USAGE)
    router = RoutingChatModel(deployments=[Deployment(model=model("gpt-4o-mini", broken), name="B")])
    with track_usage() as usage, pytest.raises(StreamInterruptedError):
        list(router.stream("hi"))
    b = usage.by_deployment()["B"]
    assert (b.requests, b.errors) == (1, 1)
    assert (usage.totals.requests, usage.totals.errors) == (1, 1)


def test_no_handlers_no_child_runs() -> None:
    router = failover_router()
    message = router.invoke("hello")
    assert message.response_metadata["attempts"] == 2
    # a stream without handlers leaves no run-handle in the invocation params either
    assert "_multigateway_stream_run" not in router._get_invocation_params(_multigateway_stream_run=object())


class _Joke(BaseModel):
    setup: str


class _ChainStructured(ScriptedChatModel):
    """Structured output only through its own runnable (no request-level JSON schema)."""

    structured_output_request: ClassVar[Any] = None

    def with_structured_output(self, schema: Any, **kwargs: Any) -> Any:
        def parse(message: Any) -> dict[str, Any]:
            return {"raw": message, "parsed": _Joke.model_validate_json(message.content), "parsing_error": None}

        return self | RunnableLambda(parse)


@pytest.mark.parametrize("asynchronous", [False, True])
async def test_structured_output_attempts_through_a_runnable_are_nested(asynchronous: bool) -> None:
    def chained(name: str, *steps: Any) -> _ChainStructured:
        return _ChainStructured(model=name, model_provider="openai", steps=list(steps), exhausted="cycle")

    router = RoutingChatModel(
        deployments=[
            Deployment(model=chained("gpt-4o", RateLimitError("429")), name="A", retry_policy=ONCE),
            Deployment(model=chained("gpt-4o-mini", Step(reply='{"setup": "x"}', usage=USAGE)), name="B"),
        ]
    )
    events = _Events()
    structured = router.with_structured_output(_Joke)
    with track_usage() as usage:
        if asynchronous:
            out = await structured.ainvoke("joke", config={"callbacks": [events]})
        else:
            out = structured.invoke("joke", config={"callbacks": [events]})
    assert out == _Joke(setup="x")
    by_dep = usage.by_deployment()
    assert (by_dep["A"].requests, by_dep["A"].errors, by_dep["A"].total_tokens) == (1, 1, 0)
    assert (by_dep["B"].requests, by_dep["B"].errors, by_dep["B"].total_tokens) == (1, 0, 15)
    assert usage.calls == 1
    starts = [e for e in events.events if e[0] == "start"]
    assert [e[3].get("deployment") for e in starts] == [None, "A", "B"]  # the router, then each attempt's model


@pytest.fixture
def exporter() -> Iterator[tuple[OpenTelemetryCallbackHandler, InMemorySpanExporter]]:
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    yield OpenTelemetryCallbackHandler(tracer_provider=provider), spans
    provider.shutdown()


def _check_spans(spans: list[ReadableSpan]) -> None:
    (root,) = [s for s in spans if s.parent is None]
    children = sorted((s for s in spans if s.parent is not None), key=lambda s: s.start_time or 0)
    assert len(spans) == 3
    assert len(children) == 2
    assert all(c.parent is not None and c.parent.span_id == root.context.span_id for c in children)
    first, second = children
    assert first.name == "chat gpt-4o"
    assert second.name == "chat gpt-4o-mini"
    assert dict(first.attributes or {})["error.type"] == "RateLimitError"
    assert first.status.status_code == StatusCode.ERROR
    assert "error.type" not in dict(second.attributes or {})
    # The served usage sits on the router's span only, so span-summing tools count it once.
    assert "gen_ai.usage.output_tokens" not in dict(second.attributes or {})
    root_attrs = dict(root.attributes or {})
    assert root_attrs["gen_ai.usage.output_tokens"] == 5
    assert (root_attrs["multigateway.deployment"], root_attrs["multigateway.attempts"]) == ("B", 2)
    assert root.name == "chat router"


@pytest.mark.parametrize("path", ["invoke", "stream", "ainvoke", "astream"])
async def test_router_span_has_one_child_span_per_attempt(
    path: str, exporter: tuple[OpenTelemetryCallbackHandler, InMemorySpanExporter]
) -> None:
    handler, spans = exporter
    router = failover_router()
    config: Any = {"callbacks": [handler]}
    if path == "invoke":
        router.invoke("hello", config=config)
    elif path == "stream":
        list(router.stream("hello", config=config))
    elif path == "ainvoke":
        await router.ainvoke("hello", config=config)
    else:
        [c async for c in router.astream("hello", config=config)]
    _check_spans(list(spans.get_finished_spans()))


# ---------------------------------------------------------------------- 2. budgets
PRICES = PriceTable({})


def priced_router(budget: Budget, mode: str = "raise", **kwargs: Any) -> RoutingChatModel:
    """premium: $10/$30 per M; cheap: $0.1/$0.3 per M; local: free (output price only 0 → table)."""
    return RoutingChatModel(
        deployments=[
            Deployment(model=model("big-model"), name="premium", input_price=10.0, output_price=30.0),
            Deployment(model=model("mid-model"), name="cheap", input_price=0.1, output_price=0.3),
        ],
        budget=budget,
        on_budget_exceeded=mode,
        max_tokens=1000,
        **kwargs,
    )


def test_budget_raise_refuses_before_anything_is_sent() -> None:
    budget = Budget(max_cost_usd=0.01, prices=PRICES)  # premium's worst case: 1000 * $30/M = $0.03
    router = priced_router(budget)
    with pytest.raises(BudgetExceededError) as info:
        router.invoke("hello")
    assert calls(router, "premium") == []
    assert calls(router, "cheap") == []
    assert info.value.kind == "cost"
    assert info.value.estimate is not None
    assert info.value.estimate > 0.03
    assert "premium" in str(info.value)
    assert budget.spent_cost_usd == 0.0
    assert budget.remaining_cost_usd == 0.01


async def test_budget_raise_refuses_before_anything_is_sent_async() -> None:
    budget = Budget(max_cost_usd=0.01, prices=PRICES)
    router = priced_router(budget)
    with pytest.raises(BudgetExceededError):
        await router.ainvoke("hello")
    with pytest.raises(BudgetExceededError):
        [c async for c in router.astream("hello")]
    with pytest.raises(BudgetExceededError):
        list(router.stream("hello"))
    assert calls(router, "premium") == []
    assert calls(router, "cheap") == []


def test_budget_cheaper_skips_to_a_deployment_that_fits_and_records_real_spend() -> None:
    budget = Budget(max_cost_usd=0.01, prices=PRICES)
    router = priced_router(budget, "cheaper")
    message = router.invoke("hello")
    assert message.response_metadata["deployment"] == "cheap"
    assert calls(router, "premium") == []
    assert len(calls(router, "cheap")) == 1
    assert budget.spent_cost_usd == pytest.approx((10 * 0.1 + 5 * 0.3) / 1e6)  # real usage, not the estimate
    assert budget.spent_tokens == 15
    assert budget.remaining_cost_usd == pytest.approx(0.01 - budget.spent_cost_usd)  # no reservation left


async def test_budget_cheaper_async_and_streamed() -> None:
    budget = Budget(max_cost_usd=0.01, prices=PRICES)
    router = priced_router(budget, "cheaper")
    message = await router.ainvoke("hello")
    chunks = [c async for c in router.astream("hello")]
    sync_chunks = list(router.stream("hello"))
    assert message.response_metadata["deployment"] == "cheap"
    assert chunks[-1].response_metadata["deployment"] == "cheap"
    assert sync_chunks[-1].response_metadata["deployment"] == "cheap"
    assert calls(router, "premium") == []
    assert budget.spent_tokens == 45
    assert budget.remaining_cost_usd == pytest.approx(0.01 - 3 * (10 * 0.1 + 5 * 0.3) / 1e6)


def test_budget_cheaper_tries_the_rest_cheapest_first() -> None:
    budget = Budget(max_cost_usd=0.01, prices=PriceTable({"dear": {"input": 1.0, "output": 5.0}}))
    router = RoutingChatModel(
        deployments=[
            Deployment(model=model("big-model"), name="premium", input_price=10.0, output_price=30.0),
            Deployment(model=model("dear"), name="dear"),  # priced from the budget's table
            Deployment(model=model("mid-model"), name="cheap", input_price=0.1, output_price=0.3),
        ],
        budget=budget,
        on_budget_exceeded="cheaper",
        max_tokens=1000,
    )
    assert router.invoke("hello").response_metadata["deployment"] == "cheap"
    assert calls(router, "dear") == []


@pytest.mark.parametrize("asynchronous", [False, True])
async def test_budget_cheaper_raises_with_each_estimate_when_none_fits(asynchronous: bool) -> None:
    budget = Budget(max_cost_usd=0.0001, prices=PRICES)  # cheap's worst case is ~$0.0003
    router = priced_router(budget, "cheaper")
    with pytest.raises(BudgetExceededError) as info:
        if asynchronous:
            await router.ainvoke("hello")
        else:
            router.invoke("hello")
    assert set(info.value.estimates) == {"premium", "cheap"}
    premium, cheap = info.value.estimates["premium"], info.value.estimates["cheap"]
    assert premium is not None
    assert cheap is not None
    assert premium > cheap > 0.0001
    assert "premium" in str(info.value)
    assert "cheap" in str(info.value)
    assert calls(router, "premium") == []
    assert calls(router, "cheap") == []


def test_budget_spend_stops_later_calls() -> None:
    budget = Budget(max_tokens=1020, prices=PRICES)
    router = priced_router(budget)  # 1000 max tokens + 8 prompt tokens per call: 15 spent + 1008 > 1020
    router.invoke("hi")
    assert budget.spent_tokens == 15
    with pytest.raises(BudgetExceededError):
        router.invoke("hi")
    assert len(calls(router, "premium")) == 1


def test_budget_failed_attempt_releases_its_hold_and_failover_is_judged_again() -> None:
    budget = Budget(max_cost_usd=1.0, prices=PRICES)
    router = RoutingChatModel(
        deployments=[
            Deployment(model=model("a", ProviderError("down")), name="A", input_price=1, output_price=1),
            Deployment(model=model("b"), name="B", input_price=1, output_price=1),
        ],
        budget=budget,
        max_tokens=10,
    )
    assert router.invoke("hi").response_metadata["deployment"] == "B"
    assert budget.remaining_cost_usd == pytest.approx(1.0 - 15 / 1e6)


# ---------------------------------------------------------------------- 3. breaker gauge
class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_breaker_gauge_follows_closed_open_half_open_closed() -> None:
    clock = Clock()
    state = MemoryState(failure_threshold=2, cooldown=30.0, clock=clock)
    flaky = model("gpt-4o", ProviderError("down"), ProviderError("down"), Step(reply="back", usage=USAGE))
    flaky.exhausted = "default"
    router = RoutingChatModel(
        deployments=[
            Deployment(model=flaky, name="primary", retry_policy=ONCE),
            Deployment(model=model("gpt-4o-mini"), name="backup", retry_policy=ONCE),
        ],
        state=state,
    )
    registry = CollectorRegistry()
    metrics = PrometheusCallbackHandler(registry=registry)
    seen: list[tuple[str, str]] = []
    router.watch_breakers(metrics.set_breaker_state)
    router.state.add_listener(lambda name, value: seen.append((name, value)))

    def gauge(name: str = "primary") -> float | None:
        return registry.get_sample_value("multigateway_breaker_state", {"deployment": name})

    assert (gauge(), gauge("backup")) == (0, 0)  # closed, reported at once
    router.invoke("1")
    assert gauge() == 0
    router.invoke("2")  # second counted failure opens it
    assert gauge() == 2
    assert router.invoke("3").response_metadata["deployment"] == "backup"
    clock.now += 31
    assert router.health()["primary"].breaker == "half_open"
    assert gauge() == 1
    assert router.invoke("4").response_metadata["deployment"] == "primary"  # the probe succeeds
    assert gauge() == 0
    assert seen == [("primary", "open"), ("primary", "half_open"), ("primary", "closed")]
    router.state.remove_listener(metrics.set_breaker_state)


def test_failed_probe_reopens_and_a_broken_listener_does_not_break_routing() -> None:
    clock = Clock()
    state = MemoryState(failure_threshold=1, cooldown=10.0, clock=clock)
    seen: list[tuple[str, str]] = []

    def broken(name: str, value: str) -> None:
        raise RuntimeError("listener bug")

    state.add_listener(broken)
    state.add_listener(broken)  # once only
    state.add_listener(lambda name, value: seen.append((name, value)))
    router = RoutingChatModel(
        deployments=[
            Deployment(model=model("gpt-4o", ProviderError("down")), name="primary", retry_policy=ONCE),
            Deployment(model=model("gpt-4o-mini"), name="backup", retry_policy=ONCE),
        ],
        state=state,
    )
    router.invoke("1")
    clock.now += 11
    router.invoke("2")  # admitted as the half-open probe, fails: open again
    assert seen == [("primary", "open"), ("primary", "half_open"), ("primary", "open")]
    assert len(state._breaker_listeners) == 2


@pytest.mark.parametrize("asynchronous", [False, True])
async def test_invoke_that_streams_underneath_still_attributes_attempts(asynchronous: bool) -> None:
    router = failover_router(streaming=True)  # invoke() goes through _stream, without a run manager of its own
    ledger = Ledger()
    async with atrack_usage() as usage:
        config: Any = {"callbacks": [LedgerCallbackHandler(ledger)]}
        message = (
            await router.ainvoke("hello", config=config) if asynchronous else router.invoke("hello", config=config)
        )
    assert message.response_metadata["deployment"] == "B"
    _check_usage(usage, message.usage_metadata)
    _check_ledger(ledger)
    assert router.invoke("again").response_metadata["deployment"] == "B"  # and without handlers


def test_cache_key_ignores_the_run_handle() -> None:
    from langchain_core.caches import InMemoryCache

    cache = InMemoryCache()
    router = failover_router(streaming=True, cache=cache)
    with track_usage():
        first_reply = router.invoke("hello")
        second = router.invoke("hello")
    assert second.response_metadata["cached"] is True
    assert second.content == first_reply.content
    assert len(calls(router, "B")) == 1


@pytest.mark.parametrize("path", ["invoke", "stream", "ainvoke", "astream"])
async def test_langchains_own_usage_callback_counts_a_routed_call_once(path: str) -> None:
    """Attempt runs carry no usage: LangChain's handler (and LangSmith) sum the served usage once."""
    from langchain_core.callbacks import get_usage_metadata_callback

    router = failover_router()
    with get_usage_metadata_callback() as core:
        if path == "invoke":
            message: Any = router.invoke("hi")
        elif path == "ainvoke":
            message = await router.ainvoke("hi")
        elif path == "stream":
            chunks = list(router.stream("hi"))
            message = chunks[-1]
        else:
            chunks = [c async for c in router.astream("hi")]
            message = chunks[-1]
    assert message.usage_metadata is not None
    served = message.usage_metadata["total_tokens"]
    assert served == USAGE["total_tokens"]
    assert sum(u["total_tokens"] for u in core.usage_metadata.values()) == served


def test_a_failed_attempt_costs_nothing_if_priced_and_is_unknown_if_not() -> None:
    router = RoutingChatModel(
        deployments=[
            Deployment(model=model("local-unpriced-model", RateLimitError("429")), name="A", retry_policy=ONCE),
            Deployment(model=model("gpt-4o", RateLimitError("429")), name="B", retry_policy=ONCE),
            Deployment(model=model("gpt-4o-mini"), name="C", retry_policy=ONCE),
        ]
    )
    with track_usage() as usage:
        router.invoke("hi")
    by = usage.by_deployment()
    assert (by["A"].errors, by["A"].unpriced) == (1, 1)  # no price known: unpriced, not an invented zero
    assert (by["B"].errors, by["B"].unpriced, by["B"].cost_usd) == (1, 0, 0.0)  # priced, nothing billed
    assert by["C"].cost_usd is not None
    assert by["C"].cost_usd > 0


async def test_streaming_question_skipped_only_when_accounting_handlers_alone_listen() -> None:
    """Under track_usage() the router skips LangChain's per-handler streaming check (accounting
    handlers never stream): an invoke still generates. A streaming handler beside them (an
    ainvoke inside astream_events) is still heard: the routed call streams, and is counted once."""
    router = failover_router()
    with track_usage() as usage:
        router.invoke("plain")
    assert [c.stream for c in calls(router, "B")] == [False]
    assert usage.calls == 1

    async def ask(text: str) -> Any:
        return await router.ainvoke(text)

    async with atrack_usage() as usage:
        events = [e async for e in RunnableLambda(ask).astream_events("events", version="v2")]
    assert [c.stream for c in calls(router, "B")] == [False, True]
    assert any(e["event"] == "on_chat_model_stream" for e in events)
    assert usage.calls == 1


def test_invocation_params_handlers_see_are_langchains() -> None:
    """The router builds its invocation params without LangChain's dict() round trip: same dict."""
    from langchain_core.language_models import BaseChatModel

    router = failover_router()
    expected = BaseChatModel._get_invocation_params(router, stop=["END"], temperature=0.5)
    assert router._get_invocation_params(stop=["END"], temperature=0.5) == expected
    assert expected["_type"] == "multigateway-router"
