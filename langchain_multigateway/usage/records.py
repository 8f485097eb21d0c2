"""One record per model call, from LangChain callback events, each served call counted once.

:class:`CallRecorder` is the base of every accounting handler here (usage totals,
budgets, the ledger, Prometheus). It follows chat-model runs and turns their end
(or failure) into :class:`CallRecord` objects:

* A served call gives one ``ok`` record with its ``usage_metadata``.
* A failed call gives one ``error`` record with no tokens, unless the error
  carried usage (``error.usage_metadata``, or usage in the partial generation
  LangChain hands ``on_llm_error``): a provider that billed a failure is counted.
* A router's ``AllDeploymentsFailedError`` gives one ``error`` record per attempt,
  attributed to the attempt's deployment.
* **Nested chat-model runs** (a router, or any wrapper model, that propagates
  callbacks to the model it calls) fire ``on_llm_end`` twice for one served call.
  Records of inner runs are held by their nearest chat-model ancestor until it
  ends. When the outer run ends with usage, its own record (which carries the
  router's ``deployment`` and ``attempts``) stands for the served call and the
  inner *successful* records are dropped; the inner *failed* attempts are kept.
  When the outer run has no usage of its own, or fails, the inner records are
  used instead. Either way each served call is counted exactly once.

Ancestry goes through intermediate chain runs, so a wrapper that calls its inner
model through a small chain is handled too. Records are emitted when the
outermost chat-model run ends. All state sits behind one lock: sync and async
runs (LangChain calls sync handlers from async code, inline here) may interleave.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, LLMResult

from langchain_multigateway.usage.pricing import PriceTable, as_price_table, cache_write_tokens

__all__ = ["CallRecord", "CallRecorder", "usage_counts"]

Outcome = Literal["ok", "error"]
_RECENT_IDS = 4096


@dataclass(frozen=True)
class CallRecord:
    """What one model call (or one failed attempt) cost and how it went."""

    run_id: str
    started_at: float
    """Epoch seconds when the call started."""
    ended_at: float
    latency_ms: float
    provider: str | None
    model: str | None
    """The model as configured (what the caller asked for); usage and prices are keyed on it."""
    deployment: str | None
    outcome: Outcome
    error_type: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    cached_tokens: int = 0
    cache_creation_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: float | None = 0.0
    """USD; None when the model has no known price (and tokens were used)."""
    has_usage: bool = False
    """Whether the provider reported usage for this call."""
    tags: tuple[str, ...] = ()
    parent_run_id: str | None = None
    attempts: int = 1
    """Tries the call took (a router's ``response_metadata["attempts"]``)."""
    hidden_failures: int = 0
    """Failed attempts that no callback reported (a router that does not propagate callbacks)."""
    ttft_ms: float | None = None
    """Time to the first streamed token, when streamed."""
    served_model: str | None = None
    """The model name the server answered with (a dated id, a file path), when it differs or is known."""
    cache: str | None = None
    """A router's response cache: ``"exact"`` / ``"semantic"`` (a hit: no provider was called, zero cost),
    ``"miss"`` (looked up, then served), None (not consulted)."""

    def to_dict(self) -> dict[str, Any]:
        """The record as a plain dict (tags as a list)."""
        data = asdict(self)
        data["tags"] = list(self.tags)
        return data


_COUNTS = (
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "cached_tokens",
    "cache_creation_tokens",
    "reasoning_tokens",
)


def usage_counts(usage: Mapping[str, Any] | None) -> dict[str, int]:
    """Token counts from a ``UsageMetadata``-shaped mapping."""
    return dict(zip(_COUNTS, _counts(usage), strict=True))


def _counts(usage: Mapping[str, Any] | None) -> tuple[int, int, int, int, int, int]:
    """The counts of :func:`usage_counts`, in ``_COUNTS`` order (no dict built per record)."""
    if not usage:
        return (0, 0, 0, 0, 0, 0)
    input_details = usage.get("input_token_details") or {}
    output_details = usage.get("output_token_details") or {}
    input_tokens = int(usage.get("input_tokens") or 0)
    output_tokens = int(usage.get("output_tokens") or 0)
    return (
        input_tokens,
        output_tokens,
        int(usage.get("total_tokens") or input_tokens + output_tokens),
        int(input_details.get("cache_read") or 0),
        sum(cache_write_tokens(input_details)),  # generic, or split by TTL (Anthropic), counted once
        int(output_details.get("reasoning") or 0),
    )


@dataclass(slots=True)
class _Run:
    run_id: UUID
    parent_run_id: UUID | None
    chat_parent: UUID | None
    started_at: float
    started_mono: float
    tags: tuple[str, ...]
    metadata: dict[str, Any]
    params: dict[str, Any]
    messages: list[BaseMessage] = field(default_factory=list)
    first_token_mono: float | None = None
    children: list[CallRecord] = field(default_factory=list)
    has_chat_child: bool = False
    state: dict[str, Any] = field(default_factory=dict)
    """Room for subclasses (a span, a reservation)."""
    where: tuple[int, int] = (0, 0)
    """Thread and asyncio task the run started in."""


class CallRecorder(BaseCallbackHandler):
    """Base handler: follows chat-model runs and emits :class:`CallRecord` objects.

    Subclasses implement :meth:`_emit` (called with the records of one outermost
    run, outside the lock) and may override :meth:`_on_start` / :meth:`_on_finish`.
    """

    run_inline = True
    """Cheap and thread-safe, so async runs call it inline rather than in a thread pool."""

    keep_messages = False
    """Keep the input messages of each run (for handlers that need them)."""

    def __init__(self, *, prices: PriceTable | Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.prices = as_price_table(prices)
        self._runs_lock = threading.Lock()
        self._runs: dict[UUID, _Run] = {}
        self._chains: dict[UUID, UUID | None] = {}
        self._recent: OrderedDict[tuple[str, str | None, int, tuple[int, int]], float] = OrderedDict()

    # ------------------------------------------------------------------ ancestry
    def on_chain_start(
        self,
        serialized: dict[str, Any] | None,
        inputs: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        with self._runs_lock:
            self._chains[run_id] = parent_run_id

    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        with self._runs_lock:
            self._chains.pop(run_id, None)

    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        with self._runs_lock:
            self._chains.pop(run_id, None)

    def _chat_ancestor(self, parent: UUID | None) -> UUID | None:
        seen = 0
        while parent is not None and seen < 1000:
            if parent in self._runs:
                return parent
            if parent not in self._chains:
                return None
            parent = self._chains[parent]
            seen += 1
        return None

    # ------------------------------------------------------------------ start
    def on_chat_model_start(
        self,
        serialized: dict[str, Any] | None,
        messages: list[list[BaseMessage]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Any:
        self._start(run_id, parent_run_id, tags, metadata, kwargs, messages[0] if messages else [])

    def on_llm_start(
        self,
        serialized: dict[str, Any] | None,
        prompts: list[str],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Any:
        self._start(run_id, parent_run_id, tags, metadata, kwargs, [])

    def _start(
        self,
        run_id: UUID,
        parent_run_id: UUID | None,
        tags: list[str] | None,
        metadata: dict[str, Any] | None,
        kwargs: dict[str, Any],
        messages: list[BaseMessage],
    ) -> None:
        with self._runs_lock:
            chat_parent = self._chat_ancestor(parent_run_id)
            run = _Run(
                run_id=run_id,
                parent_run_id=parent_run_id,
                chat_parent=chat_parent,
                started_at=time.time(),
                started_mono=time.perf_counter(),
                tags=tuple(tags or ()),
                metadata=dict(metadata or {}),
                params=dict(kwargs.get("invocation_params") or {}),
                messages=list(messages) if self.keep_messages else [],
                where=_where(),
            )
            if chat_parent is not None:
                self._runs[chat_parent].has_chat_child = True
            self._runs[run_id] = run
        try:
            self._on_start(run)
        except BaseException:
            with self._runs_lock:
                self._runs.pop(run_id, None)
            raise

    def on_llm_new_token(self, token: Any, *, run_id: UUID, **kwargs: Any) -> None:
        run = self._runs.get(run_id)
        if run is not None and run.first_token_mono is None:
            run.first_token_mono = time.perf_counter()

    # ------------------------------------------------------------------ end
    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        message = _message_of(response)
        self._finish(run_id, message, None)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        response = kwargs.get("response")
        message = _message_of(response) if isinstance(response, LLMResult) else None
        self._finish(run_id, message, error)

    def _finish(self, run_id: UUID, message: AIMessage | None, error: BaseException | None) -> None:
        ended_mono = time.perf_counter()
        with self._runs_lock:
            run = self._runs.pop(run_id, None)
        if run is None:
            return
        own = self._own_records(run, message, error, ended_mono)
        records = self._settle(run, own, error)
        if records is not None and error is None and message is not None and message.id:
            records = self._drop_rereport(run, message.id, own, records)
        try:
            self._on_finish(run, message, error, own)
        finally:
            if records is not None:
                self._emit_run(run, records)

    def _settle(self, run: _Run, own: list[CallRecord], error: BaseException | None) -> list[CallRecord] | None:
        """Merge a run's records with its children's; pass them up, or return them to emit."""
        children = run.children
        if not children:
            result = own
            if error is None and len(own) == 1 and own[0].attempts > 1:
                result = [replace(own[0], hidden_failures=own[0].attempts - 1)]
        elif error is None and own and own[0].has_usage:
            failed = [r for r in children if r.outcome == "error"]
            hidden = max(0, own[0].attempts - 1 - len(failed))
            # A new record only when something is hidden: own records are built with none.
            result = [*failed, replace(own[0], hidden_failures=hidden) if hidden else own[0]]
        else:
            result = list(children)
        with self._runs_lock:
            parent = self._runs.get(run.chat_parent) if run.chat_parent is not None else None
            if parent is not None:
                parent.children.extend(result)
                return None
        return result

    def _drop_rereport(
        self, run: _Run, message_id: str, own: list[CallRecord], records: list[CallRecord]
    ) -> list[CallRecord]:
        """Drop a root run that re-reports a call already counted inside it.

        LangChain's ``stream()`` gives ``_stream`` no run manager, so a wrapper model
        (a router) that streams from an inner model cannot link the inner run to its
        own: the inner run starts as a root run of its own. Its final message, passed
        through, reaches the wrapper's ``on_llm_end`` with the same id, model and
        usage, in the same thread (or asyncio task). A root run whose message matches
        one counted from a run that started after it did, in the same thread or task,
        is that case: the served call was counted once already. (Concurrent calls run
        in other tasks or threads, so a server that reuses response ids cannot merge
        them.)
        """
        first = own[0] if len(own) == 1 else None
        if first is None or not first.has_usage or run.children:
            return records
        key = (message_id, first.served_model or first.model, first.total_tokens, run.where)
        with self._runs_lock:
            seen = self._recent.get(key)
            if seen is not None and seen >= run.started_mono:
                del self._recent[key]
                return []
            self._recent[key] = run.started_mono
            while len(self._recent) > _RECENT_IDS:
                self._recent.popitem(last=False)
        return records

    def _own_records(
        self, run: _Run, message: AIMessage | None, error: BaseException | None, ended_mono: float
    ) -> list[CallRecord]:
        meta: Mapping[str, Any] = message.response_metadata if message is not None else {}  # read only
        ls_provider = run.metadata.get("ls_provider")
        provider = meta.get("provider") or meta.get("model_provider") or ls_provider
        served = meta.get("model_name") or meta.get("model")
        configured = run.metadata.get("ls_model_name") or run.params.get("model") or run.params.get("model_name")
        routed_to = meta.get("deployment")
        if routed_to and routed_to != run.metadata.get("deployment"):
            # A router's own run: its ls_model_name names the router, so the model as
            # configured comes from the deployment's run (or, failing that, the server).
            configured = _configured_model(run.children, routed_to)
        model = configured or served
        deployment = meta.get("deployment") or run.metadata.get("deployment")
        latency_ms = (ended_mono - run.started_mono) * 1000
        ttft = None if run.first_token_mono is None else (run.first_token_mono - run.started_mono) * 1000
        base = {
            "run_id": str(run.run_id),
            "parent_run_id": None if run.parent_run_id is None else str(run.parent_run_id),
            "started_at": run.started_at,
            "ended_at": run.started_at + latency_ms / 1000,
            "latency_ms": latency_ms,
            "tags": run.tags,
            "ttft_ms": ttft,
        }
        usage: Mapping[str, Any] | None = message.usage_metadata if message is not None else None
        if error is not None:
            attempts = getattr(error, "attempts", None)
            if not run.has_chat_child and isinstance(attempts, Sequence) and attempts and not usage:
                return [self._attempt_record(base, a, provider, model) for a in attempts]
            error_usage = getattr(error, "usage_metadata", None)
            usage = error_usage if isinstance(error_usage, Mapping) else usage
        attempts_meta = meta.get("attempts")
        cache = meta.get("cache")
        return [
            self._record(
                base,
                provider=provider,
                model=model,
                served=served,
                deployment=deployment,
                usage=usage,
                outcome="ok" if error is None else "error",
                error_type=None if error is None else type(error).__name__,
                attempts=attempts_meta if isinstance(attempts_meta, int) and attempts_meta > 0 else 1,
                cache=cache if cache in ("exact", "semantic", "miss") else None,
            )
        ]

    def _attempt_record(self, base: dict[str, Any], attempt: Any, provider: Any, model: Any) -> CallRecord:
        inner = getattr(attempt, "error", None)
        latency = getattr(attempt, "latency_ms", None)
        fields = dict(base)
        if isinstance(latency, (int, float)):
            fields["latency_ms"] = float(latency)
        return self._record(
            fields,
            provider=getattr(inner, "provider", None) or provider,
            model=getattr(inner, "model", None) or model,
            served=None,
            deployment=getattr(attempt, "deployment", None),
            usage=getattr(inner, "usage_metadata", None),
            outcome="error" if inner is not None else "ok",
            error_type=None if inner is None else type(inner).__name__,
            attempts=1,
        )

    def _record(
        self,
        base: dict[str, Any],
        *,
        provider: Any,
        model: Any,
        served: Any,
        deployment: Any,
        usage: Any,
        outcome: Outcome,
        error_type: str | None,
        attempts: int,
        cache: str | None = None,
    ) -> CallRecord:
        usage = usage if isinstance(usage, Mapping) else None
        input_tokens, output_tokens, total_tokens, cached, cache_creation, reasoning = _counts(usage)
        model_s = str(model) if model else None
        served_s = str(served) if served else None
        deployment_s = str(deployment) if deployment else None
        if cache in ("exact", "semantic"):
            cost: float | None = 0.0  # a response-cache hit: no provider was called
        elif usage:
            cost = self.prices.cost(usage, model_s, deployment=deployment_s, served=served_s)
        else:
            # Nothing billed: free if the model has a price, unknown (not zero) if it has none.
            known = self.prices.lookup(model_s, deployment=deployment_s, served=served_s) is not None
            cost = 0.0 if known else None
        return CallRecord(
            **base,
            provider=str(provider) if provider else None,
            model=model_s,
            served_model=served_s,
            deployment=deployment_s,
            outcome=outcome,
            error_type=error_type,
            cost_usd=cost,
            has_usage=usage is not None,
            attempts=attempts,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            total_tokens=total_tokens,
            cached_tokens=cached,
            cache_creation_tokens=cache_creation,
            reasoning_tokens=reasoning,
            cache=cache,
        )

    # ------------------------------------------------------------------ hooks
    def _on_start(self, run: _Run) -> None:
        """Called after a chat-model run starts (may raise to refuse it)."""

    def _on_finish(
        self, run: _Run, message: AIMessage | None, error: BaseException | None, own: list[CallRecord]
    ) -> None:
        """Called when a run ends, nested or not, with its own records."""

    def _emit_run(self, run: _Run, records: list[CallRecord]) -> None:
        """Receive the records of outermost run ``run``; by default passes them to :meth:`_emit`."""
        self._emit(records)

    def _emit(self, records: list[CallRecord]) -> None:
        """Receive the records of one outermost chat-model run."""

    def active_runs(self) -> int:
        """Runs started and not yet ended (for leak checks)."""
        with self._runs_lock:
            return len(self._runs)


def _configured_model(children: list[CallRecord], deployment: str) -> str | None:
    """The configured model of the deployment run that served a routed call."""
    for record in reversed(children):
        if record.deployment == deployment and record.outcome == "ok":
            return record.model
    return None


def _where() -> tuple[int, int]:
    loop = asyncio._get_running_loop()  # None outside a loop, where current_task() would raise (slow)
    task = asyncio.current_task(loop) if loop is not None else None
    return threading.get_ident(), id(task) if task is not None else 0


def _message_of(response: LLMResult | None) -> AIMessage | None:
    if response is None:
        return None
    for generations in response.generations:
        for generation in generations:
            if isinstance(generation, ChatGeneration) and isinstance(generation.message, AIMessage):
                return generation.message
    return None
