"""Call parameters under attack: strict mode decided before the first try, colliding and unknown values
refused before anything is sent, None meaning "not set", and the per-model fit cache under threads.

Real provider models against real HTTP servers on loopback (``tests.loopback``), and the
Messages-API stub of ``test_params`` that answers 400 as the hosted API documents.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from langchain_multigateway.chat_models import _params
from langchain_multigateway.chat_models._params import fit_params, param_fit
from langchain_multigateway.chat_models.anthropic import AnthropicChatModel
from langchain_multigateway.chat_models.ollama import OllamaChatModel
from langchain_multigateway.chat_models.openai import OpenAIChatModel
from langchain_multigateway.routing import Deployment, RoutingChatModel
from langchain_multigateway.routing.policy import RequestPreparationError, UnsupportedParameterError
from tests.loopback import Reply, chat_completion, serve
from tests.unit.test_params import messages_api


def two(openai_url: str, anthropic_url: str, **kwargs: Any) -> RoutingChatModel:
    return RoutingChatModel(
        deployments=[
            Deployment(model=OpenAIChatModel(model="gpt-4.1", base_url=openai_url, api_key="k"), name="openai"),
            Deployment(
                model=AnthropicChatModel(model="claude-sonnet-4-5", base_url=anthropic_url, api_key="k"),
                name="claude",
                priority=1,
            ),
        ],
        **kwargs,
    )


# ---------------------------------------------------------------------- strict_params: before the first try
def test_strict_params_refuses_before_the_first_deployment_is_tried() -> None:
    """The first deployment takes prompt_cache_key, the fallback would drop it: nothing is sent at all."""
    with serve(Reply(503, {"error": {"message": "overloaded"}})) as (url, openai), messages_api() as (aurl, claude):
        router = two(url, aurl, strict_params=True)
        with pytest.raises(UnsupportedParameterError) as info:
            router.invoke("hi", prompt_cache_key="conv-1")
        health = router.health()
    assert openai.requests == []  # before: tried (twice, 503) and only then refused at the fallback
    assert claude.requests == []
    assert info.value.deployment == "claude"
    assert all(h.in_flight == 0 and h.consecutive_failures == 0 for h in health.values())


async def test_strict_params_refuses_up_front_async_and_streamed() -> None:
    with serve(Reply(body=chat_completion("ok"))) as (url, openai), messages_api() as (aurl, _):
        router = two(url, aurl, strict_params=True)
        with pytest.raises(UnsupportedParameterError):
            await router.ainvoke("hi", prompt_cache_key="conv-1")
        with pytest.raises(UnsupportedParameterError):
            list(router.stream("hi", prompt_cache_key="conv-1"))
    assert openai.requests == []


def test_strict_params_counts_only_the_deployments_that_may_serve_the_call() -> None:
    """model= picks the OpenAI deployment: the Anthropic one, out of this call, cannot make it refuse."""
    with serve(Reply(body=chat_completion("ok"))) as (url, openai), messages_api() as (aurl, _):
        answer = two(url, aurl, strict_params=True).invoke("hi", model="gpt-4.1", prompt_cache_key="conv-1")
    assert answer.response_metadata["deployment"] == "openai"
    assert openai.requests[0]["body"]["prompt_cache_key"] == "conv-1"


# ---------------------------------------------------------------------- colliding, unknown, None
def test_max_tokens_and_max_completion_tokens_that_disagree_are_refused_before_sending() -> None:
    with serve(Reply(body=chat_completion("ok"))) as (url, openai), messages_api() as (aurl, _):
        with pytest.raises(RequestPreparationError, match="one limit with two values"):
            two(url, aurl).invoke("hi", max_tokens=10, max_completion_tokens=20)
    assert openai.requests == []


def test_agreeing_limits_are_sent_once_under_the_deployments_own_name() -> None:
    with serve(Reply(body=chat_completion("ok"))) as (url, openai):
        router = RoutingChatModel(deployments=[OpenAIChatModel(model="gpt-4.1", base_url=url, api_key="k")])
        router.invoke("hi", max_tokens=64, max_completion_tokens=64)
    body = openai.requests[0]["body"]
    assert [k for k in body if k in ("max_tokens", "max_completion_tokens")] == ["max_tokens"]
    assert body["max_tokens"] == 64


@pytest.mark.parametrize("effort", ["bogus", "HIGH", 3])
def test_an_unknown_reasoning_effort_is_refused_before_sending(effort: Any) -> None:
    with serve(Reply(body=chat_completion("ok"))) as (url, openai):
        router = RoutingChatModel(deployments=[OpenAIChatModel(model="o3-mini", base_url=url, api_key="k")])
        with pytest.raises(RequestPreparationError, match="reasoning_effort"):
            router.invoke("hi", reasoning_effort=effort)
    assert openai.requests == []


def test_none_values_are_not_set_not_dropped_nor_refused() -> None:
    """LangChain code passes None for "unset": strict mode has nothing to refuse, nothing is reported."""
    with serve(Reply(body=chat_completion("ok"))) as (url, openai), messages_api() as (aurl, _):
        router = two(url, aurl, strict_params=True)  # both deployments may serve it: neither refuses a None
        answer = router.invoke("hi", thinking=None, reasoning_effort=None, prompt_cache_key=None)
    assert "dropped_params" not in answer.response_metadata
    body = openai.requests[0]["body"]
    assert "thinking" not in body
    assert "reasoning_effort" not in body


def test_anthropic_reasoning_effort_none_value_does_not_switch_thinking_off() -> None:
    claude = AnthropicChatModel(model="claude-sonnet-4-5", api_key="k")
    assert fit_params(claude, {"reasoning_effort": None}) == ({}, {})
    assert fit_params(claude, {"reasoning_effort": "none"})[0] == {"thinking": {"type": "disabled"}}


def test_a_non_integer_max_tokens_beside_an_effort_is_no_type_error() -> None:
    claude = AnthropicChatModel(model="claude-sonnet-4-5", api_key="k")
    out, _ = fit_params(claude, {"reasoning_effort": "high", "max_tokens": "5"})
    assert out["thinking"] == {"type": "enabled", "budget_tokens": 16384}


def test_xhigh_effort_translates_for_each_provider() -> None:
    claude = AnthropicChatModel(model="claude-sonnet-4-5", api_key="k")
    assert fit_params(claude, {"reasoning_effort": "xhigh"})[0]["thinking"]["budget_tokens"] == 32768
    ollama = OllamaChatModel(model="qwen3")
    assert fit_params(ollama, {"reasoning_effort": "xhigh"})[0] == {"think": "high"}


# ---------------------------------------------------------------------- the per-model fit cache under threads
def test_param_fit_cache_under_threads_gives_each_model_its_own_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    """Many threads, more models than the cache holds (it clears while others read): each model's fit is its own."""
    monkeypatch.setattr(_params, "_FITS_LIMIT", 8)
    models = [OpenAIChatModel(model=f"gpt-4.1-{i}", api_key="k") for i in range(20)]
    models += [AnthropicChatModel(model=f"claude-{i}", api_key="k") for i in range(20)]
    start = threading.Barrier(8)

    def work(offset: int) -> list[str]:
        start.wait()
        seen = []
        for round_ in range(50):
            model = models[(offset + round_) % len(models)]
            fit = param_fit(model)
            assert fit is not None
            seen.append(f"{model.provider_name}={fit.provider}")
        return seen

    with ThreadPoolExecutor(8) as pool:
        results = [r for rs in pool.map(work, range(8)) for r in rs]
    assert results
    assert all(left == right for left, right in (r.split("=") for r in results))
