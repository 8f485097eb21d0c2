"""One chat call as both wire formats describe it, and what it produced.

``openai_api`` and ``anthropic_api`` each parse their request body into a
:class:`ChatCall`; the gateway runs it on a router; the API module formats the
:class:`Outcome` (or the stream) back in its own wire format.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from langchain_core.messages import BaseMessage

__all__ = ["ChatCall", "Outcome", "usage_dict"]


@dataclass
class ChatCall:
    """What the client asked for, in LangChain's terms."""

    model: str
    """The configured router or model name the client addressed."""
    messages: list[BaseMessage]
    stream: bool = False
    include_usage: bool = False
    """OpenAI streams: send a last chunk with usage (``stream_options.include_usage``)."""
    tools: list[dict[str, Any]] | None = None
    """OpenAI-format tool definitions (``{"type": "function", "function": {...}}``)."""
    tool_choice: str | None = None
    """``"auto"``, ``"none"``, ``"required"``/``"any"``, or a tool name."""
    tool_kwargs: dict[str, Any] = field(default_factory=dict)
    structured: dict[str, Any] | None = None
    """``{"schema", "method", "strict"}`` for a JSON-schema or JSON-mode answer."""
    params: dict[str, Any] = field(default_factory=dict)
    """Sampling parameters every provider understands: temperature, top_p, max_tokens."""
    stop: list[str] | None = None
    openai_params: dict[str, Any] = field(default_factory=dict)
    """Parameters only OpenAI-compatible providers take (seed, user, penalties)."""

    def max_output_tokens(self) -> int:
        value = self.params.get("max_tokens")
        return value if isinstance(value, int) else 0


@dataclass
class Outcome:
    """What served a call: the deployment, how many tries it took, and the usage."""

    deployment: str = ""
    attempts: int = 1
    model_name: str = ""
    provider: str = ""
    usage: dict[str, Any] | None = None
    cost_usd: float | None = None
    ignored: list[str] = field(default_factory=list)
    """OpenAI-only parameters not sent because the router has other providers."""

    def headers(self) -> dict[str, str]:
        headers = {"x-multigateway-deployment": self.deployment, "x-multigateway-attempts": str(self.attempts)}
        if self.ignored:
            headers["x-multigateway-ignored-params"] = ",".join(self.ignored)
        return headers


def usage_dict(usage: Any) -> dict[str, int]:
    """Input, output, total, cached and reasoning tokens from LangChain ``usage_metadata``."""
    usage = usage or {}
    inputs = int(usage.get("input_tokens") or 0)
    outputs = int(usage.get("output_tokens") or 0)
    return {
        "input": inputs,
        "output": outputs,
        "total": int(usage.get("total_tokens") or inputs + outputs),
        "cached": int((usage.get("input_token_details") or {}).get("cache_read") or 0),
        "reasoning": int((usage.get("output_token_details") or {}).get("reasoning") or 0),
    }
