"""The router's per-message token memo (``routing/request.py``): a remembered count is the count.

Each message's count is remembered under a key of what is counted. A ``ChatMessage`` (a custom
role) sends its role, and the role's tokens are counted: two ChatMessages with the same text and
different roles must not share one count.
"""

from __future__ import annotations

from langchain_core.messages import BaseMessage, ChatMessage, ChatMessageChunk, HumanMessage

from langchain_multigateway import Deployment
from langchain_multigateway.chat_models._openai_format import message_to_openai
from langchain_multigateway.routing.request import exact_tokens
from langchain_multigateway.testing import ScriptedChatModel
from langchain_multigateway.tokens import count_message_tokens

MODEL = "gpt-4"  # cl100k_base: exact offline


def _uncounted(messages: list[BaseMessage]) -> int:
    """The count without any memo: the whole conversation in the OpenAI format, counted at once."""
    return count_message_tokens([message_to_openai(m) for m in messages], MODEL)


def _deployment() -> Deployment:
    return Deployment(model=ScriptedChatModel(model_name=MODEL), name="counted")


def test_chat_messages_differing_only_in_role_are_counted_each_with_its_own_role() -> None:
    text = "Please review the argument above for gaps in its reasoning."
    short = ChatMessage(role="critic", content=text)
    long = ChatMessage(role="an external reviewer with a long and unusual role name", content=text)
    deployment = _deployment()

    first = exact_tokens(deployment, [short])  # remembered ...
    second = exact_tokens(deployment, [long])  # ... and must not stand in for this one

    assert first == _uncounted([short])
    assert second == _uncounted([long])
    assert second > first


def test_a_remembered_count_is_the_count_for_each_kind_of_plain_message() -> None:
    deployment = _deployment()
    conversation: list[BaseMessage] = [
        HumanMessage("What is the capital of France?"),
        ChatMessage(role="narrator", content="What is the capital of France?"),
        ChatMessage(role="user", content="What is the capital of France?"),
        ChatMessageChunk(role="a streamed narrator of some length", content="What is the capital of France?"),
        ChatMessageChunk(role="user", content="What is the capital of France?"),
    ]
    for _ in range(2):  # counted, then answered from the memo
        assert exact_tokens(deployment, conversation) == _uncounted(conversation)
