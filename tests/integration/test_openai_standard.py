"""LangChain's standard integration tests for OpenAIChatModel, replayed from cassettes.

The cassettes were recorded against llama.cpp's OpenAI-compatible server running
Gemma 3 270M on loopback (``../shared/tools/local-llm start``). Capability flags
say what that server really did while recording.
"""

from __future__ import annotations

from typing import Any

import pytest
from langchain_tests.integration_tests import ChatModelIntegrationTests

from langchain_multigateway import OpenAIChatModel
from tests.conftest import LIVE_BASE_URL, RECORDING_API_KEY

pytestmark = pytest.mark.vcr


class TestOpenAIChatModelIntegration(ChatModelIntegrationTests):
    @property
    def chat_model_class(self) -> type[OpenAIChatModel]:
        return OpenAIChatModel

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {
            "model": "gemma-3-270m",
            "base_url": LIVE_BASE_URL,
            "api_key": RECORDING_API_KEY,
            "temperature": 0,
            "seed": 7,
            "max_tokens": 160,
            "parallel_tool_calls": False,
        }

    @property
    def enable_vcr_tests(self) -> bool:
        return True

    @property
    def supports_json_mode(self) -> bool:
        return True
