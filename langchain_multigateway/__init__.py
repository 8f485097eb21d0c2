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
    from langchain_multigateway.cache import CacheScopeError, GatewayCache, SemanticCache
    from langchain_multigateway.chat_models import (
        AnthropicChatModel,
        GatewayChatModel,
        HealthStatus,
        MistralChatModel,
        OllamaChatModel,
        OpenAIChatModel,
    )
    from langchain_multigateway.routing import (
        Deployment,
        FailoverPolicy,
        RoutingChatModel,
        router_from_config,
        routers_from_config,
    )
    from langchain_multigateway.testing import ScriptedChatModel
    from langchain_multigateway.usage import (
        Budget,
        Ledger,
        LedgerCallbackHandler,
        PriceTable,
        UsageCallbackHandler,
        atrack_usage,
        set_price,
        track_usage,
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
    "CacheScopeError": "langchain_multigateway.cache",
    "GatewayCache": "langchain_multigateway.cache",
    "SemanticCache": "langchain_multigateway.cache",
    "Deployment": "langchain_multigateway.routing",
    "FailoverPolicy": "langchain_multigateway.routing",
    "RoutingChatModel": "langchain_multigateway.routing",
    "router_from_config": "langchain_multigateway.routing",
    "routers_from_config": "langchain_multigateway.routing",
    "ScriptedChatModel": "langchain_multigateway.testing",
    "Budget": "langchain_multigateway.usage",
    "Ledger": "langchain_multigateway.usage",
    "LedgerCallbackHandler": "langchain_multigateway.usage",
    "PriceTable": "langchain_multigateway.usage",
    "UsageCallbackHandler": "langchain_multigateway.usage",
    "atrack_usage": "langchain_multigateway.usage",
    "set_price": "langchain_multigateway.usage",
    "track_usage": "langchain_multigateway.usage",
}

__all__ = [
    "AllDeploymentsFailedError",
    "AnthropicChatModel",
    "AuthenticationError",
    "Budget",
    "BudgetExceededError",
    "CacheScopeError",
    "ConfigurationError",
    "ContentPolicyError",
    "ContextWindowExceededError",
    "Deployment",
    "FailoverPolicy",
    "GatewayChatModel",
    "GatewayConfig",
    "GatewayConnectionError",
    "GatewayCache",
    "GatewayError",
    "GatewayTimeoutError",
    "HealthStatus",
    "InvalidRequestError",
    "Ledger",
    "LedgerCallbackHandler",
    "MissingAPIKeyError",
    "MistralChatModel",
    "ModelNotFoundGatewayError",
    "ModelSpec",
    "OllamaChatModel",
    "OpenAIChatModel",
    "PermissionDeniedError",
    "PriceTable",
    "ProviderError",
    "RateLimitError",
    "RetryPolicy",
    "RoutingChatModel",
    "ScriptedChatModel",
    "SemanticCache",
    "UsageCallbackHandler",
    "__version__",
    "atrack_usage",
    "default_gateway_model",
    "get_default_model",
    "init_gateway_model",
    "list_providers",
    "load_config",
    "parse_model_string",
    "register_provider",
    "router_from_config",
    "routers_from_config",
    "set_price",
    "track_usage",
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
