"""Token and cost totals per provider, model and deployment, from LangChain callbacks.

Example:
    .. code-block:: python

        from langchain_multigateway.usage import track_usage

        with track_usage() as usage:
            llm.invoke("Hello")
            chain.batch([...])
            for chunk in llm.stream("Tell me a joke"):
                ...
        print(usage.summary())
        usage.to_json()

Or pass the handler yourself: ``llm.invoke("hi", config={"callbacks": [UsageCallbackHandler()]})``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from dataclasses import asdict, dataclass, fields
from typing import Any

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages.ai import UsageMetadata
from langchain_core.tracers.context import register_configure_hook

from langchain_multigateway.usage.pricing import PriceTable
from langchain_multigateway.usage.records import CallRecord, CallRecorder

__all__ = ["UsageCallbackHandler", "UsageTotals", "atrack_usage", "track_usage"]


@dataclass
class UsageTotals:
    """Totals for one provider, model, deployment, or everything.

    ``requests`` counts every call made (served calls and failed attempts);
    ``errors`` the failed attempts; ``unpriced`` the calls whose model has no
    known price (their cost is not in ``cost_usd``); ``cache_hits`` the calls a
    router's response cache answered (in ``requests``, with no tokens and no cost).
    """

    requests: int = 0
    errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    cached_tokens: int = 0
    cache_creation_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: float = 0.0
    unpriced: int = 0
    cache_hits: int = 0

    def add(self, record: CallRecord) -> None:
        """Count one record."""
        self.requests += 1
        if record.outcome == "error":
            self.errors += 1
        # Spelled out rather than a loop over the names: this runs twice per record.
        self.input_tokens += record.input_tokens
        self.output_tokens += record.output_tokens
        self.total_tokens += record.total_tokens
        self.cached_tokens += record.cached_tokens
        self.cache_creation_tokens += record.cache_creation_tokens
        self.reasoning_tokens += record.reasoning_tokens
        if record.cache == "exact" or record.cache == "semantic":
            self.cache_hits += 1
        if record.cost_usd is None:
            self.unpriced += 1
        else:
            self.cost_usd += record.cost_usd

    def merge(self, other: UsageTotals) -> None:
        """Add ``other`` into these totals."""
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def to_dict(self) -> dict[str, Any]:
        """Plain dict; cost rounded to 1e-9 USD."""
        data = asdict(self)
        data["cost_usd"] = round(self.cost_usd, 9)
        return data

    def copy(self) -> UsageTotals:
        """An independent copy."""
        return UsageTotals(**asdict(self))


Key = tuple[str | None, str | None, str | None]


class UsageCallbackHandler(CallRecorder):
    """Totals input, output, cached and reasoning tokens, requests, errors and USD cost.

    Per provider, model and deployment, from ``AIMessage.usage_metadata`` in
    ``on_llm_end`` (for streams, the aggregated message, whose last chunk carries
    the usage). Works for invoke, stream, batch, their async twins, nested chains
    and agents; safe under threads and asyncio (one lock). A router (or any chat
    model wrapping another with callbacks propagated) is counted once per served
    call; failed attempts count as requests and errors, without tokens unless the
    error carried usage (see :mod:`langchain_multigateway.usage.records`).

    Key init args:
        prices: A :class:`PriceTable` or a config dict; the default table when None.
        keep_records: Keep every :class:`CallRecord` in ``records`` (default False).

    Token usage:
        .. code-block:: python

            handler = UsageCallbackHandler()
            llm.invoke("hi", config={"callbacks": [handler]})
            handler.totals.total_tokens, handler.totals.cost_usd
            handler.by_model()["gpt-4o-mini"].output_tokens
            print(handler.summary())
    """

    def __init__(self, *, prices: PriceTable | Mapping[str, Any] | None = None, keep_records: bool = False) -> None:
        super().__init__(prices=prices)
        self._lock = threading.Lock()
        self._buckets: dict[Key, UsageTotals] = {}
        self._totals = UsageTotals()
        self._calls = 0
        self._usage_by_model: dict[str, UsageMetadata] = {}
        self.keep_records = keep_records
        self.records: list[CallRecord] = []

    def _emit(self, records: list[CallRecord]) -> None:
        if not records:
            return
        with self._lock:
            self._calls += 1
            for record in records:
                key = (record.provider, record.model, record.deployment)
                bucket = self._buckets.get(key)
                if bucket is None:
                    bucket = self._buckets[key] = UsageTotals()
                bucket.add(record)
                self._totals.add(record)
                if record.hidden_failures:
                    self._totals.requests += record.hidden_failures
                    self._totals.errors += record.hidden_failures
                if record.has_usage and (record.served_model or record.model):
                    self._add_usage_metadata(record)
                if self.keep_records:
                    self.records.append(record)

    def _add_usage_metadata(self, record: CallRecord) -> None:
        # Keyed like LangChain's get_usage_metadata_callback: by the name the server answered with.
        name = record.served_model or record.model or ""
        current = self._usage_by_model.get(name)
        new = UsageMetadata(
            input_tokens=record.input_tokens, output_tokens=record.output_tokens, total_tokens=record.total_tokens
        )
        if current is not None:
            new = UsageMetadata(
                input_tokens=current["input_tokens"] + new["input_tokens"],
                output_tokens=current["output_tokens"] + new["output_tokens"],
                total_tokens=current["total_tokens"] + new["total_tokens"],
            )
        self._usage_by_model[name] = new

    # ------------------------------------------------------------------ reading
    @property
    def totals(self) -> UsageTotals:
        """Totals over everything (a copy); includes failed attempts no callback reported."""
        with self._lock:
            return self._totals.copy()

    @property
    def calls(self) -> int:
        """Outermost chat-model calls seen (a routed call with failover counts once)."""
        with self._lock:
            return self._calls

    @property
    def total_cost_usd(self) -> float:
        """USD over every priced call."""
        with self._lock:
            return self._totals.cost_usd

    @property
    def total_tokens(self) -> int:
        """Tokens over every call."""
        with self._lock:
            return self._totals.total_tokens

    @property
    def usage_metadata(self) -> dict[str, UsageMetadata]:
        """Input/output/total tokens by ``model_name``, as ``get_usage_metadata_callback`` reports them."""
        with self._lock:
            return {k: UsageMetadata(**v) for k, v in self._usage_by_model.items()}

    def buckets(self) -> dict[Key, UsageTotals]:
        """Totals per ``(provider, model, deployment)``."""
        with self._lock:
            return {k: v.copy() for k, v in self._buckets.items()}

    def _group(self, index: int) -> dict[str, UsageTotals]:
        out: dict[str, UsageTotals] = {}
        with self._lock:
            for key, totals in self._buckets.items():
                name = key[index] or "unknown"
                out.setdefault(name, UsageTotals()).merge(totals)
        return out

    def by_provider(self) -> dict[str, UsageTotals]:
        """Totals per provider (``"unknown"`` when none was reported)."""
        return self._group(0)

    def by_model(self) -> dict[str, UsageTotals]:
        """Totals per model name."""
        return self._group(1)

    def by_deployment(self) -> dict[str, UsageTotals]:
        """Totals per router deployment (``"unknown"`` for calls made without a router)."""
        return self._group(2)

    def reset(self) -> None:
        """Forget every total."""
        with self._lock:
            self._buckets.clear()
            self._totals = UsageTotals()
            self._calls = 0
            self._usage_by_model.clear()
            self.records.clear()

    # ------------------------------------------------------------------ export
    def to_dict(self) -> dict[str, Any]:
        """Everything as plain data: totals, and per provider, model, deployment and bucket."""
        return {
            "calls": self.calls,
            "totals": self.totals.to_dict(),
            "by_provider": {k: v.to_dict() for k, v in sorted(self.by_provider().items())},
            "by_model": {k: v.to_dict() for k, v in sorted(self.by_model().items())},
            "by_deployment": {k: v.to_dict() for k, v in sorted(self.by_deployment().items())},
            "buckets": [
                {"provider": k[0], "model": k[1], "deployment": k[2], **v.to_dict()}
                for k, v in sorted(self.buckets().items(), key=lambda kv: tuple(x or "" for x in kv[0]))
            ],
        }

    def to_json(self, **kwargs: Any) -> str:
        """:meth:`to_dict` as JSON (``kwargs`` go to ``json.dumps``, e.g. ``indent=2``)."""
        return json.dumps(self.to_dict(), **kwargs)

    def summary(self) -> str:
        """A readable table: one row per provider/model/deployment, then the total."""
        header = ("provider", "model", "deployment", "requests", "errors", "input", "output", "cached", "reasoning")
        rows: list[tuple[str, ...]] = []
        buckets = sorted(self.buckets().items(), key=lambda kv: tuple(x or "" for x in kv[0]))
        for (provider, model, deployment), t in buckets:
            rows.append((provider or "-", model or "-", deployment or "-", *_numbers(t)))
        total = self.totals
        rows.append(("TOTAL", "", "", *_numbers(total)))
        widths = [max(len(str(r[i])) for r in [(*header, "cost_usd"), *rows]) for i in range(len(header) + 1)]
        lines = []
        for index, row in enumerate([(*header, "cost_usd"), *rows]):
            cells = [str(cell).ljust(widths[i]) if i < 3 else str(cell).rjust(widths[i]) for i, cell in enumerate(row)]
            lines.append("  ".join(cells).rstrip())
            if index == 0 or index == len(rows) - 1:
                lines.append("  ".join("-" * w for w in widths))
        unattributed = total.errors - sum(t.errors for _, t in buckets)
        if unattributed:
            lines.append(f"{unattributed} failed attempt(s) reported only by a router's attempt count")
        if total.unpriced:
            lines.append(f"{total.unpriced} call(s) on models without a known price are not in cost_usd")
        if total.cache_hits:
            lines.append(f"{total.cache_hits} call(s) answered by a response cache (no tokens, no cost)")
        return "\n".join(lines)


def _numbers(t: UsageTotals) -> tuple[str, ...]:
    cost = f"{t.cost_usd:.6f}" + ("+?" if t.unpriced else "")
    if t.unpriced and not t.cost_usd:
        cost = "n/a"
    return (
        str(t.requests),
        str(t.errors),
        str(t.input_tokens),
        str(t.output_tokens),
        str(t.cached_tokens),
        str(t.reasoning_tokens),
        cost,
    )


# ---------------------------------------------------------------------- scoping
class _ScopeFanout(BaseCallbackHandler):
    """Forwards callback events to every handler of the enclosing ``track_usage`` scopes."""

    run_inline = True

    def __init__(self, handlers: tuple[BaseCallbackHandler, ...]) -> None:
        super().__init__()
        self.handlers = handlers

    def _forward(self, event: str, /, *args: Any, **kwargs: Any) -> None:
        for handler in self.handlers:
            getattr(handler, event)(*args, **kwargs)

    def on_chat_model_start(self, *args: Any, **kwargs: Any) -> None:
        self._forward("on_chat_model_start", *args, **kwargs)

    def on_llm_start(self, *args: Any, **kwargs: Any) -> None:
        self._forward("on_llm_start", *args, **kwargs)

    def on_llm_new_token(self, *args: Any, **kwargs: Any) -> None:
        self._forward("on_llm_new_token", *args, **kwargs)

    def on_llm_end(self, *args: Any, **kwargs: Any) -> None:
        self._forward("on_llm_end", *args, **kwargs)

    def on_llm_error(self, *args: Any, **kwargs: Any) -> None:
        self._forward("on_llm_error", *args, **kwargs)

    def on_chain_start(self, *args: Any, **kwargs: Any) -> None:
        self._forward("on_chain_start", *args, **kwargs)

    def on_chain_end(self, *args: Any, **kwargs: Any) -> None:
        self._forward("on_chain_end", *args, **kwargs)

    def on_chain_error(self, *args: Any, **kwargs: Any) -> None:
        self._forward("on_chain_error", *args, **kwargs)


def accounting_only(handlers: Sequence[BaseCallbackHandler]) -> bool:
    """Whether every handler is one of this package's accounting handlers, none of which streams.

    LangChain asks each handler of a chat-model run ``isinstance(h, _StreamingCallbackHandler)``,
    a runtime-Protocol check that costs tens of microseconds a call on Python 3.11; a model can
    skip the question when this holds (the answer would be no).
    """
    return all(isinstance(h, (_ScopeFanout, CallRecorder)) and not hasattr(h, "tap_output_iter") for h in handlers)


# One context variable, registered once (get_usage_metadata_callback registers a new one
# per call, which grows LangChain's hook list for the life of the process).
_scope: ContextVar[_ScopeFanout | None] = ContextVar("multigateway_usage_scope", default=None)
register_configure_hook(_scope, inheritable=True)


@contextmanager
def track_usage(
    *, prices: PriceTable | Mapping[str, Any] | None = None, keep_records: bool = False
) -> Iterator[UsageCallbackHandler]:
    """Count every chat-model call made inside the block; yields the live handler.

    Scopes nest (an outer scope sees the inner scope's calls too) and follow
    ``contextvars``: threads started by LangChain (``batch``) and asyncio tasks
    created inside the block are counted; other threads are not.
    """
    handler = UsageCallbackHandler(prices=prices, keep_records=keep_records)
    outer = _scope.get()
    token = _scope.set(_ScopeFanout((*(outer.handlers if outer else ()), handler)))
    try:
        yield handler
    finally:
        _scope.reset(token)


@asynccontextmanager
async def atrack_usage(
    *, prices: PriceTable | Mapping[str, Any] | None = None, keep_records: bool = False
) -> AsyncIterator[UsageCallbackHandler]:
    """Async twin of :func:`track_usage` (``async with atrack_usage() as usage:``)."""
    with track_usage(prices=prices, keep_records=keep_records) as handler:
        yield handler
