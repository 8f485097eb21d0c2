"""Where an HTTP error body keeps its human message, read once for every provider.

The shapes: ``{"error": {"message": ...}}`` (OpenAI, Anthropic, llama.cpp, vLLM),
``{"error": "..."}`` (Ollama), ``{"message": ...}`` (Mistral and other flat bodies), and a
plain-text body (a proxy's page), which is its own message. A string ``error`` is read
before a top-level ``message``, as the OpenAI SDK reads it (it unwraps ``error`` first), so
the gateway's lean path and its SDK path give one body the same message.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["error_message_of"]


def error_message_of(body: object) -> str | None:
    """The human message in an error body (parsed JSON, or its text), or None when it has none."""
    if isinstance(body, Mapping):
        inner = body.get("error", body)
        if isinstance(inner, Mapping) and isinstance(inner.get("message"), str):
            return str(inner["message"])
        if isinstance(inner, str):
            return inner
        if isinstance(body.get("message"), str):
            return str(body["message"])
        return None
    return body if isinstance(body, str) else None
