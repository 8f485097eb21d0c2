"""LangChain's standard unit tests for OllamaChatModel."""

from __future__ import annotations

from typing import Any

from langchain_multigateway.chat_models.ollama import OllamaChatModel
from tests.standard import GatewayChatModelUnitTests


class TestOllamaChatModelUnit(GatewayChatModelUnitTests):
    @property
    def chat_model_class(self) -> type[OllamaChatModel]:
        return OllamaChatModel

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"model": "llama3.2", "temperature": 0, "base_url": "http://127.0.0.1:11434"}

    @property
    def init_from_env_params(self) -> tuple[dict[str, str], dict[str, Any], dict[str, Any]]:
        return (
            {"OLLAMA_HOST": "gpu-box:11434", "OLLAMA_API_KEY": "ollama-from-env"},
            {"model": "llama3.2"},
            {"base_url": "gpu-box:11434", "host": "http://gpu-box:11434", "api_key": "ollama-from-env"},
        )

    @property
    def supports_image_inputs(self) -> bool:
        return True

    @property
    def supports_json_mode(self) -> bool:
        return True
