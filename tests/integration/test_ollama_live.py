"""Live tier for OllamaChatModel: real calls against a real Ollama server.

Runs only when ``OLLAMA_HOST`` names a server that answers ``GET /api/tags``;
``OLLAMA_LIVE_MODEL`` picks the model (default ``llama3.2``; it must be pulled).
Otherwise every test here is skipped, with the reason saying why.
"""

from __future__ import annotations

import os
from typing import Any

import httpx
import pytest
from langchain_tests.integration_tests import ChatModelIntegrationTests
from pydantic import BaseModel

from langchain_multigateway.chat_models._ollama_format import normalize_host
from langchain_multigateway.chat_models.ollama import OllamaChatModel

LIVE_MODEL = os.environ.get("OLLAMA_LIVE_MODEL", "llama3.2")


def _skip_reason() -> str | None:
    host = os.environ.get("OLLAMA_HOST")
    if not host:
        return "OLLAMA_HOST is not set: no live Ollama server to test against"
    try:
        response = httpx.get(normalize_host(host) + "/api/tags", timeout=3.0)
    except httpx.HTTPError as exc:
        return f"Ollama at {normalize_host(host)} is not reachable: {type(exc).__name__}: {exc}"
    if response.status_code != 200:
        return f"Ollama at {normalize_host(host)} answered GET /api/tags with HTTP {response.status_code}"
    return None


SKIP_REASON = _skip_reason()
pytestmark = [pytest.mark.live, pytest.mark.skipif(SKIP_REASON is not None, reason=SKIP_REASON or "")]


def _llm(**kwargs: Any) -> OllamaChatModel:
    return OllamaChatModel(model=LIVE_MODEL, temperature=0, seed=7, max_tokens=120, **kwargs)


class TestOllamaChatModelLive(ChatModelIntegrationTests):
    @property
    def chat_model_class(self) -> type[OllamaChatModel]:
        return OllamaChatModel

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"model": LIVE_MODEL, "temperature": 0, "seed": 7, "max_tokens": 160}

    @property
    def has_tool_choice(self) -> bool:
        return False  # Ollama cannot force a tool call

    @property
    def supports_json_mode(self) -> bool:
        return True


def test_live_invoke_stream_usage_and_health() -> None:
    llm = _llm()
    assert llm.health_check().ok
    msg = llm.invoke("Say hello in one word.")
    assert isinstance(msg.content, str)
    assert msg.content
    assert msg.usage_metadata is not None
    assert msg.usage_metadata["input_tokens"] > 0
    assert msg.response_metadata["model_provider"] == "ollama"
    assert "total_duration" in msg.response_metadata
    chunks = list(llm.stream("Count from 1 to 3."))
    assert chunks[-1].chunk_position == "last"
    assert chunks[-1].usage_metadata is not None


class _Answer(BaseModel):
    answer: int


def test_live_structured_output_json_schema() -> None:
    result = _llm().with_structured_output(_Answer).invoke("What is 2 + 2? Reply as JSON.")
    assert isinstance(result, _Answer)
