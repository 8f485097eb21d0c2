"""The routers a server serves, and one call through them (invoke or stream).

Every configured router is served under its name; every configured model too, as a
one-deployment router (so each target retries, records health and names its
deployment the same way). A call binds the client's tools and structured-output
request with the router's public API (``bind_tools``, the ``structured_output``
binding ``with_structured_output`` uses), runs it with ``ainvoke`` / ``astream``,
then records one ledger row tagged with the virtual key's id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import time
import warnings
import weakref
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessage, AIMessageChunk
from langchain_core.messages.ai import UsageMetadata, add_usage
from langchain_core.runnables import Runnable, RunnableConfig

from langchain_multigateway.errors import AllDeploymentsFailedError
from langchain_multigateway.routing import Deployment, RoutingChatModel, routers_from_config
from langchain_multigateway.routing.request import OUTPUT_RESERVE_CAP, estimate_tokens
from langchain_multigateway.routing.stream import SERVING
from langchain_multigateway.server.call import ChatCall, Outcome, header_value, usage_dict
from langchain_multigateway.server.keys import VirtualKey
from langchain_multigateway.server.passthrough import PassThrough
from langchain_multigateway.server.passthrough_stream import StreamThrough
from langchain_multigateway.usage.pricing import cost_of_usage
from langchain_multigateway.usage.records import CallRecord

if TYPE_CHECKING:
    from langchain_multigateway.config import GatewayConfig
    from langchain_multigateway.server.limits import KeyHold, KeyLimits
    from langchain_multigateway.server.metrics import ServerMetrics
    from langchain_multigateway.usage import Ledger

__all__ = ["ClientGoneError", "Gateway", "RoutedStream", "ServerStoppingError", "mark_stopping"]

logger = logging.getLogger("langchain_multigateway.server")
_OPENAI_COMPATIBLE = frozenset({"openai"})
FULL_PATH_ENV = "MULTIGATEWAY_SERVE_FULL_PATH"


class ClientGoneError(ConnectionAbortedError):
    """Recorded (never raised to anyone) for a call whose client left before its answer or its stream's end."""


class ServerStoppingError(ConnectionAbortedError):
    """Recorded (never raised to anyone) for a call the server cut short as it stopped: uvicorn's graceful
    timeout passed with the call unanswered. The client was told to send it again (503)."""


_STOPPING_LOOPS: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()


def mark_stopping() -> None:
    """The server on the running event loop began stopping: a call cut from now on is cut by the server
    (unless its client is known to have left). Kept per loop: several servers may share a process."""
    _STOPPING_LOOPS.add(asyncio.get_running_loop())


def _cut_short(before: str, client_left: Callable[[], bool] | None = None) -> ConnectionAbortedError:
    """What to record for a call cancelled ``before`` its end. A call is cancelled by its client leaving or by
    the server stopping: ``client_left`` says which when the caller knows, else the server's state does."""
    left = client_left() if client_left is not None else asyncio.get_running_loop() not in _STOPPING_LOOPS
    if left:
        return ClientGoneError(f"the client went away before {before}")
    return ServerStoppingError(f"the gateway stopped before {before}")


class Gateway:
    """Routers by name, plus what every call records (ledger, metrics, per-key limits)."""

    def __init__(
        self,
        routers: dict[str, RoutingChatModel],
        *,
        ledger: Ledger | None = None,
        metrics: ServerMetrics | None = None,
        limits: KeyLimits | None = None,
    ) -> None:
        self.routers = routers
        self.ledger = ledger
        self.metrics = metrics
        self.limits = limits
        self.unsettled = 0
        """Calls begun and not yet settled (recorded). The server waits for them before it closes the ledger."""
        self._all_settled: asyncio.Event | None = None
        # No callback handler by default: a run with handlers makes LangChain and the router
        # build a child run per attempt, which costs more than the rest of the server's work.
        # The metrics are fed from each call's settled record instead (:meth:`settle`).
        self._callbacks: list[BaseCallbackHandler] = []
        self._openai_only = {
            name: all(d.provider in _OPENAI_COMPATIBLE for d in router.deployments) for name, router in routers.items()
        }
        # Non-streamed calls skip LangChain's wrappers and the openai SDK (see passthrough.py);
        # streamed ones skip astream's run machinery (passthrough_stream.py);
        # MULTIGATEWAY_SERVE_FULL_PATH=1 sends every call through router.ainvoke / astream instead.
        lean = {} if os.environ.get(FULL_PATH_ENV) == "1" else routers
        self.passthrough = PassThrough(lean)
        self.streamthrough = StreamThrough(lean)

    @staticmethod
    def routers_of(config: GatewayConfig) -> dict[str, RoutingChatModel]:
        """Every router of ``config``, then every model not shadowed by a router of the same name."""
        routers = routers_from_config(config)
        for name in config.models:
            if name in routers:
                logger.warning("model %r is shadowed by the router of the same name", name)
                continue
            deployment = Deployment(model=config.build_model(name), name=name)
            routers[name] = RoutingChatModel(deployments=[deployment], model=name)
        return routers

    def warm_up(self) -> None:
        """Create each deployment's async client now, in the serving event loop.

        The first call would otherwise import the provider's SDK (about a second for
        openai) inside the event loop, stalling every request in flight.
        """
        for router in self.routers.values():
            for dep in router.deployments:
                try:
                    getattr(dep.model, "async_client", None)
                except Exception:  # a model that cannot build its client fails on its first call instead
                    logger.warning("could not prepare the client of deployment %r", dep.name, exc_info=True)
        self.passthrough.warm_up()

    # ------------------------------------------------------------------ one call
    def _bind(self, call: ChatCall) -> tuple[Runnable[Any, Any], dict[str, Any], list[str]]:
        router = self.routers[call.model]
        runnable: Runnable[Any, Any] = router
        if call.tools is not None:
            runnable = router.bind_tools(call.tools, tool_choice=call.tool_choice, **call.tool_kwargs)
        if call.structured is not None:
            runnable = runnable.bind(structured_output=call.structured)
        kwargs, ignored = self._params(call)
        return runnable, kwargs, ignored

    def _routed_kwargs(self, call: ChatCall) -> tuple[dict[str, Any], list[str]]:
        """What :meth:`_bind` binds, as the router's call kwargs (for the engine called directly)."""
        kwargs, ignored = self._params(call)
        if call.stop:
            del kwargs["stop"]  # passed on its own
        if call.tools is not None:
            tool_kwargs = dict(call.tool_kwargs)
            if call.tool_choice is not None:
                tool_kwargs["tool_choice"] = call.tool_choice
            kwargs["tools"] = list(call.tools)
            kwargs["tool_kwargs"] = tool_kwargs
        if call.structured is not None:
            kwargs["structured_output"] = call.structured
        return kwargs, ignored

    def _params(self, call: ChatCall) -> tuple[dict[str, Any], list[str]]:
        kwargs: dict[str, Any] = dict(call.params)
        if call.stop:
            kwargs["stop"] = call.stop
        ignored: list[str] = []
        if call.openai_params:
            if self._openai_only[call.model]:
                kwargs.update(call.openai_params)
            else:
                # seed, user and penalties would make other providers' APIs refuse the call.
                ignored = sorted(call.openai_params)
        return kwargs, ignored

    def _config(self, key: VirtualKey | None) -> RunnableConfig:
        config: RunnableConfig = {}
        if self._callbacks:
            config["callbacks"] = list(self._callbacks)
        if key is not None:
            config["tags"] = [key.tag]
            # the key's id scopes the router's response cache: one key's answers are never another's
            config["metadata"] = {"virtual_key": key.name, "cache_scope": key.tag}
        return config

    async def invoke(
        self,
        call: ChatCall,
        key: VirtualKey | None,
        hold: KeyHold | None = None,
        settle_later: list[Callable[[], None]] | None = None,
        client_left: Callable[[], bool] | None = None,
    ) -> tuple[AIMessage, Outcome, dict[str, Any] | None]:
        """Run a call to its end: the answer, what served it, and the upstream's own
        ``chat.completion`` JSON when it was passed through (else None); raises the router's typed errors.

        With ``settle_later``, an answered call's settling (ledger row, key limits, metrics) is
        appended there for the caller to run once the answer is on its way to the client: it is
        not the client's to wait for. A failed call is settled at once. ``client_left`` says, of a
        cancelled call, whether its client left (else the server cut it as it stopped).
        """
        started = time.time()
        data = None
        self.unsettled += 1
        try:
            if self.passthrough.serves(call.model):
                kwargs, ignored = self._routed_kwargs(call)
                served = await self.passthrough.invoke(call.model, call.messages, call.stop, kwargs)
                message = served.result.generations[0].message
                data = served.data
            else:
                runnable, kwargs, ignored = self._bind(call)
                message = await runnable.ainvoke(call.messages, self._config(key), **kwargs)
        except asyncio.CancelledError:
            self.settle(call, key, None, started, _cut_short("the answer", client_left), hold)
            raise
        except BaseException as exc:
            self.settle(call, key, None, started, exc, hold)
            raise
        assert isinstance(message, AIMessage)
        meta = message.response_metadata
        outcome = self._outcome(call, meta, message.usage_metadata)
        outcome.ignored = ignored
        if settle_later is None:
            self.settle(call, key, outcome, started, None, hold)
        else:
            ended = time.time()
            settle_later.append(lambda: self.settle(call, key, outcome, started, None, hold, ended=ended))
        return message, outcome, data

    def stream(self, call: ChatCall, key: VirtualKey | None, hold: KeyHold | None = None) -> RoutedStream:
        """A routed stream; call :meth:`RoutedStream.start` for its first chunk (failover ends there)."""
        self.unsettled += 1
        try:
            if self.streamthrough.serves(call.model):
                kwargs, ignored = self._routed_kwargs(call)
                chunks = self.streamthrough.stream(call.model, call.messages, call.stop, kwargs)
                return RoutedStream(self, call, key, chunks, ignored, hold)
            runnable, kwargs, ignored = self._bind(call)
        except BaseException as exc:
            self.settle(call, key, None, time.time(), exc, hold)
            raise
        chunks = runnable.astream(call.messages, self._config(key), **kwargs)
        return RoutedStream(self, call, key, chunks, ignored, hold)

    async def settled(self, seconds: float) -> bool:
        """Wait up to ``seconds`` for every call begun to be settled; whether they were.

        When uvicorn's graceful timeout passes it cancels the calls still running and, without waiting
        for them, runs the app's shutdown: a stream unwinds over several turns of the event loop, and
        closing the ledger first lost its record.
        """
        if self.unsettled <= 0:
            return True
        self._all_settled = asyncio.Event()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._all_settled.wait(), seconds)
        self._all_settled = None
        return self.unsettled <= 0

    def estimate_cost(self, call: ChatCall) -> float | None:
        """The most ``call`` may cost on a deployment of its router (None: no price known).

        Its prompt estimated (characters / 4), its ``max_tokens`` (else 1,024) of output,
        at the dearest deployment's prices: what a budget holds for a call whose key has
        no call of known cost yet.
        """
        router = self.routers[call.model]
        prompt = estimate_tokens(call.messages)[0]
        output = call.max_output_tokens() or OUTPUT_RESERVE_CAP
        usage = {"input_tokens": prompt, "output_tokens": output, "total_tokens": prompt + output}
        costs = []
        for dep in router.deployments:
            if dep.input_price or dep.output_price:
                costs.append(dep.estimated_cost(prompt, output))
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # an unpriced model: no estimate, and no warning per call
                cost = cost_of_usage(usage, dep.model_name, deployment=dep.name)
            if cost is not None:
                costs.append(cost)
        return max(costs) if costs else None

    def _outcome(self, call: ChatCall, meta: dict[str, Any], usage: Any) -> Outcome:
        """What served the call, unpriced: its cost is worked out when it is settled (after the answer)."""
        deployment = str(meta.get("deployment") or "")
        model_name = str(meta.get("model_name") or meta.get("model") or "")
        return Outcome(
            deployment=deployment,
            attempts=int(meta.get("attempts") or 1),
            model_name=model_name,
            provider=str(meta.get("model_provider") or meta.get("provider") or ""),
            usage=dict(usage) if usage else None,
            ttft_ms=meta.get("ttft_ms"),
            failed=list(meta.get("failed_attempts") or ()),
            cache=meta.get("cache") if meta.get("cache") in ("exact", "semantic", "miss") else None,
        )

    def _price(self, call: ChatCall, outcome: Outcome) -> float | None:
        """The call's USD cost (None: no price known)."""
        if outcome.cache in ("exact", "semantic"):  # answered by the router's response cache: nothing billed
            return 0.0
        return _cost(self.routers[call.model], outcome.deployment, outcome.model_name, outcome.usage)

    def settle(
        self,
        call: ChatCall,
        key: VirtualKey | None,
        outcome: Outcome | None,
        started: float,
        error: BaseException | None,
        hold: KeyHold | None = None,
        *,
        ended: float | None = None,
    ) -> None:
        """Record a finished call once: ledger row, per-key limits and counters (``ended``: when it ended,
        if not now)."""
        self.unsettled -= 1
        if self._all_settled is not None and self.unsettled <= 0:
            self._all_settled.set()
        ended = time.time() if ended is None else ended
        counts = usage_dict(outcome.usage if outcome is not None else None)
        cost: float | None = 0.0
        if outcome is not None:
            cost = outcome.cost_usd = self._price(call, outcome)
        if self.limits is not None and key is not None:
            self.limits.record(key, counts["total"], (cost or 0.0) if error is None else None, hold=hold)
        if self.metrics is not None and key is not None:
            self.metrics.key_call(key.name, "error" if error is not None else "ok", counts, cost)
        if self.ledger is None and self.metrics is None:
            return
        record = CallRecord(
            run_id=_run_id(),
            started_at=started,
            ended_at=ended,
            latency_ms=(ended - started) * 1000,
            provider=outcome.provider if outcome is not None else None,
            model=outcome.model_name if outcome is not None else call.model,
            deployment=outcome.deployment if outcome is not None else None,
            outcome="error" if error is not None else "ok",
            error_type=type(error).__name__ if error is not None else None,
            input_tokens=counts["input"],
            output_tokens=counts["output"],
            total_tokens=counts["total"],
            cached_tokens=counts["cached"],
            reasoning_tokens=counts["reasoning"],
            cost_usd=cost,
            has_usage=bool(outcome is not None and outcome.usage),
            tags=(key.tag, f"router:{call.model}") if key is not None else (f"router:{call.model}",),
            attempts=outcome.attempts if outcome is not None else 1,
            ttft_ms=outcome.ttft_ms if outcome is not None else None,
            cache=outcome.cache if outcome is not None else None,
        )
        if self.ledger is not None:
            if outcome is not None:
                failed = outcome.failed
            elif isinstance(error, AllDeploymentsFailedError):
                failed = [a.as_metadata() for a in error.attempts]
            else:
                failed = []
            self.ledger.add(record, failed=failed)  # each failed try too, for the dashboard's failovers
        if self.metrics is not None:
            self.metrics.calls(self._attempt_records(call, record, outcome, error))

    def _attempt_records(
        self, call: ChatCall, record: CallRecord, outcome: Outcome | None, error: BaseException | None
    ) -> list[CallRecord]:
        """The call's record for the metrics, preceded by one per failed try (its deployment's error)."""
        if outcome is not None:
            failed = [(f.get("deployment"), f.get("error_type"), f.get("latency_ms")) for f in outcome.failed]
        elif isinstance(error, AllDeploymentsFailedError):
            failed = [
                (a.deployment, type(a.error).__name__ if a.error is not None else None, a.latency_ms)
                for a in error.attempts
            ]
        else:
            failed = []
        router = self.routers[call.model]
        records = []
        for deployment, error_type, latency_ms in failed:
            try:
                dep: Deployment | None = router.deployment(str(deployment))
            except KeyError:
                dep = None
            records.append(
                replace(
                    record,
                    deployment=str(deployment or ""),
                    provider=dep.provider if dep is not None else None,
                    model=dep.model_name if dep is not None else None,
                    outcome="error",
                    error_type=str(error_type or "Exception"),
                    latency_ms=float(latency_ms or 0.0),
                    has_usage=False,
                    cost_usd=0.0,
                    ttft_ms=None,
                )
            )
        if outcome is not None or not records:  # a call that failed on every try is counted by its tries
            records.append(record)
        return records


_UUID_KEEP = ~((0xF000 << 64) | (0xC000 << 48))  # the version nibble and the variant bits, set below
_UUID_V4 = (0x4000 << 64) | (0x8000 << 48)


def _run_id() -> str:
    """A random (version 4) UUID's text, from the process's PRNG rather than the OS (``uuid4`` makes a system
    call, and ``UUID`` objects check their input): an id, never a secret. ``random`` reseeds in each forked
    worker, so workers do not repeat ids."""
    bits = (random.getrandbits(128) & _UUID_KEEP) | _UUID_V4
    text = f"{bits:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def _cost(router: RoutingChatModel, deployment: str, model: str, usage: dict[str, Any] | None) -> float | None:
    """USD at the deployment's own prices when it states them, else from the price table."""
    if not usage:
        return 0.0
    try:
        dep = router.deployment(deployment)
    except KeyError:
        dep = None
    if dep is not None and (dep.input_price or dep.output_price):
        counts = usage_dict(usage)
        return dep.estimated_cost(counts["input"], counts["output"])
    return cost_of_usage(usage, model or None, deployment=deployment or None)


class RoutedStream:
    """A routed stream: the first chunk decides the deployment; the rest are passed on once.

    Closing it (:meth:`aclose`, also on a client that went away) closes the router's
    stream, which cancels the upstream request and releases what the call held.
    """

    def __init__(
        self,
        gateway: Gateway,
        call: ChatCall,
        key: VirtualKey | None,
        chunks: AsyncIterator[AIMessageChunk],
        ignored: list[str],
        hold: KeyHold | None = None,
    ) -> None:
        self.gateway, self.call, self.key = gateway, call, key
        self._hold = hold
        self._chunks = chunks
        self._served_by: tuple[str, int] | None = None
        """``(deployment, try number)``: the router sets it as the first chunk is passed on."""
        self._ignored = ignored
        self._started = time.time()
        self._usage: UsageMetadata | None = None
        self._meta: dict[str, Any] = {}
        self._settled = False
        self.first: AIMessageChunk | None = None

    async def start(self, client_left: Callable[[], bool] | None = None) -> AIMessageChunk | None:
        """Wait for the first chunk (errors before it raise here); None for an empty stream. ``client_left``
        says, if it is cancelled, whether its client left (else the server cut it as it stopped)."""
        SERVING.set(None)
        try:
            self.first = await self._chunks.__anext__()
        except StopAsyncIteration:
            self._settle(None)
            return None
        except asyncio.CancelledError:  # the client went away (or the server is stopping) before the first chunk
            self._settle(_cut_short("the stream's first chunk", client_left))
            raise
        except BaseException as exc:
            self._settle(exc)
            raise
        self._served_by = SERVING.get()
        self._note(self.first)
        return self.first

    def headers(self) -> dict[str, str]:
        """Deployment and attempt headers, known once :meth:`start` returned."""
        deployment, attempt = self._served_by or (self.call.model, 1)
        headers = {"x-multigateway-deployment": header_value(deployment), "x-multigateway-attempts": str(attempt)}
        if self._ignored:
            headers["x-multigateway-ignored-params"] = ",".join(self._ignored)
        return headers

    def _note(self, chunk: AIMessageChunk) -> None:
        if chunk.usage_metadata:
            self._usage = add_usage(self._usage, chunk.usage_metadata) if self._usage else chunk.usage_metadata
        if chunk.response_metadata:
            self._meta.update(chunk.response_metadata)

    async def rest(self) -> AsyncIterator[AIMessageChunk]:
        """The chunks after the first; settles the call when the stream ends or fails."""
        try:
            async for chunk in self._chunks:
                self._note(chunk)
                yield chunk
        except (GeneratorExit, asyncio.CancelledError):
            self._settle(_cut_short("the stream ended"))
            raise
        except BaseException as exc:
            self._settle(exc)
            raise
        self._settle(None)

    def outcome(self) -> Outcome:
        outcome = self.gateway._outcome(self.call, self._meta, self._usage)
        outcome.deployment = outcome.deployment or (self._served_by[0] if self._served_by else "")
        return outcome

    def _settle(self, error: BaseException | None) -> None:
        if self._settled:
            return
        self._settled = True
        outcome = self.outcome() if error is None else None
        self.gateway.settle(self.call, self.key, outcome, self._started, error, self._hold)

    async def aclose(self) -> None:
        """Close the router's stream (idempotent); a stream cut short is recorded as cancelled."""
        if not self._settled:
            self._settle(_cut_short("the stream ended"))
        aclose = getattr(self._chunks, "aclose", None)
        if aclose is not None:
            await aclose()
