"""Prometheus metrics for chat-model calls: requests, latency, time to first token, tokens, cost, breakers.

Metrics (``namespace`` defaults to ``multigateway``; labels ``deployment``,
``provider``, ``model`` are ``""`` when unknown):

* ``{ns}_requests_total{deployment,provider,model,outcome}`` — calls and failed attempts
* ``{ns}_errors_total{deployment,provider,model,error_type}``
* ``{ns}_request_latency_seconds{deployment,provider,model}`` (histogram)
* ``{ns}_time_to_first_token_seconds{deployment,provider,model}`` (histogram, streams)
* ``{ns}_tokens_total{deployment,provider,model,type}`` — ``type`` is input/output/cached/reasoning
* ``{ns}_cost_usd_total{deployment,provider,model}``
* ``{ns}_breaker_state{deployment}`` — 0 closed, 1 half-open, 2 open; fed by
  :meth:`PrometheusCallbackHandler.set_breaker_state`, which a router calls.
* ``{ns}_shared_state_live{router}`` — 1 while a router's state is shared (Redis answering),
  0 while it runs on this process's own; read at scrape time after
  :meth:`PrometheusCallbackHandler.watch_state`.

Label values pass through the gateway's redaction rule (cached: repeated labels cost
a lookup). Served calls are counted once even when a router and its deployment's model both
report them (see :mod:`langchain_multigateway.usage.records`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from langchain_multigateway._redact import redact_label
from langchain_multigateway.usage.pricing import PriceTable
from langchain_multigateway.usage.records import CallRecord, CallRecorder

try:
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    msg = "PrometheusCallbackHandler needs prometheus-client: pip install 'langchain-multigateway[prometheus]'"
    raise ImportError(msg) from exc

__all__ = ["BREAKER_STATES", "LabelledChildren", "PrometheusCallbackHandler"]

BREAKER_STATES: dict[str, int] = {"closed": 0, "half_open": 1, "half-open": 1, "open": 2}
_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0)
_TTFT_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0)
_LABELS = ("deployment", "provider", "model")


class LabelledChildren:
    """Each metric's child for a set of label values, looked up once.

    ``prometheus_client``'s ``labels()`` converts and checks its values and takes a lock
    on every call (about 6 µs): more than the increment it leads to, and a served call
    makes ten of them. Children are never removed here, so a cached one stays the one
    the registry exports; the cache holds as many as the registry does.
    """

    __slots__ = ("_children",)

    def __init__(self) -> None:
        self._children: dict[tuple[object, tuple[str, ...]], Any] = {}

    def __call__(self, metric: Any, *values: str) -> Any:
        """``metric.labels(*values)`` (values in the metric's label order)."""
        key = (metric, values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child


class PrometheusCallbackHandler(CallRecorder):
    """Counts calls, errors, tokens and cost, and times latency and first tokens, for Prometheus.

    Setup:
        ``pip install 'langchain-multigateway[prometheus]'``.

    Key init args:
        registry: Where the metrics live; a new ``CollectorRegistry`` when None (not
            the global one, so several handlers and tests never collide). Pass
            ``prometheus_client.REGISTRY`` to expose them with the default exporter.
        namespace: Metric name prefix (default ``"multigateway"``).
        prices: Price table for the cost counter (the default table when None).

    Instantiate:
        .. code-block:: python

            from prometheus_client import REGISTRY, start_http_server
            from langchain_multigateway.telemetry import PrometheusCallbackHandler

            metrics = PrometheusCallbackHandler(registry=REGISTRY)
            start_http_server(9464)
            router.invoke("Hello", config={"callbacks": [metrics]})
            metrics.set_breaker_state("primary", "open")
    """

    def __init__(
        self,
        *,
        registry: CollectorRegistry | None = None,
        namespace: str = "multigateway",
        prices: PriceTable | Mapping[str, Any] | None = None,
        latency_buckets: Sequence[float] = _LATENCY_BUCKETS,
        ttft_buckets: Sequence[float] = _TTFT_BUCKETS,
    ) -> None:
        super().__init__(prices=prices)
        self.registry = registry if registry is not None else CollectorRegistry()
        self._child = LabelledChildren()
        ns = namespace
        self.requests = Counter(
            "requests",
            "Chat-model calls and failed attempts",
            [*_LABELS, "outcome"],
            namespace=ns,
            registry=self.registry,
        )
        self.errors = Counter(
            "errors",
            "Failed chat-model calls or attempts",
            [*_LABELS, "error_type"],
            namespace=ns,
            registry=self.registry,
        )
        self.latency = Histogram(
            "request_latency_seconds",
            "Chat-model call latency",
            list(_LABELS),
            namespace=ns,
            buckets=tuple(latency_buckets),
            registry=self.registry,
        )
        self.ttft = Histogram(
            "time_to_first_token_seconds",
            "Time to the first streamed token",
            list(_LABELS),
            namespace=ns,
            buckets=tuple(ttft_buckets),
            registry=self.registry,
        )
        self.tokens = Counter("tokens", "Tokens used", [*_LABELS, "type"], namespace=ns, registry=self.registry)
        self.cost = Counter(
            "cost_usd",
            "USD spent (calls on models with a known price)",
            list(_LABELS),
            namespace=ns,
            registry=self.registry,
        )
        self.cache_lookups = Counter(
            "response_cache_lookups",
            "Router response-cache lookups by result: exact or semantic (a hit, no provider called) or miss",
            ["result"],
            namespace=ns,
            registry=self.registry,
        )
        self.breaker = Gauge(
            "breaker_state",
            "Circuit breaker state: 0 closed, 1 half-open, 2 open",
            ["deployment"],
            namespace=ns,
            registry=self.registry,
        )
        self.shared_state = Gauge(
            "shared_state_live",
            "1 while the router's state is shared (e.g. Redis answering), 0 while local to this process",
            ["router"],
            namespace=ns,
            registry=self.registry,
        )

    def watch_state(self, state: Any, router: str = "default") -> None:
        """Export whether ``state`` (a ``RouterState``) is shared right now, read at each scrape."""
        self.shared_state.labels(router=redact_label(router)).set_function(lambda: float(state.health().shared))

    def set_breaker_state(self, deployment: str, state: str | int) -> None:
        """Record a deployment's breaker state (``"closed"``, ``"half_open"``, ``"open"``, or 0/1/2)."""
        if isinstance(state, str):
            key = state.lower()
            if key not in BREAKER_STATES:
                msg = f"breaker state must be one of {sorted(set(BREAKER_STATES))} or 0/1/2, not {state!r}"
                raise ValueError(msg)
            value = BREAKER_STATES[key]
        else:
            value = int(state)
        self.breaker.labels(deployment=redact_label(deployment)).set(value)

    def _emit(self, records: list[CallRecord]) -> None:
        child = self._child
        for record in records:
            labels = (
                redact_label(record.deployment or ""),
                redact_label(record.provider or ""),
                redact_label(record.model or ""),
            )
            child(self.requests, *labels, record.outcome).inc()
            if record.cache is not None:
                child(self.cache_lookups, record.cache).inc()
            if record.outcome == "error":
                child(self.errors, *labels, redact_label(record.error_type or "")).inc()
            if record.hidden_failures:
                child(self.requests, "", "", "", "error").inc(record.hidden_failures)
            child(self.latency, *labels).observe(record.latency_ms / 1000)
            if record.ttft_ms is not None:
                child(self.ttft, *labels).observe(record.ttft_ms / 1000)
            if record.has_usage:
                for kind, value in (
                    ("input", record.input_tokens),
                    ("output", record.output_tokens),
                    ("cached", record.cached_tokens),
                    ("reasoning", record.reasoning_tokens),
                ):
                    if value:
                        child(self.tokens, *labels, kind).inc(value)
                if record.cost_usd:
                    child(self.cost, *labels).inc(record.cost_usd)
