"""Provider chat models, imported on first use (provider modules pull in SDKs and HTTP clients)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from langchain_multigateway.chat_models._base import GatewayChatModel
    from langchain_multigateway.chat_models._health import HealthStatus
    from langchain_multigateway.chat_models.anthropic import AnthropicChatModel
    from langchain_multigateway.chat_models.mistral import MistralChatModel
    from langchain_multigateway.chat_models.ollama import OllamaChatModel
    from langchain_multigateway.chat_models.openai import OpenAIChatModel

_LAZY = {
    "GatewayChatModel": "_base",
    "HealthStatus": "_health",
    "AnthropicChatModel": "anthropic",
    "MistralChatModel": "mistral",
    "OllamaChatModel": "ollama",
    "OpenAIChatModel": "openai",
}

__all__ = [
    "AnthropicChatModel",
    "GatewayChatModel",
    "HealthStatus",
    "MistralChatModel",
    "OllamaChatModel",
    "OpenAIChatModel",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        msg = f"module {__name__!r} has no attribute {name!r}"
        raise AttributeError(msg)
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
