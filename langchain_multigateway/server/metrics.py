"""The server's Prometheus metrics: the package's handler for calls, plus per-key and HTTP counters.

In the same registry as :class:`~langchain_multigateway.telemetry.PrometheusCallbackHandler`
(``multigateway_requests_total`` and the rest, fed from each call's settled record and its failed tries):

* ``multigateway_key_requests_total{key,outcome}`` — calls per virtual key (its name, never the key)
* ``multigateway_key_tokens_total{key,type}`` — input / output tokens per key
* ``multigateway_key_cost_usd_total{key}``
* ``multigateway_http_responses_total{route,status}``
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, generate_latest

from langchain_multigateway.telemetry.prometheus import LabelledChildren, PrometheusCallbackHandler
from langchain_multigateway.usage.records import CallRecord

__all__ = ["ServerMetrics"]


class ServerMetrics:
    """Metrics of one server process, exposed at ``GET /metrics``."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.handler = PrometheusCallbackHandler(registry=self.registry)
        self._child = LabelledChildren()
        ns = "multigateway"
        self.key_requests = Counter(
            "key_requests", "Calls per virtual key", ["key", "outcome"], namespace=ns, registry=self.registry
        )
        self.key_tokens = Counter(
            "key_tokens", "Tokens per virtual key", ["key", "type"], namespace=ns, registry=self.registry
        )
        self.key_cost = Counter("key_cost_usd", "USD per virtual key", ["key"], namespace=ns, registry=self.registry)
        self.responses = Counter(
            "http_responses",
            "HTTP responses by route and status",
            ["route", "status"],
            namespace=ns,
            registry=self.registry,
        )

    def key_call(self, key: str, outcome: str, counts: dict[str, int], cost: float | None) -> None:
        self._child(self.key_requests, key, outcome).inc()
        for kind in ("input", "output"):
            if counts[kind]:
                self._child(self.key_tokens, key, kind).inc(counts[kind])
        if cost:
            self._child(self.key_cost, key).inc(cost)

    def calls(self, records: list[CallRecord]) -> None:
        """Count settled calls and failed tries in the handler's metrics (``multigateway_requests_total``, ...).

        Fed by the server from each call's record rather than as a LangChain callback: a
        callback makes every call build a child run per attempt, the larger part of what
        the server itself costs per request.
        """
        self.handler._emit(records)

    def response(self, route: str, status: int) -> None:
        self._child(self.responses, route, str(status)).inc()

    def watch(self, routers: dict[str, Any]) -> None:
        """Follow every router's breakers in ``multigateway_breaker_state``."""
        for router in routers.values():
            router.watch_breakers(self.handler.set_breaker_state)

    def render(self) -> bytes:
        return generate_latest(self.registry)
