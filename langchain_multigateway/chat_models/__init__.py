"""Provider chat models."""

from langchain_multigateway.chat_models._base import GatewayChatModel, HealthStatus
from langchain_multigateway.chat_models.openai import OpenAIChatModel

__all__ = ["GatewayChatModel", "HealthStatus", "OpenAIChatModel"]
