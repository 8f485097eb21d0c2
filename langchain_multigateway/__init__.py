"""langchain-multigateway: many LLM providers behind one gateway, as LangChain chat models."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from langchain_multigateway._retry import RetryPolicy
from langchain_multigateway.config import GatewayConfig, ModelSpec, load_config
from langchain_multigateway.errors import (
    AllDeploymentsFailedError,
    AuthenticationError,
    BudgetExceededError,
    ConfigurationError,
    ContentPolicyError,
    ContextWindowExceededError,
    GatewayConnectionError,
    GatewayError,
    GatewayTimeoutError,
    InvalidRequestError,
    MissingAPIKeyError,
    ModelNotFoundGatewayError,
    PermissionDeniedError,
    ProviderError,
    RateLimitError,
)
from langchain_multigateway.registry import (
    default_gateway_model,
    get_default_model,
    init_gateway_model,
    list_providers,
    parse_model_string,
    register_provider,
    unregister_provider,
)

if TYPE_CHECKING:
    from langchain_multigateway.chat_models import (
        AnthropicChatModel,
        GatewayChatModel,
        HealthStatus,
        MistralChatModel,
        OllamaChatModel,
        OpenAIChatModel,
    )

__version__ = "0.1.0"

# Chat model classes load on first use: provider modules import SDKs and HTTP clients.
_LAZY = {
    "AnthropicChatModel": "langchain_multigateway.chat_models",
    "GatewayChatModel": "langchain_multigateway.chat_models",
    "HealthStatus": "langchain_multigateway.chat_models",
    "MistralChatModel": "langchain_multigateway.chat_models",
    "OllamaChatModel": "langchain_multigateway.chat_models",
    "OpenAIChatModel": "langchain_multigateway.chat_models",
}

__all__ = [
    "AllDeploymentsFailedError",
    "AnthropicChatModel",
    "AuthenticationError",
    "BudgetExceededError",
    "ConfigurationError",
    "ContentPolicyError",
    "ContextWindowExceededError",
    "GatewayChatModel",
    "GatewayConfig",
    "GatewayConnectionError",
    "GatewayError",
    "GatewayTimeoutError",
    "HealthStatus",
    "InvalidRequestError",
    "MissingAPIKeyError",
    "ModelNotFoundGatewayError",
    "MistralChatModel",
    "ModelSpec",
    "OllamaChatModel",
    "OpenAIChatModel",
    "PermissionDeniedError",
    "ProviderError",
    "RateLimitError",
    "RetryPolicy",
    "__version__",
    "default_gateway_model",
    "get_default_model",
    "init_gateway_model",
    "list_providers",
    "load_config",
    "parse_model_string",
    "register_provider",
    "unregister_provider",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        msg = f"module {__name__!r} has no attribute {name!r}"
        raise AttributeError(msg)
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
