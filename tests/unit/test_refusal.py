"""A model declining structured output is LangChain's ModelRefusalError; the router applies its content policy.

The refusals are the documented wire shapes, served by real HTTP servers on loopback:
OpenAI's ``message.refusal`` (Structured Outputs) and Anthropic's ``stop_reason: "refusal"``.
"""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.exceptions import ModelRefusalError
from pydantic import BaseModel

from langchain_multigateway.chat_models.anthropic import AnthropicChatModel
from langchain_multigateway.chat_models.openai import OpenAIChatModel
from langchain_multigateway.routing import Deployment, FailoverPolicy, RoutingChatModel
from tests.loopback import Reply, chat_completion, serve

REFUSAL = "I'm sorry, I can't help with that request."


class Verdict(BaseModel):
    answer: str


def openai_refusal() -> dict[str, Any]:
    body = chat_completion("")
    body["choices"][0]["message"] = {"role": "assistant", "content": None, "refusal": REFUSAL}
    return body


def test_openai_refusal_raises_model_refusal_error_with_the_raw_message() -> None:
    with serve(Reply(body=openai_refusal())) as (url, _):
        llm = OpenAIChatModel(model="gpt-4o", base_url=url, api_key="k")
        with pytest.raises(ModelRefusalError) as info:
            llm.with_structured_output(Verdict).invoke("something it declines")
    assert REFUSAL in str(info.value)
    raw = info.value.raw_message
    assert raw is not None
    assert raw.additional_kwargs["refusal"] == REFUSAL


def test_include_raw_reports_the_refusal_as_the_parsing_error() -> None:
    with serve(Reply(body=openai_refusal())) as (url, _):
        llm = OpenAIChatModel(model="gpt-4o", base_url=url, api_key="k")
        out = llm.with_structured_output(Verdict, include_raw=True).invoke("something it declines")
    assert out["parsed"] is None
    assert isinstance(out["parsing_error"], ModelRefusalError)
    assert out["raw"].additional_kwargs["refusal"] == REFUSAL


def test_anthropic_stop_reason_refusal_is_a_refusal_too() -> None:
    message = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": [],
        "stop_reason": "refusal",
        "stop_sequence": None,
        "usage": {"input_tokens": 10, "output_tokens": 0},
    }
    with serve(Reply(body=message)) as (url, _):
        claude = AnthropicChatModel(model="claude-sonnet-4-5", base_url=url.removesuffix("/v1"), api_key="k")
        with pytest.raises(ModelRefusalError, match="stop_reason=refusal"):
            claude.with_structured_output(Verdict, method="function_calling").invoke("declined")


def two_deployments(refusing_url: str, answering_url: str, **kwargs: Any) -> RoutingChatModel:
    return RoutingChatModel(
        deployments=[
            Deployment(model=OpenAIChatModel(model="gpt-4o", base_url=refusing_url, api_key="k"), name="refuses"),
            Deployment(
                model=OpenAIChatModel(model="gpt-4o", base_url=answering_url, api_key="k"), name="answers", priority=1
            ),
        ],
        **kwargs,
    )


def test_router_raises_a_refusal_by_default_and_asks_no_one_else() -> None:
    with (
        serve(Reply(body=openai_refusal())) as (url, _),
        serve(Reply(body=chat_completion('{"answer": "yes"}'))) as (
            other,
            answering,
        ),
    ):
        router = two_deployments(url, other)
        with pytest.raises(ModelRefusalError) as info:
            router.with_structured_output(Verdict).invoke("something it declines")
        assert answering.requests == []  # the refused content went to no other provider
        health = router.health()["refuses"]
    assert REFUSAL in str(info.value)
    assert health.consecutive_failures == 0  # a refusal is about the request, not the deployment


def test_router_content_policy_next_asks_another_deployment() -> None:
    with (
        serve(Reply(body=openai_refusal())) as (url, _),
        serve(Reply(body=chat_completion('{"answer": "yes"}'))) as (
            other,
            answering,
        ),
    ):
        router = two_deployments(url, other, failover=FailoverPolicy(content_policy="next"))
        out = router.with_structured_output(Verdict, include_raw=True).invoke("something the first declines")
    assert out["parsed"] == Verdict(answer="yes")
    meta = out["raw"].response_metadata
    assert meta["deployment"] == "answers"
    assert meta["failed_attempts"][0]["deployment"] == "refuses"
    assert len(answering.requests) == 1


async def test_router_refusal_async() -> None:
    with serve(Reply(body=openai_refusal())) as (url, _), serve(Reply(body=chat_completion("{}"))) as (other, _):
        with pytest.raises(ModelRefusalError):
            await two_deployments(url, other).with_structured_output(Verdict).ainvoke("declined")


def test_a_plain_call_is_not_turned_into_an_error() -> None:
    """Outside structured output the refusal is the answer: returned as the message it is."""
    with serve(Reply(body=openai_refusal())) as (url, _):
        answer = two_deployments(url, url).invoke("declined")
    assert answer.additional_kwargs["refusal"] == REFUSAL
