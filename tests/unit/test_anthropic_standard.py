"""LangChain's standard unit tests for AnthropicChatModel."""

from __future__ import annotations

from typing import Any

from langchain_multigateway.chat_models.anthropic import AnthropicChatModel
from tests.standard import GatewayChatModelUnitTests


class TestAnthropicChatModelUnit(GatewayChatModelUnitTests):
    @property
    def chat_model_class(self) -> type[AnthropicChatModel]:
        return AnthropicChatModel

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"model": "claude-haiku-4-5", "api_key": "sk-ant-unit-test", "temperature": 0}

    @property
    def init_from_env_params(self) -> tuple[dict[str, str], dict[str, Any], dict[str, Any]]:
        return (
            {"ANTHROPIC_API_KEY": "sk-ant-from-env", "ANTHROPIC_BASE_URL": "http://127.0.0.1:9"},
            {"model": "claude-haiku-4-5"},
            {"api_key": "sk-ant-from-env", "base_url": "http://127.0.0.1:9"},
        )

    @property
    def supports_image_inputs(self) -> bool:
        return True

    @property
    def supports_image_urls(self) -> bool:
        return True
