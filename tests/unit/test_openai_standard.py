"""LangChain's standard unit tests for OpenAIChatModel."""

from __future__ import annotations

from typing import Any

from langchain_multigateway import OpenAIChatModel
from tests.standard import GatewayChatModelUnitTests


class TestOpenAIChatModelUnit(GatewayChatModelUnitTests):
    @property
    def chat_model_class(self) -> type[OpenAIChatModel]:
        return OpenAIChatModel

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"model": "gpt-4o-mini", "api_key": "sk-unit-test", "temperature": 0}

    @property
    def init_from_env_params(self) -> tuple[dict[str, str], dict[str, Any], dict[str, Any]]:
        return (
            {"OPENAI_API_KEY": "sk-from-env", "OPENAI_BASE_URL": "http://127.0.0.1:9/v1"},
            {"model": "gpt-4o-mini"},
            {"api_key": "sk-from-env", "base_url": "http://127.0.0.1:9/v1"},
        )

    @property
    def supports_image_inputs(self) -> bool:
        return True

    @property
    def supports_json_mode(self) -> bool:
        return True
