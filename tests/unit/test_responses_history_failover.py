"""A Responses-mode conversation failing over to another provider mid-conversation.

An earlier OpenAI Responses answer leaves blocks in the history that other APIs do not
know: ``refusal`` (what the assistant said when it refused), built-in tool items such as
``web_search_call`` (run by OpenAI, their result is in the answer's text), reasoning items
and ``function_call`` blocks. Each request builder must turn them into something its API
takes — never pass them through for the API to reject, never raise on them.
"""

from __future__ import annotations

from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage

from langchain_multigateway import OpenAIChatModel, RoutingChatModel
from langchain_multigateway.chat_models._anthropic_format import messages_to_anthropic
from langchain_multigateway.chat_models._ollama_format import messages_to_ollama
from langchain_multigateway.chat_models._openai_format import messages_to_openai
from langchain_multigateway.chat_models._responses_format import messages_to_responses
from langchain_multigateway.routing import Deployment
from tests.loopback import Reply, chat_completion, serve

REFUSAL = "I can't help with that."


def _history() -> list[BaseMessage]:
    refused = AIMessage(
        content=[
            {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "think"}]},
            {"type": "refusal", "refusal": REFUSAL, "id": "msg_1"},
        ],
        response_metadata={"id": "resp_1", "model_provider": "openai"},
    )
    searched = AIMessage(
        content=[
            {"type": "web_search_call", "id": "ws_1", "status": "completed", "action": {"query": "q"}},
            {"type": "text", "text": "Found it.", "id": "msg_2"},
            {"type": "function_call", "call_id": "call_1", "name": "lookup", "arguments": "{}", "id": "fc_1"},
        ],
        tool_calls=[{"name": "lookup", "args": {}, "id": "call_1"}],
        response_metadata={"id": "resp_2", "model_provider": "openai"},
    )
    return [
        HumanMessage("hi"),
        refused,
        HumanMessage("something else then"),
        searched,
        ToolMessage("ok", tool_call_id="call_1"),
        HumanMessage("go on"),
    ]


def _types(content: Any) -> list[str]:
    return [] if isinstance(content, str) else [block["type"] for block in content]


def test_anthropic_gets_refusal_as_text_and_no_openai_items() -> None:
    _, messages = messages_to_anthropic(_history())
    assert messages[1] == {"role": "assistant", "content": REFUSAL}
    assert _types(messages[3]["content"]) == ["text", "tool_use"]


def test_ollama_gets_refusal_as_text_and_no_openai_items() -> None:
    messages = messages_to_ollama(_history())
    assert messages[1] == {"role": "assistant", "content": REFUSAL}
    assert messages[3]["content"] == "Found it."
    assert messages[3]["tool_calls"] == [{"function": {"name": "lookup", "arguments": {}}}]


def test_chat_completions_gets_refusal_as_text() -> None:
    messages = messages_to_openai(_history())
    assert messages[1] == {"role": "assistant", "content": REFUSAL}
    assert messages[3]["content"] == "Found it."
    assert [call["id"] for call in messages[3]["tool_calls"]] == ["call_1"]


def test_responses_gets_refusal_back_as_assistant_text() -> None:
    items = messages_to_responses(_history())
    said = [item for item in items if item.get("role") == "assistant"]
    assert said[0]["content"] == REFUSAL
    assert [item["type"] for item in items if item.get("type") != "message"] == [
        "reasoning",
        "function_call",
        "function_call_output",
    ]


def test_router_failover_from_responses_sends_whole_history_not_previous_response_id() -> None:
    """previous_response_id names a conversation one Responses server stored: the chat-completions
    deployment that takes over never saw it, so it gets the whole history instead (and is told)."""
    history = _history()
    with (
        serve(Reply(500, {"error": {"message": "down"}})) as (responses_url, _),
        serve(Reply(body=chat_completion("Sunny."))) as (chat_url, chat),
    ):
        first = OpenAIChatModel(
            model="o4-mini", base_url=responses_url, api_key="sk-x", use_responses_api=True, max_retries=0
        )
        second = OpenAIChatModel(model="gpt-4o", base_url=chat_url, api_key="sk-x", max_retries=0)
        router = RoutingChatModel(deployments=[Deployment(model=first, name="a"), Deployment(model=second, name="b")])
        answer = router.invoke(history, previous_response_id="resp_2")
    assert answer.text == "Sunny."
    assert chat.requests[-1]["path"] == "/v1/chat/completions"
    sent = chat.requests[-1]["body"]
    assert "previous_response_id" not in sent
    assert [m["role"] for m in sent["messages"]] == ["user", "assistant", "user", "assistant", "tool", "user"]
    assert "previous_response_id" in answer.response_metadata["dropped_params"]
