"""A model's refusal to give the structured output it was asked for, as LangChain's ``ModelRefusalError``.

Providers answer a refusal as a success (HTTP 200), each its own way:

* OpenAI chat completions: ``message.refusal`` (kept in ``additional_kwargs["refusal"]``);
* OpenAI Responses API and LangChain v1 content: a ``{"type": "refusal"}`` content block;
* Anthropic: ``stop_reason: "refusal"`` (in ``response_metadata``).

Structured output needs the content the model withheld, so its parsers raise
``langchain_core.exceptions.ModelRefusalError`` (langchain-core 1.7.5+) carrying the
raw message, instead of a JSON parsing error about an empty answer; the router
applies its content policy to it (``FailoverPolicy.content_policy``).
"""

from __future__ import annotations

from typing import Any

from langchain_core.exceptions import ModelRefusalError
from langchain_core.messages import BaseMessage
from langchain_core.messages.content import RefusalContentBlock

__all__ = ["ModelRefusalError", "raise_if_refused", "refusal_of"]


def refusal_of(message: Any) -> ModelRefusalError | None:
    """The refusal ``message`` carries, as the error to raise; None when it answered."""
    if not isinstance(message, BaseMessage):
        return None
    text = message.additional_kwargs.get("refusal")
    block: RefusalContentBlock | None = None
    if isinstance(text, str) and text:
        block = {"type": "refusal", "refusal": text}
    elif isinstance(message.content, list):
        for part in message.content:
            if isinstance(part, dict) and part.get("type") == "refusal":
                block = {"type": "refusal", "refusal": str(part.get("refusal") or "")}
                break
    if block is None and message.response_metadata.get("stop_reason") == "refusal":
        block = {"type": "refusal", "refusal": message.text, "extras": {"category": "stop_reason=refusal"}}
    if block is None:
        return None
    return ModelRefusalError.from_refusal(block, raw_message=message)


def raise_if_refused(message: Any) -> Any:
    """``message`` unchanged, or ``ModelRefusalError`` when it is a refusal (a parser's first step)."""
    error = refusal_of(message)
    if error is not None:
        raise error
    return message
