"""A streamed structured-output refusal meets the router's content policy, like a non-streamed one.

OpenAI's Structured Outputs stream a refusal as ``delta.refusal`` pieces and no content
(the documented chat-completions chunk shape), served here by a real HTTP server on
loopback. The router holds a structured stream's chunks until the first piece of the
answer, so a refusal that comes first is decided before anything reached the caller:
``content_policy="raise"`` raises ``ModelRefusalError``, ``"next"`` asks another deployment.
"""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
from langchain_core.exceptions import ModelRefusalError
from langchain_core.messages import AIMessage
from pydantic import BaseModel

from langchain_multigateway.chat_models.openai import OpenAIChatModel
from langchain_multigateway.routing import Deployment, FailoverPolicy, RoutingChatModel
from langchain_multigateway.routing.structured import StructuredSpec
from langchain_multigateway.testing.scripted import ScriptedChatModel
from tests.loopback import Reply, chat_stream, serve

PIECES = ["I'm sorry, ", "I can't help ", "with that."]


class Verdict(BaseModel):
    answer: str


def refusal_stream() -> Reply:
    """Chat-completions chunks of a refusal: ``delta.refusal`` pieces, then the finish and usage chunks."""
    events: list[Any] = [
        {
            "id": "chatcmpl-r",
            "object": "chat.completion.chunk",
            "model": "gpt-4o",
            "choices": [{"index": 0, "delta": {"role": "assistant", "content": None, "refusal": ""}}],
        }
    ]
    events += [
        {
            "id": "chatcmpl-r",
            "object": "chat.completion.chunk",
            "model": "gpt-4o",
            "choices": [{"index": 0, "delta": {"refusal": piece}, "finish_reason": None}],
        }
        for piece in PIECES
    ]
    events += chat_stream([], model="gpt-4o")  # finish_reason "stop", usage, [DONE]
    return Reply(sse=events)


def router(refusing: str, answering: str, **kwargs: Any) -> RoutingChatModel:
    return RoutingChatModel(
        deployments=[
            Deployment(model=OpenAIChatModel(model="gpt-4o", base_url=refusing, api_key="k"), name="refuses"),
            Deployment(
                model=OpenAIChatModel(model="gpt-4o", base_url=answering, api_key="k"), name="answers", priority=1
            ),
        ],
        **kwargs,
    )


def test_openai_streamed_refusal_is_model_refusal_error_with_the_whole_text() -> None:
    with serve(refusal_stream()) as (url, _):
        llm = OpenAIChatModel(model="gpt-4o", base_url=url, api_key="k")
        with pytest.raises(ModelRefusalError) as info:
            list(llm.with_structured_output(Verdict).stream("declined"))
    assert "".join(PIECES) in str(info.value)


def test_router_stream_raises_a_refusal_by_default_and_asks_no_one_else() -> None:
    with serve(refusal_stream()) as (url, _), serve(Reply(sse=chat_stream(['{"answer": "yes"}']))) as (other, seen):
        routed = router(url, other)
        with pytest.raises(ModelRefusalError) as info:
            list(routed.with_structured_output(Verdict).stream("declined"))
        assert seen.requests == []
        health = routed.health()
    assert "".join(PIECES) in str(info.value)
    assert health["refuses"].consecutive_failures == 0
    assert all(h.in_flight == 0 for h in health.values())


def test_router_stream_content_policy_next_fails_a_refusal_over() -> None:
    with serve(refusal_stream()) as (url, _), serve(Reply(sse=chat_stream(['{"answer":', ' "yes"}']))) as (other, seen):
        routed = router(url, other, failover=FailoverPolicy(content_policy="next"))
        parsed = list(routed.with_structured_output(Verdict).stream("declined"))
        health = routed.health()
    assert parsed == [Verdict(answer="yes")]
    assert len(seen.requests) == 1
    assert all(h.in_flight == 0 for h in health.values())


async def test_router_astream_content_policy_next_fails_a_refusal_over() -> None:
    with serve(refusal_stream()) as (url, _), serve(Reply(sse=chat_stream(['{"answer": "yes"}']))) as (other, seen):
        routed = router(url, other, failover=FailoverPolicy(content_policy="next"))
        parsed = [p async for p in routed.with_structured_output(Verdict).astream("declined")]
        chunks = [c async for c in routed.astream("declined")]  # a plain stream: the refusal is the answer
    assert parsed == [Verdict(answer="yes")]
    assert len(seen.requests) == 1
    assert "".join(str(c.additional_kwargs.get("refusal") or "") for c in chunks) == "".join(PIECES)


def test_answer_chunks_pass_through_once_and_in_order() -> None:
    """Held chunks are released, not lost or doubled, once the answer begins."""
    with serve(Reply(sse=chat_stream(['{"answer"', ': "y', 'es"}']))) as (url, _):
        routed = router(url, url)
        spec = StructuredSpec(schema=Verdict, method="json_schema", strict=None)
        chunks = list(routed.bind(structured_output=spec).stream("fine"))
    assert "".join(c.text for c in chunks) == '{"answer": "yes"}'
    assert [c.chunk_position for c in chunks].count("last") == 1
    assert chunks[-1].response_metadata["deployment"] == "refuses"  # the first deployment served it


# ---------------------------------------------------------------------- a model without the router's hooks
class OwnStructuredOutput(ScriptedChatModel):
    """A model of another package: the router asks it through its own with_structured_output."""

    structured_output_request: ClassVar[None] = None  # type: ignore[assignment]


@pytest.mark.parametrize("streamed", [False, True])
def test_a_refusal_through_a_models_own_structured_output_meets_the_content_policy(streamed: bool) -> None:
    refusal = AIMessage(content="", additional_kwargs={"refusal": "I can't help with that."})
    routed = RoutingChatModel(
        deployments=[
            Deployment(model=OwnStructuredOutput(model_name="a", steps=[refusal], exhausted="cycle"), name="a"),
            Deployment(model=OwnStructuredOutput(model_name="b", steps=['{"answer": "yes"}']), name="b", priority=1),
        ],
        failover=FailoverPolicy(content_policy="next"),
    )
    structured = routed.with_structured_output(Verdict)
    out = list(structured.stream("declined")) if streamed else [structured.invoke("declined")]
    assert out == [Verdict(answer="yes")]
    assert all(h.in_flight == 0 for h in routed.health().values())


async def test_a_refusal_through_a_models_own_structured_output_async() -> None:
    refusal = AIMessage(content="", additional_kwargs={"refusal": "I can't help with that."})
    routed = RoutingChatModel(
        deployments=[
            Deployment(model=OwnStructuredOutput(model_name="a", steps=[refusal], exhausted="cycle"), name="a"),
            Deployment(model=OwnStructuredOutput(model_name="b", steps=['{"answer": "yes"}']), name="b", priority=1),
        ],
        failover=FailoverPolicy(content_policy="next"),
    )
    assert await routed.with_structured_output(Verdict).ainvoke("declined") == Verdict(answer="yes")


def anthropic_refusal_stream() -> Reply:
    """Messages API SSE of a refusal: no content block, ``stop_reason: "refusal"`` in ``message_delta``."""
    start = {
        "id": "msg_r",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": 10, "output_tokens": 1},
    }
    return Reply(
        sse=[
            {"type": "message_start", "message": start},
            {"type": "message_delta", "delta": {"stop_reason": "refusal"}, "usage": {"output_tokens": 1}},
            {"type": "message_stop"},
        ]
    )


def test_anthropic_streamed_stop_reason_refusal_fails_over_under_next() -> None:
    from langchain_multigateway.chat_models.anthropic import AnthropicChatModel

    with (
        serve(anthropic_refusal_stream()) as (url, _),
        serve(Reply(sse=chat_stream(['{"answer": "ok"}']))) as (
            other,
            seen,
        ),
    ):
        claude = AnthropicChatModel(model="claude-sonnet-4-5", base_url=url.removesuffix("/v1"), api_key="k")
        routed = RoutingChatModel(
            deployments=[
                Deployment(model=claude, name="claude"),
                Deployment(
                    model=OpenAIChatModel(model="gpt-4o", base_url=other, api_key="k"), name="answers", priority=1
                ),
            ],
            failover=FailoverPolicy(content_policy="next"),
        )
        parsed = list(routed.with_structured_output(Verdict).stream("declined"))
        with pytest.raises(ModelRefusalError, match="stop_reason=refusal"):
            list(claude.with_structured_output(Verdict).stream("declined"))
    assert parsed == [Verdict(answer="ok")]
    assert len(seen.requests) == 1
