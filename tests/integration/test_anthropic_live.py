"""Live tier for AnthropicChatModel: real calls against the Messages API.

Runs only when ``ANTHROPIC_API_KEY`` is set and the API (``ANTHROPIC_BASE_URL``
or https://api.anthropic.com) can be reached; ``ANTHROPIC_LIVE_MODEL`` picks
the model (default ``claude-haiku-4-5``). Otherwise every test is skipped,
with the reason saying why. These calls cost (a little) money.
"""

from __future__ import annotations

import os
from typing import Any

import httpx
import pytest
from langchain_tests.integration_tests import ChatModelIntegrationTests
from pydantic import BaseModel

from langchain_multigateway.chat_models.anthropic import DEFAULT_BASE_URL, AnthropicChatModel

LIVE_MODEL = os.environ.get("ANTHROPIC_LIVE_MODEL", "claude-haiku-4-5")


def _skip_reason() -> str | None:
    if not os.environ.get("ANTHROPIC_API_KEY"):
        return "ANTHROPIC_API_KEY is not set: no live Anthropic API to test against"
    base = os.environ.get("ANTHROPIC_BASE_URL") or DEFAULT_BASE_URL
    try:
        # Reachability only (no key sent): any HTTP answer means the network path works.
        httpx.get(base.rstrip("/").removesuffix("/v1") + "/v1/models", timeout=5.0)
    except httpx.HTTPError as exc:
        return f"the Anthropic API at {base} is not reachable: {type(exc).__name__}: {exc}"
    return None


SKIP_REASON = _skip_reason()
pytestmark = [pytest.mark.live, pytest.mark.skipif(SKIP_REASON is not None, reason=SKIP_REASON or "")]


class TestAnthropicChatModelLive(ChatModelIntegrationTests):
    @property
    def chat_model_class(self) -> type[AnthropicChatModel]:
        return AnthropicChatModel

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"model": LIVE_MODEL, "temperature": 0, "max_tokens": 256}

    @property
    def supports_image_inputs(self) -> bool:
        return True

    @property
    def supports_image_urls(self) -> bool:
        return True


class _Answer(BaseModel):
    answer: int


def test_live_invoke_stream_tools_and_health() -> None:
    llm = AnthropicChatModel(model=LIVE_MODEL, temperature=0, max_tokens=200)
    assert llm.health_check().ok
    msg = llm.invoke([("system", "Be terse."), ("human", "Say hello in one word.")])
    assert msg.content
    assert msg.usage_metadata is not None
    assert msg.usage_metadata["input_tokens"] > 0
    chunks = list(llm.stream("Count from 1 to 3."))
    assert chunks[-1].chunk_position == "last"
    assert chunks[-1].response_metadata["stop_reason"] == "end_turn"
    result = llm.with_structured_output(_Answer).invoke("What is 2 + 2?")
    assert result == _Answer(answer=4)
