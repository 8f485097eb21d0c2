"""Telemetry callback handlers: OpenTelemetry traces and Prometheus metrics (optional extras).

Both are imported lazily, so ``import langchain_multigateway.telemetry`` costs nothing and
needs neither package:

* :class:`OpenTelemetryCallbackHandler` needs ``pip install 'langchain-multigateway[otel]'``;
* :class:`PrometheusCallbackHandler` needs ``pip install 'langchain-multigateway[prometheus]'``.

Like :mod:`langchain_multigateway.usage`, they know nothing of routing: they read what
chat models report through LangChain callbacks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from langchain_multigateway.telemetry.otel import OpenTelemetryCallbackHandler
    from langchain_multigateway.telemetry.prometheus import PrometheusCallbackHandler

__all__ = ["OpenTelemetryCallbackHandler", "PrometheusCallbackHandler"]

_WHERE = {
    "OpenTelemetryCallbackHandler": "langchain_multigateway.telemetry.otel",
    "PrometheusCallbackHandler": "langchain_multigateway.telemetry.prometheus",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(_WHERE[name]), name)
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)
