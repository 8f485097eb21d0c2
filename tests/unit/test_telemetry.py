"""OpenTelemetry spans (GenAI conventions) and Prometheus metrics from callbacks."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from langchain_core.messages.ai import UsageMetadata
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest

from langchain_multigateway.errors import ProviderError, RateLimitError
from langchain_multigateway.telemetry import OpenTelemetryCallbackHandler, PrometheusCallbackHandler
from langchain_multigateway.testing import ScriptedChatModel
from langchain_multigateway.testing.scripted import Step
from tests.unit.test_usage_callbacks import Wrapper

USAGE = UsageMetadata(input_tokens=10, output_tokens=5, total_tokens=15)


def scripted(model: str = "gpt-4o-mini", *steps: Any, **kwargs: Any) -> ScriptedChatModel:
    return ScriptedChatModel(
        model=model,
        model_provider="openai",
        steps=list(steps) or [Step(reply="hello there", usage=USAGE)],
        exhausted="cycle",
        **kwargs,
    )


@pytest.fixture
def spans() -> Iterator[tuple[OpenTelemetryCallbackHandler, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield OpenTelemetryCallbackHandler(tracer_provider=provider), exporter
    provider.shutdown()


def finished(exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    return list(exporter.get_finished_spans())


def test_lazy_package_attributes() -> None:
    import langchain_multigateway.telemetry as telemetry

    assert telemetry.OpenTelemetryCallbackHandler is OpenTelemetryCallbackHandler
    with pytest.raises(AttributeError):
        _ = telemetry.NoSuchHandler  # type: ignore[attr-defined]


def test_span_per_call_with_genai_attributes(spans: tuple[OpenTelemetryCallbackHandler, InMemorySpanExporter]) -> None:
    handler, exporter = spans
    scripted(temperature=0.2, max_tokens=64).invoke("hi", config={"callbacks": [handler]})
    (span,) = finished(exporter)
    attrs = dict(span.attributes or {})
    assert span.name == "chat gpt-4o-mini"
    assert span.kind == SpanKind.CLIENT
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.provider.name"] == "openai"
    assert attrs["gen_ai.request.model"] == "gpt-4o-mini"
    assert attrs["gen_ai.response.model"] == "gpt-4o-mini"
    assert attrs["gen_ai.request.temperature"] == 0.2
    assert attrs["gen_ai.request.max_tokens"] == 64
    assert attrs["gen_ai.usage.input_tokens"] == 10
    assert attrs["gen_ai.usage.output_tokens"] == 5
    assert attrs["gen_ai.response.finish_reasons"] == ("stop",)
    assert attrs["multigateway.cost_usd"] == pytest.approx((10 * 0.15 + 5 * 0.6) / 1e6)
    assert "gen_ai.response.id" in attrs
    assert not any(key.startswith(("gen_ai.input", "gen_ai.output")) for key in attrs)
    assert span.status.status_code == StatusCode.UNSET


def test_router_attempts_are_child_spans(spans: tuple[OpenTelemetryCallbackHandler, InMemorySpanExporter]) -> None:
    handler, exporter = spans
    failing = scripted("gpt-4o", ProviderError("overloaded"))
    router = Wrapper(inners=[failing, scripted()], names=["primary", "backup"])
    router.invoke("hi", config={"callbacks": [handler]})
    by_name = {s.name: s for s in finished(exporter)}
    outer = next(s for s in finished(exporter) if s.parent is None)
    children = [s for s in finished(exporter) if s.parent is not None]
    assert len(children) == 2
    assert all(c.parent is not None and c.parent.span_id == outer.context.span_id for c in children)
    failed = by_name["chat gpt-4o"]
    assert failed.status.status_code == StatusCode.ERROR
    assert dict(failed.attributes or {})["error.type"] == "ProviderError"
    assert not failed.events  # the exception text is recorded only with capture_content
    assert dict(outer.attributes or {})["multigateway.deployment"] == "backup"
    assert dict(outer.attributes or {})["multigateway.attempts"] == 2


def test_top_level_span_joins_the_current_trace(
    spans: tuple[OpenTelemetryCallbackHandler, InMemorySpanExporter],
) -> None:
    handler, exporter = spans
    tracer = handler.tracer
    with tracer.start_as_current_span("request") as parent:
        scripted().invoke("hi", config={"callbacks": [handler]})
    chat = next(s for s in finished(exporter) if s.name.startswith("chat"))
    assert chat.parent is not None
    assert chat.parent.span_id == parent.get_span_context().span_id


async def test_failed_async_call_and_stream(spans: tuple[OpenTelemetryCallbackHandler, InMemorySpanExporter]) -> None:
    handler, exporter = spans
    with pytest.raises(RateLimitError):
        await scripted("gpt-4o-mini", RateLimitError("slow")).ainvoke("hi", config={"callbacks": [handler]})
    async for _ in scripted().astream("hi", config={"callbacks": [handler]}):
        pass
    failed, streamed = finished(exporter)
    assert dict(failed.attributes or {})["error.type"] == "RateLimitError"
    assert dict(streamed.attributes or {})["gen_ai.usage.output_tokens"] == 5


def test_content_only_when_asked_and_never_a_secret() -> None:
    from langchain_multigateway.chat_models import OpenAIChatModel
    from tests.loopback import Reply, chat_completion, serve

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    secret = "sk-test-do-not-leak-1234567890"
    with serve(Reply(body=chat_completion("Bonjour!", model="gpt-4o-mini"))) as (url, _):
        llm = OpenAIChatModel(model="gpt-4o-mini", base_url=url, api_key=secret, max_retries=0)
        quiet = OpenTelemetryCallbackHandler(tracer_provider=provider)
        loud = OpenTelemetryCallbackHandler(tracer_provider=provider, capture_content=True)
        llm.invoke("Say hello in French", config={"callbacks": [quiet]})
        llm.invoke("Say hello in French", config={"callbacks": [loud]})
        with pytest.raises(Exception):
            scripted("gpt-4o-mini", ProviderError("bad")).invoke("x", config={"callbacks": [loud]})
    quiet_span, loud_span, failed = finished(exporter)
    dump = json.dumps([dict(s.attributes or {}) for s in (quiet_span, loud_span, failed)], default=str)
    assert secret not in dump
    assert "Say hello" not in json.dumps(dict(quiet_span.attributes or {}))
    loud_attrs = dict(loud_span.attributes or {})
    assert json.loads(str(loud_attrs["gen_ai.input.messages"]))[0]["content"] == "Say hello in French"
    assert "Bonjour!" in str(loud_attrs["gen_ai.output.messages"])
    assert loud_attrs["gen_ai.usage.input_tokens"] == 5
    assert failed.events[0].name == "exception"
    provider.shutdown()


# ---------------------------------------------------------------------- Prometheus
def sample(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_prometheus_metrics_on_a_private_registry() -> None:
    metrics = PrometheusCallbackHandler()
    assert metrics.registry is not REGISTRY
    failing = scripted("gpt-4o", ProviderError("overloaded", provider="openai", model="gpt-4o"))
    router = Wrapper(inners=[failing, scripted()], names=["primary", "backup"])
    router.invoke("hi", config={"callbacks": [metrics]})
    list(Wrapper(inners=[scripted()]).stream("hi", config={"callbacks": [metrics]}))
    reg = metrics.registry
    ok = {"deployment": "backup", "provider": "openai", "model": "gpt-4o-mini"}
    assert sample(reg, "multigateway_requests_total", **ok, outcome="ok") == 1
    assert (
        sample(
            reg, "multigateway_requests_total", deployment="dep0", provider="openai", model="gpt-4o-mini", outcome="ok"
        )
        == 1
    )
    failed = {"deployment": "primary", "provider": "openai", "model": "gpt-4o"}
    assert sample(reg, "multigateway_requests_total", **failed, outcome="error") == 1
    assert sample(reg, "multigateway_errors_total", **failed, error_type="ProviderError") == 1
    assert sample(reg, "multigateway_tokens_total", **ok, type="input") == 10
    assert sample(reg, "multigateway_tokens_total", **ok, type="output") == 5
    assert sample(reg, "multigateway_cost_usd_total", **ok) == pytest.approx((10 * 0.15 + 5 * 0.6) / 1e6)
    assert sample(reg, "multigateway_request_latency_seconds_count", **ok) == 1
    streamed = {"deployment": "dep0", "provider": "openai", "model": "gpt-4o-mini"}
    assert sample(reg, "multigateway_time_to_first_token_seconds_count", **streamed) == 1
    assert sample(reg, "multigateway_time_to_first_token_seconds_count", **ok) is None


def test_breaker_gauge_and_hidden_failures() -> None:
    registry = CollectorRegistry()
    metrics = PrometheusCallbackHandler(registry=registry, namespace="gw")
    metrics.set_breaker_state("primary", "open")
    metrics.set_breaker_state("backup", "half_open")
    metrics.set_breaker_state("spare", 0)
    assert sample(registry, "gw_breaker_state", deployment="primary") == 2
    assert sample(registry, "gw_breaker_state", deployment="backup") == 1
    assert sample(registry, "gw_breaker_state", deployment="spare") == 0
    with pytest.raises(ValueError, match="breaker state"):
        metrics.set_breaker_state("x", "melted")
    # a router that reports only its attempt count: failures counted without labels
    from langchain_core.messages import AIMessage
    from langchain_core.outputs import ChatGeneration, LLMResult

    from tests.unit.test_usage_callbacks import _start

    run_id = _start(metrics)
    message = AIMessage("ok", usage_metadata=USAGE, response_metadata={"model_name": "gpt-4o-mini", "attempts": 3})
    metrics.on_llm_end(LLMResult(generations=[[ChatGeneration(message=message)]]), run_id=run_id)
    assert sample(registry, "gw_requests_total", deployment="", provider="", model="", outcome="error") == 2


# ---------------------------------------------------------------------- redaction
def test_spans_and_labels_mask_every_known_credential() -> None:
    from langchain_multigateway._redact import register_secret

    key = "tk-telemetry-planted-9f8e7d6c5b4a"
    register_secret(key)  # as a model built with this key would
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing = OpenTelemetryCallbackHandler(tracer_provider=provider, capture_content=True)
    metrics = PrometheusCallbackHandler()
    # A model named by a URL with userinfo, failing with a foreign error that quotes the key:
    # neither the span (name, attributes, exception event) nor a metric label may show it.
    model_name = f"http://gw:{key}@127.0.0.1:9/v1#gemma"
    failing = scripted(model_name, ValueError(f"upstream said: bad key {key}"))
    with pytest.raises(ValueError):
        failing.invoke("hi", config={"callbacks": [tracing, metrics]})
    (span,) = finished(exporter)
    text = span.to_json()
    assert key not in text
    (event,) = span.events
    assert "upstream said: bad key **********" in str((event.attributes or {})["exception.message"])
    assert key not in str((event.attributes or {})["exception.stacktrace"])
    assert "127.0.0.1" in span.name
    exposition = generate_latest(metrics.registry).decode()
    assert key not in exposition
    assert 'model="http://**********@127.0.0.1:9/v1#gemma"' in exposition
    provider.shutdown()
