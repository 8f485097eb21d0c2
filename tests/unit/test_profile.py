"""RoutingChatModel.profile: what every deployment shares, read by LangChain's own profile readers."""

from __future__ import annotations

from typing import Any

import pytest
from langchain.agents.middleware import SummarizationMiddleware
from langchain_core.messages import AIMessage, HumanMessage, RemoveMessage

from langchain_multigateway.chat_models.anthropic import AnthropicChatModel
from langchain_multigateway.chat_models.openai import OpenAIChatModel
from langchain_multigateway.routing import Capabilities, Deployment, RoutingChatModel
from langchain_multigateway.testing import ScriptedChatModel


def scripted(name: str, **kwargs: Any) -> ScriptedChatModel:
    return ScriptedChatModel(model=name, **kwargs)


def test_the_smallest_windows_and_only_shared_capabilities() -> None:
    router = RoutingChatModel(
        deployments=[
            Deployment(model=OpenAIChatModel(model="gpt-4.1", api_key="k"), name="wide"),
            Deployment(model=AnthropicChatModel(model="claude-sonnet-4-5", api_key="k"), name="claude"),
            Deployment(model=OpenAIChatModel(model="gpt-4o-mini", api_key="k"), name="mini"),
        ]
    )
    profile = router.profile
    assert profile is not None
    assert profile["max_input_tokens"] == 128_000  # gpt-4o-mini's, the smallest
    assert profile["max_output_tokens"] == 16_384
    assert profile["tool_calling"] is True
    assert profile["image_inputs"] is True
    assert profile["pdf_inputs"] is True
    assert profile["audio_inputs"] is False  # none of them hears
    assert profile["reasoning_output"] is False  # Claude reasons, the GPTs here do not


def test_one_deployment_without_tools_turns_tool_calling_off() -> None:
    router = RoutingChatModel(
        deployments=[
            Deployment(model=OpenAIChatModel(model="gpt-4o", api_key="k"), name="a"),
            Deployment(
                model=OpenAIChatModel(model="gpt-4o", api_key="k"),
                name="b",
                capabilities=Capabilities(tools=False),
                context_window=8_000,
            ),
        ]
    )
    assert router.profile is not None
    assert router.profile["tool_calling"] is False
    assert router.profile["max_input_tokens"] == 8_000  # what the deployment states beats its model's profile


def test_unknown_capabilities_are_left_out_not_guessed() -> None:
    router = RoutingChatModel(
        deployments=[
            Deployment(model=scripted("x"), context_window=4_000),
            Deployment(model=OpenAIChatModel(model="gpt-4o", api_key="k"), name="known"),
        ]
    )
    profile = router.profile
    assert profile is not None
    assert profile["max_input_tokens"] == 4_000
    assert "image_inputs" not in profile  # the scripted model says nothing about images
    assert "pdf_inputs" not in profile
    unknown = RoutingChatModel(deployments=[scripted("y")]).profile or {}
    assert "max_input_tokens" not in unknown  # no window stated anywhere: none promised


def test_a_given_profile_wins() -> None:
    router = RoutingChatModel(deployments=[scripted("x")], profile={"max_input_tokens": 1234})
    assert router.profile == {"max_input_tokens": 1234}


def long_history(turns: int, words: int = 150) -> list[Any]:
    messages: list[Any] = []
    for i in range(turns):
        messages.append(HumanMessage(f"question {i} " + "word " * words, id=f"h{i}"))
        messages.append(AIMessage(f"answer {i} " + "word " * words, id=f"a{i}"))
    return messages


def test_summarization_middleware_triggers_at_a_fraction_of_the_smallest_window() -> None:
    small, big = (scripted(name, steps=["SUMMARY OF THE EARLIER TALK"]) for name in ("small", "big"))
    router = RoutingChatModel(
        deployments=[
            Deployment(model=small, name="small", context_window=4_000),
            Deployment(model=big, name="big", context_window=100_000, priority=1),
        ]
    )
    middleware = SummarizationMiddleware(model=router, trigger=("fraction", 0.8), keep=("messages", 2))

    short = {"messages": long_history(2)}  # about 600 tokens: under 0.8 x 4000
    assert middleware.before_model(short, None) is None  # type: ignore[arg-type]

    update = middleware.before_model({"messages": long_history(12)}, None)  # type: ignore[arg-type]
    assert update is not None
    messages = update["messages"]
    assert isinstance(messages[0], RemoveMessage)
    assert "SUMMARY OF THE EARLIER TALK" in messages[1].text
    assert [m.id for m in messages[-2:]] == ["h11", "a11"]  # the kept tail
    assert len(small.calls) + len(big.calls) == 1  # the summary was written through the router


def test_summarization_middleware_refuses_a_router_without_known_windows() -> None:
    """The contract the profile fulfils: without it a fractional trigger cannot work."""
    with pytest.raises(ValueError, match="Model profile information is required"):
        SummarizationMiddleware(model=RoutingChatModel(deployments=[scripted("y")]), trigger=("fraction", 0.8))
