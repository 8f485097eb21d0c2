"""One chat call as both wire formats describe it, and what it produced.

``openai_api`` and ``anthropic_api`` each parse their request body into a
:class:`ChatCall`; the gateway runs it on a router; the API module formats the
:class:`Outcome` (or the stream) back in its own wire format.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from langchain_core.messages import BaseMessage

__all__ = [
    "MAX_SCHEMA_DEPTH",
    "ChatCall",
    "Outcome",
    "header_value",
    "parameters_problem",
    "schema_problem",
    "tool_name_problem",
    "usage_dict",
]

MAX_SCHEMA_DEPTH = 32
"""Deeper tool or output schemas are refused: no real schema nests this far, and a deeper
one would exhaust the recursion of the code that converts it for each provider."""
_TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_SCHEMA_MAPS = ("properties", "$defs", "definitions", "patternProperties")
_SCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")


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
    ttft_ms: float | None = None
    failed: list[dict[str, Any]] = field(default_factory=list)
    """The router's ``failed_attempts``: the tries before the one that answered."""
    cache: str | None = None
    """The router's response cache: ``"exact"`` / ``"semantic"`` (a hit), ``"miss"``, or None (no cache)."""

    def headers(self) -> dict[str, str]:
        headers = {
            "x-multigateway-deployment": header_value(self.deployment),
            "x-multigateway-attempts": str(self.attempts),
        }
        if self.cache:
            headers["x-multigateway-cache"] = self.cache
        if self.ignored:
            headers["x-multigateway-ignored-params"] = ",".join(self.ignored)
        return headers


def header_value(name: str) -> str:
    """``name`` as an HTTP header value: percent-encoded UTF-8 when it is not printable ASCII (a deployment
    named ``clean-東京``), since header values are latin-1 bytes and a line break would end the header."""
    return name if name.isascii() and name.isprintable() else quote(name, safe=_HEADER_SAFE)


_HEADER_SAFE = " !\"#$&'()*+,-./:;<=>?@[\\]^_`{|}~"  # printable ASCII but "%": kept as written


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


def tool_name_problem(name: Any) -> str | None:
    """Why ``name`` cannot be a tool's name (every provider takes 1-64 of ``A-Z a-z 0-9 _ -``), or None."""
    if isinstance(name, str) and _TOOL_NAME.match(name):
        return None
    return f"a tool name is 1 to 64 letters, digits, '_' or '-' (got {str(name)[:80]!r})"


def parameters_problem(schema: Any) -> str | None:
    """What makes ``schema`` no tool's parameters (an object schema, as every provider requires), or None."""
    if isinstance(schema, dict) and (
        schema.get("type", "object") != "object" or any(k in schema for k in ("$ref", "anyOf", "oneOf"))
    ):
        return "a tool's parameters must be an object schema: {type: 'object', properties: {...}}"
    return schema_problem(schema)


def schema_problem(schema: Any, depth: int = 0) -> str | None:
    """What makes ``schema`` no JSON schema a provider could take (its shape only), or None.

    Checked before the call so a malformed schema is the client's 400, not an upstream
    failure counted against the deployment's health.
    """
    if isinstance(schema, bool):
        return None
    if not isinstance(schema, dict):
        return f"a schema must be an object (got {type(schema).__name__})"
    if depth > MAX_SCHEMA_DEPTH:
        return f"the schema nests deeper than {MAX_SCHEMA_DEPTH} levels"
    kind = schema.get("type")
    if kind is not None and not (
        isinstance(kind, str) or (isinstance(kind, list) and all(isinstance(k, str) for k in kind))
    ):
        return f"'type' must be a string or a list of strings (got {kind!r})"
    for name in _SCHEMA_MAPS:
        inner = schema.get(name)
        if inner is None:
            continue
        if not isinstance(inner, dict):
            return f"'{name}' must be an object of schemas"
        for sub in inner.values():
            problem = schema_problem(sub, depth + 1)
            if problem:
                return problem
    for name in _SCHEMA_LISTS:
        inner = schema.get(name)
        if inner is None:
            continue
        if not isinstance(inner, list):
            return f"'{name}' must be a list of schemas"
        for sub in inner:
            problem = schema_problem(sub, depth + 1)
            if problem:
                return problem
    for name in ("items", "additionalProperties", "not"):
        if name in schema:
            problem = schema_problem(schema[name], depth + 1)
            if problem:
                return problem
    required = schema.get("required")
    if required is not None and not (isinstance(required, list) and all(isinstance(r, str) for r in required)):
        return "'required' must be a list of property names"
    return None
