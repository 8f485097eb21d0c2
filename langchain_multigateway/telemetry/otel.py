"""OpenTelemetry spans for chat-model calls, with the GenAI semantic conventions.

One ``CLIENT`` span per chat-model run, named ``chat {model}``. A run nested in
another chat-model run (a router's attempt at a deployment, when the router
propagates callbacks) becomes a child span of it; a top-level run is a child of
whatever span is current where the call was made.

Attributes (https://opentelemetry.io/docs/specs/semconv/gen-ai/gen-ai-spans/):
``gen_ai.operation.name`` (``"chat"``), ``gen_ai.provider.name``,
``gen_ai.request.model``, ``gen_ai.request.temperature``,
``gen_ai.request.max_tokens``, ``gen_ai.response.model``, ``gen_ai.response.id``,
``gen_ai.response.finish_reasons``, ``gen_ai.usage.input_tokens``,
``gen_ai.usage.output_tokens``, ``error.type``; and the gateway's own
``multigateway.deployment``, ``multigateway.attempts``, ``multigateway.cost_usd``,
``multigateway.usage.cached_tokens``, ``multigateway.usage.reasoning_tokens``.

Prompts and completions are recorded only with ``capture_content=True``
(``gen_ai.input.messages`` / ``gen_ai.output.messages``, JSON). Invocation
parameters are never copied wholesale, and every text attribute (and a recorded
exception's message and stack trace) passes through the gateway's redaction rule, so
no credential reaches a span.
"""

from __future__ import annotations

import json
import traceback
from collections.abc import Mapping
from typing import Any

from langchain_core.messages import AIMessage, convert_to_openai_messages

from langchain_multigateway._redact import redact, redact_label
from langchain_multigateway.usage.pricing import PriceTable
from langchain_multigateway.usage.records import CallRecord, CallRecorder, _Run

try:
    from opentelemetry import context as otel_context
    from opentelemetry import trace
    from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer, TracerProvider
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    msg = "OpenTelemetryCallbackHandler needs the OpenTelemetry API and SDK: pip install 'langchain-multigateway[otel]'"
    raise ImportError(msg) from exc

__all__ = ["OpenTelemetryCallbackHandler"]

_TRACER_NAME = "langchain_multigateway"


class OpenTelemetryCallbackHandler(CallRecorder):
    """Emits an OpenTelemetry span per chat-model call (GenAI semantic conventions).

    Setup:
        ``pip install 'langchain-multigateway[otel]'`` and configure a tracer provider
        (or pass one).

    Key init args:
        tracer_provider: Where spans go; the global provider when None.
        capture_content: Record prompts and completions on spans (default False).
        prices: Price table for ``multigateway.cost_usd`` (the default table when None).

    Instantiate:
        .. code-block:: python

            from langchain_multigateway.telemetry import OpenTelemetryCallbackHandler

            tracing = OpenTelemetryCallbackHandler()
            router.invoke("Hello", config={"callbacks": [tracing]})
    """

    def __init__(
        self,
        *,
        tracer_provider: TracerProvider | None = None,
        capture_content: bool = False,
        prices: PriceTable | Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(prices=prices)
        self.capture_content = capture_content
        self.keep_messages = capture_content
        provider = tracer_provider or trace.get_tracer_provider()
        self.tracer: Tracer = provider.get_tracer(_TRACER_NAME)

    def _on_start(self, run: _Run) -> None:
        parent = None
        if run.chat_parent is not None:
            parent_run = self._runs.get(run.chat_parent)
            parent_span = parent_run.state.get("span") if parent_run is not None else None
            if parent_span is not None:
                parent = trace.set_span_in_context(parent_span)
        if parent is None:
            parent = otel_context.get_current()
        model = run.metadata.get("ls_model_name") or run.params.get("model") or run.params.get("model_name")
        attributes: dict[str, Any] = {"gen_ai.operation.name": "chat"}
        provider = run.metadata.get("ls_provider")
        if provider:
            attributes["gen_ai.provider.name"] = str(provider)
        if model:
            attributes["gen_ai.request.model"] = str(model)
        temperature = run.params.get("temperature", run.metadata.get("ls_temperature"))
        if isinstance(temperature, (int, float)):
            attributes["gen_ai.request.temperature"] = float(temperature)
        max_tokens = run.params.get("max_tokens", run.metadata.get("ls_max_tokens"))
        if isinstance(max_tokens, int):
            attributes["gen_ai.request.max_tokens"] = max_tokens
        if self.capture_content and run.messages:
            attributes["gen_ai.input.messages"] = _json(convert_to_openai_messages(run.messages))
        run.messages = []
        attributes = {k: _clean(v) for k, v in attributes.items()}
        name = redact_label(f"chat {model}" if model else "chat")
        run.state["span"] = self.tracer.start_span(name, context=parent, kind=SpanKind.CLIENT, attributes=attributes)

    def _on_finish(
        self, run: _Run, message: AIMessage | None, error: BaseException | None, own: list[CallRecord]
    ) -> None:
        raw_span = run.state.pop("span", None)
        if raw_span is None:
            return
        span = _RedactingSpan(raw_span)
        try:
            if message is not None and error is None:
                meta = message.response_metadata
                model = meta.get("model_name") or meta.get("model")
                if model:
                    span.set_attribute("gen_ai.response.model", str(model))
                response_id = meta.get("id") or message.id
                if response_id:
                    span.set_attribute("gen_ai.response.id", str(response_id))
                finish = meta.get("finish_reason") or meta.get("stop_reason")
                if finish:
                    span.set_attribute("gen_ai.response.finish_reasons", [str(finish)])
                if meta.get("deployment"):
                    span.set_attribute("multigateway.deployment", str(meta["deployment"]))
                if isinstance(meta.get("attempts"), int):
                    span.set_attribute("multigateway.attempts", meta["attempts"])
                if self.capture_content:
                    span.set_attribute("gen_ai.output.messages", _json(convert_to_openai_messages([message])))
            record = own[0] if len(own) == 1 else None
            if record is not None and record.has_usage:
                span.set_attribute("gen_ai.usage.input_tokens", record.input_tokens)
                span.set_attribute("gen_ai.usage.output_tokens", record.output_tokens)
                span.set_attribute("multigateway.usage.cached_tokens", record.cached_tokens)
                span.set_attribute("multigateway.usage.reasoning_tokens", record.reasoning_tokens)
                if record.cost_usd is not None:
                    span.set_attribute("multigateway.cost_usd", record.cost_usd)
            if error is not None:
                error_type = type(error).__qualname__
                span.set_attribute("error.type", error_type)
                span.set_status(Status(StatusCode.ERROR, error_type))
                if self.capture_content:
                    span.record_exception(error)
        finally:
            raw_span.end()


def _json(value: Any) -> str:
    return json.dumps(value, default=str, ensure_ascii=False)


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return redact_label(value)
    if isinstance(value, list):
        return [redact_label(v) if isinstance(v, str) else v for v in value]
    return value


class _RedactingSpan:
    """The few span methods the handler uses, with text redacted on the way in."""

    def __init__(self, span: Any) -> None:
        self.span = span

    def set_attribute(self, key: str, value: Any) -> None:
        self.span.set_attribute(key, _clean(value))

    def set_status(self, status: Status) -> None:
        self.span.set_status(status)

    def record_exception(self, error: BaseException) -> None:
        # OpenTelemetry fills exception.message / exception.stacktrace from str() and the
        # whole chain; the gateway's errors are clean, a foreign one may not be.
        stack = "".join(traceback.format_exception(type(error), error, error.__traceback__))
        self.span.record_exception(
            error, attributes={"exception.message": redact(str(error)), "exception.stacktrace": redact(stack)}
        )
