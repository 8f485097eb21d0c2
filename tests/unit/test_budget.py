"""Budgets: judged before the call from counted prompt + max_tokens, plus spend and in-flight calls."""

from __future__ import annotations

import asyncio
import logging
import pickle
import uuid
import warnings

import pytest
from langchain_core.messages import HumanMessage
from langchain_core.messages.ai import UsageMetadata

from langchain_multigateway.errors import BudgetExceededError, GatewayError
from langchain_multigateway.testing import ScriptedChatModel
from langchain_multigateway.testing.scripted import Step
from langchain_multigateway.tokens import count_message_tokens
from langchain_multigateway.usage import Budget, PriceTable, track_usage

USAGE = UsageMetadata(input_tokens=10, output_tokens=5, total_tokens=15)


@pytest.fixture(autouse=True)
def _quiet_token_fallback() -> None:
    warnings.filterwarnings("ignore", message="tiktoken encoding", category=RuntimeWarning)


def llm(model: str = "gpt-4o-mini", **kwargs: object) -> ScriptedChatModel:
    return ScriptedChatModel(
        model=model, model_provider="openai", steps=[Step(reply="ok", usage=USAGE)], exhausted="cycle", **kwargs
    )


def test_error_class() -> None:
    error = BudgetExceededError("over", kind="tokens", spent=10, limit=12, estimate=5, budget="b")
    assert isinstance(error, GatewayError)
    assert error.retryable is False
    assert error.is_retryable is False
    again = pickle.loads(pickle.dumps(error))
    assert (again.kind, again.spent, again.limit, again.estimate, again.budget) == ("tokens", 10, 12, 5, "b")


def test_needs_a_limit() -> None:
    with pytest.raises(ValueError, match="max_cost_usd, max_tokens"):
        Budget()


def test_token_budget_refuses_before_sending() -> None:
    budget = Budget(max_tokens=35, name="tiny")
    model = budget.attach(llm())
    assert isinstance(model, ScriptedChatModel)
    model.invoke("hi")
    model.invoke("hi")
    assert budget.spent_tokens == 30
    with pytest.raises(BudgetExceededError) as info:
        model.invoke("hi")
    error = info.value
    assert error.kind == "tokens"
    assert error.limit == 35
    assert error.spent == 30
    assert error.estimate == count_message_tokens([{"role": "user", "content": "hi"}])
    assert "Budget 'tiny'" in str(error)
    assert "token limit of 35" in str(error)
    assert "budget.max_tokens = 70" in str(error)
    # nothing was sent: the model saw two calls
    assert len(model.calls) == 2
    assert budget.remaining_tokens == 5


def test_max_tokens_is_the_worst_case_output() -> None:
    budget = Budget(max_tokens=100)
    model = budget.attach(llm(max_tokens=200))
    with pytest.raises(BudgetExceededError, match=r"max_tokens=200"):
        model.invoke("hi")
    assert budget.attach(llm(max_tokens=50)).invoke("hi").content == "ok"


def test_cost_budget_uses_prices() -> None:
    prices = PriceTable({"gpt-4o-mini": {"input": 1_000_000, "output": 1_000_000}}, include_defaults=False)
    budget = Budget(max_cost_usd=40.0, prices=prices)
    model = budget.attach(llm())
    model.invoke("hi")
    assert budget.spent_cost_usd == pytest.approx(15.0)
    with pytest.raises(BudgetExceededError) as info:
        model.invoke("a much longer prompt " * 5)
    assert info.value.kind == "cost"
    assert "cost limit of $40.0000" in str(info.value)
    assert "budget.max_cost_usd = 80" in str(info.value)
    budget.max_cost_usd = 1000.0
    model.invoke("now it fits")


def test_unknown_price_is_refused_only_when_spend_reached_the_limit() -> None:
    budget = Budget(max_cost_usd=0.01, prices=PriceTable(include_defaults=False))
    model = budget.attach(llm("mystery-model"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.invoke("hi")
    assert budget.spent_cost_usd == 0.0
    budget.record_spend(cost_usd=0.01)
    with pytest.raises(BudgetExceededError, match="unknown cost"):
        model.invoke("hi")
    budget.reset()
    assert budget.remaining_cost_usd == pytest.approx(0.01)


async def test_async_refusal_and_concurrent_reservations() -> None:
    budget = Budget(max_tokens=10 * 12)
    model = budget.attach(
        ScriptedChatModel(
            model="gpt-4o-mini", steps=[Step(reply="ok", usage=USAGE, latency=0.05)], exhausted="cycle", max_tokens=4
        )
    )
    results = await asyncio.gather(*(model.ainvoke("hi") for _ in range(30)), return_exceptions=True)
    served = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, BudgetExceededError)]
    assert len(served) + len(refused) == 30
    # every call reserved prompt + 4 before being sent, so concurrency could not overshoot
    estimate = count_message_tokens([{"role": "user", "content": "hi"}]) + 4
    assert len(served) == (10 * 12) // estimate
    assert budget.spent_tokens == 15 * len(served)
    assert budget.remaining_tokens == 120 - 15 * len(served)


def test_tag_scope_only_judges_tagged_runs() -> None:
    budget = Budget(max_tokens=20, scope="team-a")
    model = budget.attach(llm())
    model.invoke("hi", config={"tags": ["team-a"]})
    for _ in range(3):
        model.invoke("untagged calls pass and are not counted")
    assert budget.spent_tokens == 15
    with pytest.raises(BudgetExceededError):
        model.invoke("hi", config={"tags": ["team-a"]})


def test_tracker_scope_reads_spend_from_track_usage() -> None:
    model = llm()
    with track_usage() as usage:
        budget = Budget(max_tokens=20, scope=usage)
        model.invoke("hi", config={"callbacks": [budget]})
        assert budget.spent_tokens == 15
        with pytest.raises(BudgetExceededError):
            model.invoke("hi", config={"callbacks": [budget]})
    assert budget.spent_cost_usd == usage.total_cost_usd


def test_check_allows_and_estimate_for_routers() -> None:
    budget = Budget(max_cost_usd=0.001, max_tokens=1000)
    messages = [HumanMessage("hello there")]
    tokens, cost = budget.estimate(messages, "gpt-4o-mini", max_tokens=100)
    assert tokens == count_message_tokens([{"role": "user", "content": "hello there"}]) + 100
    assert cost == pytest.approx(((tokens - 100) * 0.15 + 100 * 0.60) / 1e6)
    assert budget.allows(tokens, cost)
    assert not budget.allows(2000, cost)
    assert not budget.allows(10, 0.01)  # a dearer deployment would not fit; a router picks another
    with pytest.raises(BudgetExceededError):
        budget.check(10, 0.01)
    budget.check(10, 0.0001)
    assert budget.estimate([{"role": "user", "content": "x"}], "unpriced-model")[1] is None
    assert budget.estimate(messages, "gpt-4o", deployment="gpt-4o-mini")[1] is not None


def test_attach_keeps_existing_callbacks() -> None:
    from langchain_core.callbacks import CallbackManager, StdOutCallbackHandler

    budget = Budget(max_tokens=100)
    handler = StdOutCallbackHandler()
    with_list = budget.attach(llm().model_copy(update={"callbacks": [handler]}))
    assert with_list.callbacks == [handler, budget]
    with_manager = budget.attach(llm().model_copy(update={"callbacks": CallbackManager([handler])}))
    assert isinstance(with_manager.callbacks, CallbackManager)
    assert budget in with_manager.callbacks.handlers


def test_nested_runs_are_judged_once() -> None:
    from tests.unit.test_usage_callbacks import Wrapper

    budget = Budget(max_tokens=1000)
    router = budget.attach(Wrapper(inners=[llm()]))
    router.invoke("hi")
    assert budget.spent_tokens == 15
    assert budget.remaining_tokens == 985
    assert budget.active_runs() == 0


def test_refused_run_leaves_no_state() -> None:
    budget = Budget(max_tokens=1)
    run_id = uuid.uuid4()
    with pytest.raises(BudgetExceededError):
        budget.on_chat_model_start({}, [[HumanMessage("hello")]], run_id=run_id)
    assert budget.active_runs() == 0
    assert budget.remaining_tokens == 1


def test_a_refusal_logs_no_callback_error_line(caplog: pytest.LogCaptureFixture) -> None:
    budget = Budget(max_tokens=5, name="tiny")
    model = llm()
    with caplog.at_level(logging.WARNING), pytest.raises(BudgetExceededError):
        model.invoke("a prompt longer than five tokens, surely", config={"callbacks": [budget]})
    with caplog.at_level(logging.WARNING), pytest.raises(BudgetExceededError):
        asyncio.run(model.ainvoke("a prompt longer than five tokens, surely", config={"callbacks": [budget]}))
    assert "Error in Budget" not in caplog.text
    assert "callback" not in caplog.text


def test_another_handler_error_is_still_logged(caplog: pytest.LogCaptureFixture) -> None:
    from langchain_core.callbacks import BaseCallbackHandler

    class Broken(BaseCallbackHandler):
        def on_chat_model_start(self, *args: object, **kwargs: object) -> None:
            raise ValueError("broken handler")

    budget = Budget(max_tokens=5)
    with caplog.at_level(logging.WARNING), pytest.raises(BudgetExceededError):
        llm().invoke("a prompt longer than five tokens, surely", config={"callbacks": [Broken(), budget]})
    assert "Error in Broken.on_chat_model_start callback: ValueError('broken handler')" in caplog.text
