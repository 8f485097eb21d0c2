"""Reasoning from a real llama.cpp server, over chat completions and the Responses API, replayed.

Recorded from ``../shared/tools/local-llm`` started with the chat template beside this
file (``LOCAL_LLM_TEMPLATE=tests/integration/test_openai_responses_reasoning.jinja``):
it renders an assistant's ``reasoning_content`` as ``<think>…</think>``, as reasoning
models' templates do, so llama.cpp learns those markers and moves the ``<think>`` text
the model writes into ``reasoning_content`` (chat completions) and into ``reasoning``
output items with ``reasoning_text`` deltas (Responses API). Gemma 3 270M does not think;
it repeats its prompt, so a prompt that opens with ``<think>…</think>`` makes it write
one. The reasoning text is the model's real output, parsed by the real server.

To record: start that server, then run this module with ``--record-mode=once`` and
``MULTIGATEWAY_LIVE_BASE_URL=http://127.0.0.1:PORT/v1``.
"""

from __future__ import annotations

import pytest
from langchain_core.messages import AIMessageChunk, HumanMessage

from langchain_multigateway import OpenAIChatModel
from tests.conftest import RECORDING_API_KEY

pytestmark = pytest.mark.vcr

PROMPT = "<think>I should greet.</think>Hello"


def _model(base_url: str, **kwargs: object) -> OpenAIChatModel:
    params: dict[str, object] = {
        "model": "gemma-3-270m",
        "base_url": base_url,
        "api_key": RECORDING_API_KEY,
        "temperature": 0,
        "max_tokens": 16,
        "first_token_timeout": 300,
        "stream_idle_timeout": 300,
    }
    params.update(kwargs)
    return OpenAIChatModel(**params)  # type: ignore[arg-type]


def _merged(chunks: list[AIMessageChunk]) -> AIMessageChunk:
    full = chunks[0]
    for chunk in chunks[1:]:
        full = full + chunk
    return full


def _reasoning(blocks: list[dict[str, object]] | list[object]) -> list[str]:
    return [
        str(b.get("reasoning"))
        for b in blocks
        if isinstance(b, dict) and b.get("type") == "reasoning" and b.get("reasoning")
    ]


@pytest.mark.parametrize("use_responses_api", [False, True], ids=["chat_completions", "responses"])
def test_reasoning_from_llama_cpp_is_a_reasoning_block(live_base_url: str, use_responses_api: bool) -> None:
    message = _model(live_base_url, use_responses_api=use_responses_api).invoke(PROMPT)
    blocks = message.content_blocks
    assert _reasoning(blocks) == ["I should greet."]  # type: ignore[arg-type]
    assert blocks[0]["type"] == "reasoning"
    assert "I should greet" not in message.text  # the answer holds no reasoning
    assert message.text.strip()
    assert message.usage_metadata is not None
    assert message.usage_metadata["output_tokens"] > 0


@pytest.mark.parametrize("use_responses_api", [False, True], ids=["chat_completions", "responses"])
def test_streamed_reasoning_from_llama_cpp_merges_into_one_block(live_base_url: str, use_responses_api: bool) -> None:
    chunks = list(_model(live_base_url, use_responses_api=use_responses_api).stream(PROMPT))
    assert sum(1 for c in chunks if _reasoning(c.content_blocks)) > 1  # it arrived in pieces
    full = _merged(chunks)
    assert _reasoning(full.content_blocks) == ["I should greet."]  # type: ignore[arg-type]
    assert "I should greet" not in full.text
    assert full.text.strip()
    assert chunks[-1].chunk_position == "last"
    assert full.usage_metadata is not None
    assert full.usage_metadata["input_tokens"] > 0


@pytest.mark.parametrize("use_responses_api", [False, True], ids=["chat_completions", "responses"])
async def test_output_version_v1_streams_reasoning_blocks(live_base_url: str, use_responses_api: bool) -> None:
    llm = _model(live_base_url, use_responses_api=use_responses_api, output_version="v1")
    chunks = [c async for c in llm.astream(PROMPT)]
    full = _merged(chunks)
    assert isinstance(full.content, list)
    kinds = [b.get("type") for b in full.content if isinstance(b, dict)]
    assert kinds[:2] == ["reasoning", "text"]
    assert _reasoning(full.content) == ["I should greet."]


def test_reasoning_answer_goes_back_in_a_second_turn(live_base_url: str) -> None:
    """The Responses reasoning item (its id and text) is sent back and the server takes it."""
    llm = _model(live_base_url, use_responses_api=True)
    first = llm.invoke(PROMPT)
    second = llm.invoke([HumanMessage(PROMPT), first, HumanMessage("Hello again")])
    assert second.response_metadata["status"] == "completed"
    assert second.text.strip()
