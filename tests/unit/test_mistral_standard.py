"""LangChain's standard unit tests for MistralChatModel."""

from __future__ import annotations

from typing import Any

from langchain_multigateway.chat_models.mistral import MistralChatModel
from tests.standard import GatewayChatModelUnitTests


class TestMistralChatModelUnit(GatewayChatModelUnitTests):
    @property
    def chat_model_class(self) -> type[MistralChatModel]:
        return MistralChatModel

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"model": "mistral-small-latest", "api_key": "unit-test-key", "temperature": 0}

    @property
    def init_from_env_params(self) -> tuple[dict[str, str], dict[str, Any], dict[str, Any]]:
        return (
            {"MISTRAL_API_KEY": "key-from-env", "MISTRAL_SERVER_URL": "http://127.0.0.1:9"},
            {"model": "mistral-small-latest"},
            {"api_key": "key-from-env", "server_url": "http://127.0.0.1:9"},
        )

    @property
    def supports_image_inputs(self) -> bool:
        return True

    @property
    def supports_json_mode(self) -> bool:
        return True
