"""langchain-multigateway: many LLM providers behind one gateway, as LangChain chat models."""

from langchain_multigateway._retry import RetryPolicy
from langchain_multigateway.chat_models import GatewayChatModel, HealthStatus, OpenAIChatModel
from langchain_multigateway.errors import (
    AllDeploymentsFailedError,
    AuthenticationError,
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

__version__ = "0.1.0"

__all__ = [
    "AllDeploymentsFailedError",
    "AuthenticationError",
    "ContentPolicyError",
    "ContextWindowExceededError",
    "GatewayChatModel",
    "GatewayConnectionError",
    "GatewayError",
    "GatewayTimeoutError",
    "HealthStatus",
    "InvalidRequestError",
    "MissingAPIKeyError",
    "ModelNotFoundGatewayError",
    "OpenAIChatModel",
    "PermissionDeniedError",
    "ProviderError",
    "RateLimitError",
    "RetryPolicy",
    "__version__",
]
