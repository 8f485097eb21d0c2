"""The response cache's parts on their own: canonical messages, vector index edge cases, the semantic settings."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from langchain_core.messages import AIMessage, ChatMessage, HumanMessage, SystemMessage, ToolMessage

from langchain_multigateway.cache.keys import canonical_messages, request_keys
from langchain_multigateway.cache.settings import CacheSettingsError, cache_from_settings
from langchain_multigateway.cache.vectors import VectorIndex


def test_canonical_messages_keep_what_changes_the_answer_and_drop_ids() -> None:
    call = {"name": "lookup", "args": {"b": 2, "a": 1}, "id": "call_1"}
    messages = [
        SystemMessage("be terse"),
        HumanMessage([{"type": "text", "text": "hi"}, "there"], name="ann", id="msg-1"),
        AIMessage("", tool_calls=[call], id="run-9", response_metadata={"x": 1}),
        ToolMessage("42", tool_call_id="call_1"),
        ChatMessage("note", role="critic"),
    ]
    found = canonical_messages(messages)
    assert found[1] == {"type": "human", "content": [{"text": "hi", "type": "text"}, "there"], "name": "ann"}
    assert found[2]["tool_calls"] == [{"name": "lookup", "args": {"a": 1, "b": 2}, "id": "call_1"}]
    assert found[3]["tool_call_id"] == "call_1"
    assert found[4]["role"] == "critic"
    assert "id" not in found[1]
    assert "response_metadata" not in found[2]
    # a message's id or metadata never changes a key; its content does
    again = [m.model_copy(update={"id": "other"}) for m in messages]
    assert request_keys("s", again, params={}) == request_keys("s", messages, params={})
    assert request_keys("s", [*messages[:-1], ChatMessage("note", role="judge")], params={}) != request_keys(
        "s", messages, params={}
    )


def test_odd_parameter_values_still_make_stable_keys() -> None:
    def tool(city: str) -> str:
        """Weather in a city."""
        return city

    params: dict[str, Any] = {"logit_bias": {"2": 1, "1": -1}, "modalities": {"text"}, "seed": 7}
    first = request_keys("s", [HumanMessage("hi")], params=params, tools=[tool], response_format=object)
    second = request_keys("s", [HumanMessage("hi")], params=dict(params), tools=[tool], response_format=object)
    assert first == second
    assert first.text == "hi"


def test_only_a_user_turn_with_text_is_matched_semantically() -> None:
    assert request_keys("s", [HumanMessage("question")], params={}).text == "question"
    tool_turn = [
        HumanMessage("q"),
        AIMessage("", tool_calls=[{"name": "f", "args": {}, "id": "1"}]),
        ToolMessage("r", tool_call_id="1"),
    ]
    assert request_keys("s", tool_turn, params={}).text == ""
    assert request_keys("s", [HumanMessage("   ")], params={}).text == ""
    two = request_keys("s", [HumanMessage("a"), AIMessage("b"), HumanMessage("c")], params={}, last_turns=2)
    assert two.text == "ai: b\nhuman: c"


def test_vector_index_refuses_what_it_cannot_compare() -> None:
    index = VectorIndex()
    index.add("shape", 1, [0.0, 0.0, 0.0])  # a zero vector has no direction
    index.add("shape", 2, [float("nan"), 1.0, 0.0])
    index.add("shape", 3, "not a vector")
    assert index.size == 0
    index.add("shape", 4, [1.0, 0.0, 0.0])
    index.add("shape", 5, [1.0, 0.0])  # another dimension than the shape's
    index.add("shape", 4, [0.0, 1.0, 0.0])  # an id already held
    assert index.size == 1
    assert index.search("shape", [1.0, 0.0], 0.5) == []
    assert index.search("shape", [0.0, 0.0, 0.0], 0.5) == []
    assert index.search("other", [1.0, 0.0, 0.0], 0.5) == []
    assert index.search("shape", np.array([2.0, 0.0, 0.0]), 0.99) == [(4, pytest.approx(1.0))]
    index.drop("shape", 4)
    assert index.search("shape", [1.0, 0.0, 0.0], 0.5) == []
    index.add_many("shape", [6, 7], [[1.0, 0.0, 0.0]])  # rows and ids disagree: nothing added
    for i in range(40):  # grows past its first allocation
        index.add("shape", 100 + i, [1.0, float(i), 0.0])
    assert index.search("shape", [1.0, 0.0, 0.0], 0.99)[0][0] == 100
    index.forget("shape")
    assert index.size == 0
    index.add("shape", 1, [1.0, 0.0, 0.0])
    index.clear()
    assert index.search("shape", [1.0, 0.0, 0.0], 0.5) == []


def test_semantic_settings_build_embeddings_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-settings-test-" + "0" * 20)
    cache = cache_from_settings(
        {"semantic": {"embeddings": "openai:text-embedding-3-small", "threshold": 0.95, "last_turns": 2}}
    )
    assert cache.semantic is not None
    assert (cache.semantic.threshold, cache.semantic.last_turns) == (0.95, 2)
    assert type(cache.semantic.embeddings).__name__ == "OpenAIEmbeddings"
    assert "sk-settings-test" not in repr(cache)


@pytest.mark.parametrize(
    ("semantic", "key", "what"),
    [
        ({"embeddings": "nosuchprovider:model"}, "semantic.embeddings", "cannot build"),
        ({"embeddings": "openai:x", "treshold": 0.9}, "semantic.treshold", "unknown key"),
        ({"embeddings": "openai:x", "threshold": 1.5}, "semantic.threshold", "less than or equal to 1"),
    ],
)
def test_semantic_settings_mistakes(
    monkeypatch: pytest.MonkeyPatch, semantic: dict[str, Any], key: str, what: str
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-settings-test-" + "0" * 20)
    with pytest.raises(CacheSettingsError, match=what) as info:
        cache_from_settings({"semantic": semantic})
    assert info.value.key == key


def test_cache_true_means_the_defaults() -> None:
    cache = cache_from_settings(True)
    assert cache.ttl == 86400
    assert cache.semantic is None


def test_the_cache_is_exported_from_the_package_lazily() -> None:
    import subprocess
    import sys

    code = (
        "import sys, langchain_multigateway as m; "
        "assert 'langchain_multigateway.cache.policy' not in sys.modules; "
        "from langchain_multigateway import CacheScopeError, GatewayCache, SemanticCache; "
        "from langchain_multigateway.cache import policy; "
        "assert (GatewayCache, SemanticCache, CacheScopeError) == "
        "(policy.GatewayCache, policy.SemanticCache, policy.CacheScopeError); "
        "assert {'GatewayCache', 'SemanticCache', 'CacheScopeError'} <= set(m.__all__)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_what_a_provider_sends_beyond_the_content_changes_the_key() -> None:
    """Messages that serialized alike before but are sent differently: a tool result marked an error
    (Anthropic's is_error), a system prompt sent as the developer role (Responses API), an assistant
    turn's thinking sent back (Ollama)."""
    call = {"name": "lookup", "args": {}, "id": "call_1"}
    history: list[Any] = [HumanMessage("look it up"), AIMessage("", tool_calls=[call])]
    ok = request_keys("s", [*history, ToolMessage("none", tool_call_id="call_1")], params={})
    failed = request_keys("s", [*history, ToolMessage("none", tool_call_id="call_1", status="error")], params={})
    assert ok.exact != failed.exact
    system = request_keys("s", [SystemMessage("be terse"), HumanMessage("hi")], params={})
    developer = SystemMessage("be terse", additional_kwargs={"__openai_role__": "developer"})
    assert request_keys("s", [developer, HumanMessage("hi")], params={}).exact != system.exact
    thought = AIMessage("4", additional_kwargs={"reasoning_content": "2+2 is 4"})
    plain = request_keys("s", [HumanMessage("2+2?"), AIMessage("4"), HumanMessage("and 3+3?")], params={})
    assert request_keys("s", [HumanMessage("2+2?"), thought, HumanMessage("and 3+3?")], params={}).exact != plain.exact
    noise = AIMessage("4", additional_kwargs={"refusal": None, "parsed": None})  # the provider's, never sent
    assert request_keys("s", [HumanMessage("2+2?"), noise, HumanMessage("and 3+3?")], params={}).exact == plain.exact
