"""One routed request: its overrides, the filter, per-deployment call preparation, metadata."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.tool import tool_call_chunk
from langchain_core.outputs import ChatGenerationChunk
from langchain_core.runnables import Runnable, RunnableBinding

from langchain_multigateway.routing.deployment import Deployment
from langchain_multigateway.routing.strategies import RequestInfo, Strategy
from langchain_multigateway.routing.structured import StructuredSpec, json_schema_of, schema_name

if TYPE_CHECKING:
    from langchain_multigateway.routing._attempts import AttemptRuns
    from langchain_multigateway.routing._budget import BudgetGuard

__all__ = [
    "Prepared",
    "RoutedCall",
    "as_last_chunk",
    "estimate_tokens",
    "exact_tokens",
    "from_configurable",
    "read_overrides",
]

STREAM_RUN = "_multigateway_stream_run"
"""The kwarg under which the router's ``stream()`` hands ``_stream`` its run (see ``_attempts``)."""
ROUTER_KWARGS = ("routing_strategy", "routing_tags", "routing_priority", STREAM_RUN)
DEFAULT_OUTPUT_TOKENS = 256


def estimate_tokens(messages: Sequence[BaseMessage]) -> tuple[int, int]:
    """A quick token estimate (chars / 4) and a safe upper bound (chars), framing included."""
    chars = 0
    for message in messages:
        content = message.content
        if isinstance(content, str):
            chars += len(content)
        else:
            for block in content:
                if isinstance(block, str):
                    chars += len(block)
                elif isinstance(block, dict) and isinstance(block.get("text"), str):
                    chars += len(block["text"])
        if message.type != "ai":
            continue
        for call in getattr(message, "tool_calls", None) or ():
            chars += len(str(call.get("args"))) + len(call.get("name") or "")
    framing = 4 * len(messages) + 3
    return math.ceil(chars / 4) + framing, chars + framing


def exact_tokens(deployment: Deployment, messages: Sequence[BaseMessage]) -> int:
    """Prompt tokens counted offline (tiktoken where the encoding is on disk)."""
    from langchain_multigateway.chat_models._openai_format import messages_to_openai
    from langchain_multigateway.tokens import count_message_tokens

    try:
        return count_message_tokens(messages_to_openai(messages), deployment.model_name)
    except Exception:
        return estimate_tokens(messages)[1]


def has_images(messages: Sequence[BaseMessage]) -> bool:
    for message in messages:
        if isinstance(message.content, list):
            for block in message.content:
                if isinstance(block, dict) and block.get("type") in ("image", "image_url", "input_image"):
                    return True
    return False


def _parse_tags(value: Any) -> frozenset[str] | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return frozenset(t.strip() for t in value.split(",") if t.strip())
    return frozenset(str(t) for t in value)


def from_configurable(config: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Routing keys of ``config["configurable"]`` moved into call kwargs (explicit kwargs win)."""
    configurable = config.get("configurable") if isinstance(config, Mapping) else None
    if not configurable:
        return kwargs
    for key in ROUTER_KWARGS:
        if key in configurable and key not in kwargs:
            kwargs[key] = configurable[key]
    return kwargs


def read_overrides(
    kwargs: dict[str, Any], metadata: Mapping[str, Any] | None
) -> tuple[Any, frozenset[str] | None, int]:
    """Pop the router's own kwargs; fall back to run metadata (``configurable`` lands there too)."""
    meta = metadata or {}
    strategy = kwargs.pop("routing_strategy", None) or meta.get("routing_strategy")
    tags = _parse_tags(kwargs.pop("routing_tags", None) or meta.get("routing_tags"))
    priority = kwargs.pop("routing_priority", None)
    if priority is None:
        priority = meta.get("routing_priority", meta.get("priority", 0))
    try:
        priority = int(priority)
    except (TypeError, ValueError):
        priority = 0
    return strategy, tags, priority


@dataclass
class Prepared:
    """How to call one deployment for this request: the model and its call kwargs,
    or a runnable when the model's binding is not a plain ``RunnableBinding``."""

    model: BaseChatModel
    kwargs: dict[str, Any]
    runnable: Runnable[Any, Any] | None = None
    raw_key: str | None = None


@dataclass
class RoutedCall:
    """Everything the router works out once per request."""

    messages: list[BaseMessage]
    stop: list[str] | None
    kwargs: dict[str, Any]
    strategy: Strategy
    tags: frozenset[str] | None
    priority: int
    streaming: bool
    tools: Sequence[Any] | None = None
    tool_kwargs: dict[str, Any] = field(default_factory=dict)
    structured: StructuredSpec | None = None
    input_tokens: int = 0
    upper_tokens: int = 0
    output_tokens: int = 0
    reserve_output: int = 0
    images: bool = False
    min_window: int | None = None
    exact: dict[str, int] = field(default_factory=dict)
    guard: BudgetGuard | None = None
    """When the router has a budget."""
    runs: AttemptRuns | None = None
    """``AttemptRuns`` when the router's run has callback handlers."""

    @property
    def info(self) -> RequestInfo:
        return RequestInfo(self.input_tokens, self.output_tokens, self.streaming)

    def counted(self, deployment: Deployment) -> int:
        found = self.exact.get(deployment.model_name)
        if found is None:
            found = self.exact[deployment.model_name] = exact_tokens(deployment, self.messages)
        return found

    def exclusion(self, dep: Deployment) -> str | None:
        """Why ``dep`` cannot serve this request, or None."""
        caps = dep.capabilities
        if self.tools and caps.tools is False:
            return "does not support tool calling"
        spec = self.structured
        if spec is not None:
            method = spec.method
            methods = getattr(dep.model, "structured_output_methods", None)
            if isinstance(methods, (tuple, list)) and method not in methods:
                return f"does not support structured output by {method}"
            if method == "function_calling" and caps.tools is False:
                return "does not support tool calling (structured output by function_calling)"
            if method == "json_schema" and caps.json_schema is False:
                return "does not support JSON-schema structured output"
            if method == "json_mode" and caps.json_mode is False:
                return "does not support JSON mode"
        if self.images and caps.images is False:
            return "does not accept image inputs"
        window = dep.context_window
        if window is not None:
            if self.min_window is not None and window <= self.min_window:
                return f"context window {window} not larger than one that already overflowed ({self.min_window})"
            if self.upper_tokens + self.output_tokens > window:
                needed = self.counted(dep) + self.output_tokens
                if needed > window:
                    return f"context window {window} < {needed} tokens needed (prompt counted + max output)"
        if self.tags and not self.tags.issubset(dep.tags):
            return f"tags {sorted(self.tags)} not all in {sorted(dep.tags)}"
        return None


def prepare(dep: Deployment, call: RoutedCall, base_kwargs: dict[str, Any]) -> Prepared:
    """Bind this request's tools / structured output the deployment's own way."""
    model = dep.model
    kwargs = dict(base_kwargs)
    spec = call.structured
    if spec is not None:
        schema, method, strict = spec.schema, spec.method, spec.strict
        if method == "function_calling":
            name = schema_name(schema)
            forced = getattr(model, "_forced_tool_choice", None)
            extra: dict[str, Any] = {"tool_choice": forced(name) if callable(forced) else name}
            if strict is not None:
                extra["strict"] = strict
            return _from_binding(model, model.bind_tools([schema], **extra), kwargs)
        json_request = getattr(model, "_json_schema_request", None)
        mode_request = getattr(model, "_json_mode_request", None)
        if method == "json_schema" and callable(json_request):
            kwargs.update(json_request(json_schema_of(schema), schema_name(schema), strict))
            return Prepared(model, kwargs)
        if method == "json_mode" and callable(mode_request):
            kwargs.update(mode_request())
            return Prepared(model, kwargs)
        runnable = model.with_structured_output(schema, method=method, include_raw=True, strict=strict)
        return Prepared(model, kwargs, runnable=runnable, raw_key="raw")
    if call.tools:
        return _from_binding(model, model.bind_tools(call.tools, **call.tool_kwargs), kwargs)
    return Prepared(model, kwargs)


def _from_binding(model: BaseChatModel, bound: Runnable[Any, Any], kwargs: dict[str, Any]) -> Prepared:
    if isinstance(bound, RunnableBinding) and bound.bound is model:
        return Prepared(model, {**bound.kwargs, **kwargs})
    return Prepared(model, kwargs, runnable=bound)


def as_last_chunk(message: AIMessage) -> ChatGenerationChunk:
    """A whole message as one final stream chunk."""
    calls = [
        tool_call_chunk(name=c["name"], args=_json(c["args"]), id=c.get("id"), index=i)
        for i, c in enumerate(message.tool_calls)
    ]
    return ChatGenerationChunk(
        message=AIMessageChunk(
            content=message.content,
            tool_call_chunks=calls,
            additional_kwargs=message.additional_kwargs,
            usage_metadata=message.usage_metadata,
            response_metadata=dict(message.response_metadata),
            id=message.id,
            chunk_position="last",
        )
    )


def _json(value: Any) -> str:
    import json

    return json.dumps(value)
