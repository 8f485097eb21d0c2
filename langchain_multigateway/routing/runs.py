"""Child runs for the router's attempts, so callback handlers see each try at a deployment.

The router calls a deployment's ``_generate`` / ``_stream`` (and async twins)
directly, without LangChain's callback plumbing. When the router's own run has
handlers, each attempt becomes a child chat-model run of it: the router fires
``on_chat_model_start`` (with the deployment model's provider and model name and
``metadata={"deployment": name, "attempt": n}``), passes the child run manager to
the deployment (streamed tokens reach it), and ends it with ``on_llm_end`` or
``on_llm_error``. Usage handlers then put a failed attempt under its deployment,
and count the served call once (its record is the router run's, see
:mod:`langchain_multigateway.usage.records`); tracers show the attempts as child
spans. With no handlers nothing of this runs.

``stream()`` / ``astream()`` give ``_stream`` no run manager, so the router's
``stream`` override fixes the run id in the config and passes the config along
under ``STREAM_RUN``; ``_stream`` rebuilds the run's callback manager from it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol
from uuid import UUID

from langchain_core.callbacks import (
    AsyncCallbackManager,
    AsyncCallbackManagerForLLMRun,
    BaseCallbackHandler,
    BaseCallbackManager,
    CallbackManager,
    CallbackManagerForLLMRun,
)
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatGenerationChunk, ChatResult, LLMResult
from langchain_core.outputs.chat_generation import merge_chat_generation_chunks
from langchain_core.runnables import RunnableConfig

from langchain_multigateway.routing.deployment import Deployment

__all__ = ["STREAM_RUN", "AsyncChildRun", "AttemptRuns", "ChildRun", "StreamRun"]

STREAM_RUN = "_multigateway_stream_run"
"""The kwarg under which the router's ``stream()`` hands ``_stream`` its run."""


class Prepared(Protocol):
    """What a child run needs of a prepared deployment call (see ``prepare.Prepared``)."""

    @property
    def model(self) -> Any: ...
    @property
    def kwargs(self) -> dict[str, Any]: ...
    @property
    def runnable(self) -> Any: ...


class StreamRun:
    """The router's stream run, as ``_stream`` can know it: its config, with the run id fixed."""

    __slots__ = ("config", "is_async", "run_id")

    def __init__(self, config: RunnableConfig, run_id: UUID, *, is_async: bool) -> None:
        self.config = config
        self.run_id = run_id
        self.is_async = is_async

    def __repr__(self) -> str:  # never the config (it may hold handlers with secrets)
        return f"StreamRun({self.run_id})"


_LS_METADATA: dict[tuple[Any, ...], tuple[Any, dict[str, Any]]] = {}


def _ls_metadata(model: Any, stop: list[str] | None, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The model's LangSmith params for these call kwargs; remembered (LangChain's default is a pydantic dump)."""
    try:
        key: tuple[Any, ...] | None = (id(model), tuple(stop or ()), *sorted(kwargs.items()))
        hash(key)
    except TypeError:  # an unhashable kwarg value (a tools list, a schema): compute it
        key = None
    hit = _LS_METADATA.get(key) if key is not None else None
    if hit is not None and hit[0] is model:
        return hit[1]
    try:
        params = model._get_ls_params(stop=stop, **kwargs)
    except Exception:  # pragma: no cover - a model with a broken _get_ls_params
        return {}
    found = {k: v for k, v in params.items() if v is not None}
    if key is not None:
        if len(_LS_METADATA) > 512:
            _LS_METADATA.clear()
        _LS_METADATA[key] = (model, found)
    return found


_BASE_PARAMS: dict[int, tuple[Any, dict[str, Any]]] = {}


def _base_params(model: Any) -> dict[str, Any]:
    """The model's invocation params without call kwargs, computed once per model (a pydantic dump is slow)."""
    hit = _BASE_PARAMS.get(id(model))
    if hit is None or hit[0] is not model:
        try:
            params = dict(model._get_invocation_params())
        except Exception:  # pragma: no cover - depends on the model
            params = {}
        if len(_BASE_PARAMS) > 512:
            _BASE_PARAMS.clear()
        hit = _BASE_PARAMS[id(model)] = (model, params)
    return hit[1]


class _WatchedRun(CallbackManagerForLLMRun):
    """A child run as handed to a deployment: remembers an exception a handler raised (``raise_error=True``),
    so that the try is not mistaken for the deployment's failure (no breaker counts it, no failover repeats it)."""

    raised: BaseException | None = None

    def on_llm_new_token(self, token: Any, *, chunk: Any = None, **kwargs: Any) -> None:
        try:
            super().on_llm_new_token(token, chunk=chunk, **kwargs)
        except Exception as exc:
            self.raised = exc
            raise


class _WatchedAsyncRun(AsyncCallbackManagerForLLMRun):
    """The async twin of :class:`_WatchedRun`."""

    raised: BaseException | None = None

    async def on_llm_new_token(self, token: Any, *, chunk: Any = None, **kwargs: Any) -> None:
        try:
            await super().on_llm_new_token(token, chunk=chunk, **kwargs)
        except Exception as exc:
            self.raised = exc
            raise


def _watched(run: Any, cls: type[_WatchedRun] | type[_WatchedAsyncRun]) -> Any:
    return cls(
        run_id=run.run_id,
        handlers=run.handlers,
        inheritable_handlers=run.inheritable_handlers,
        parent_run_id=run.parent_run_id,
        tags=run.tags,
        inheritable_tags=run.inheritable_tags,
        metadata=run.metadata,
        inheritable_metadata=run.inheritable_metadata,
    )


class AttemptRuns:
    """Makes one child run per attempt of one router run (built only when it has handlers)."""

    __slots__ = ("handlers", "inheritable_handlers", "is_async", "metadata", "parent_run_id", "tags")

    def __init__(
        self,
        *,
        handlers: Sequence[BaseCallbackHandler],
        inheritable_handlers: Sequence[BaseCallbackHandler],
        parent_run_id: UUID,
        tags: Sequence[str],
        metadata: dict[str, Any],
        is_async: bool,
    ) -> None:
        self.handlers = list(handlers)
        self.inheritable_handlers = list(inheritable_handlers)
        self.parent_run_id = parent_run_id
        self.tags = list(tags)
        self.metadata = metadata
        self.is_async = is_async

    @classmethod
    def of(cls, run_manager: CallbackManagerForLLMRun | AsyncCallbackManagerForLLMRun | None) -> AttemptRuns | None:
        """Child runs of a router run; None when it has no handlers (nothing to tell)."""
        if run_manager is None or not run_manager.handlers:
            return None
        return cls(
            handlers=run_manager.handlers,
            inheritable_handlers=run_manager.inheritable_handlers,
            parent_run_id=run_manager.run_id,
            tags=run_manager.inheritable_tags,
            metadata=dict(run_manager.inheritable_metadata),
            is_async=isinstance(run_manager, AsyncCallbackManagerForLLMRun),
        )

    @classmethod
    def of_stream(cls, run: StreamRun, router: Any, *, is_async: bool) -> AttemptRuns | None:
        """Child runs of a ``stream()`` run, its callback manager rebuilt from the config."""
        config = run.config
        manager = CallbackManager.configure(
            config.get("callbacks"),
            router.callbacks,
            router.verbose,
            config.get("tags"),
            router.tags,
            config.get("metadata"),
            router.metadata,
        )
        if not manager.handlers:
            return None
        return cls(
            handlers=manager.handlers,
            inheritable_handlers=manager.inheritable_handlers,
            parent_run_id=run.run_id,
            tags=manager.inheritable_tags,
            metadata=dict(manager.inheritable_metadata),
            is_async=is_async,
        )

    def manager(self, dep: Deployment, number: int, stop: list[str] | None, kwargs: dict[str, Any]) -> Any:
        """A callback manager for attempt ``number`` at ``dep`` (child of the router run)."""
        metadata = {**self.metadata, **_ls_metadata(dep.model, stop, kwargs), "deployment": dep.name, "attempt": number}
        cls = AsyncCallbackManager if self.is_async else CallbackManager
        return cls(
            handlers=list(self.handlers),
            inheritable_handlers=list(self.inheritable_handlers),
            parent_run_id=self.parent_run_id,
            tags=list(self.tags),
            inheritable_tags=list(self.tags),
            metadata=metadata,
            inheritable_metadata=dict(metadata),
        )

    def _start_args(self, p: Prepared, messages: list[BaseMessage], stop: list[str] | None) -> dict[str, Any]:
        params = {**_base_params(p.model), "stop": stop, **p.kwargs}
        return {"invocation_params": params, "options": {"stop": stop}, "batch_size": 1}

    def start(
        self, dep: Deployment, p: Prepared, messages: list[BaseMessage], stop: list[str] | None, number: int
    ) -> ChildRun:
        """Open the child run of a sync attempt."""
        manager: CallbackManager = self.manager(dep, number, stop, p.kwargs)
        if p.runnable is not None:  # the runnable opens its own runs under this manager
            return ChildRun(None, manager)
        (run,) = manager.on_chat_model_start(p.model._serialized, [messages], **self._start_args(p, messages, stop))
        return ChildRun(_watched(run, _WatchedRun), manager)

    async def astart(
        self, dep: Deployment, p: Prepared, messages: list[BaseMessage], stop: list[str] | None, number: int
    ) -> AsyncChildRun:
        """Open the child run of an async attempt."""
        manager: AsyncCallbackManager = self.manager(dep, number, stop, p.kwargs)
        if p.runnable is not None:
            return AsyncChildRun(None, manager)
        runs = await manager.on_chat_model_start(p.model._serialized, [messages], **self._start_args(p, messages, stop))
        return AsyncChildRun(_watched(runs[0], _WatchedAsyncRun), manager)


def _without_usage(generation: Any) -> Any:
    # The served call's usage is reported once, by the router's own run: an attempt
    # that also carried it would be counted twice by any handler that sums
    # on_llm_end usage (LangChain's get_usage_metadata_callback, LangSmith, ours).
    message = getattr(generation, "message", None)
    if message is None or getattr(message, "usage_metadata", None) is None:
        return generation
    return generation.model_copy(update={"message": message.model_copy(update={"usage_metadata": None})})


def _result(result: ChatResult | None) -> LLMResult:
    if result is None:
        return LLMResult(generations=[])
    return LLMResult(generations=[[_without_usage(g) for g in result.generations]], llm_output=result.llm_output)


def _merged(chunks: list[ChatGenerationChunk]) -> LLMResult:
    merged = merge_chat_generation_chunks(chunks)
    return LLMResult(generations=[[_without_usage(merged)]] if merged is not None else [])


def _closing(
    error: BaseException | None, result: ChatResult | None, chunks: list[ChatGenerationChunk]
) -> tuple[str, tuple[Any, ...], dict[str, Any]]:
    """How a try's child run ends: ``on_llm_end`` (also when the consumer stopped reading), else ``on_llm_error``."""
    if error is None or isinstance(error, GeneratorExit):
        return "on_llm_end", (_result(result) if result is not None else _merged(chunks),), {}
    return "on_llm_error", (error,), {"response": _merged(chunks)}


class ChildRun:
    """One attempt's child run (sync); ``run`` is None when a runnable reports its own runs."""

    __slots__ = ("callbacks", "chunks", "run")

    def __init__(self, run: _WatchedRun | None, callbacks: BaseCallbackManager) -> None:
        self.run = run
        self.callbacks = callbacks
        self.chunks: list[ChatGenerationChunk] = []

    @property
    def raised(self) -> BaseException | None:
        """What a callback handler raised during the try (``raise_error=True``), if anything."""
        return None if self.run is None else self.run.raised

    def report(self, error: BaseException | None, result: ChatResult | None) -> None:
        """End the child run: ``on_llm_end``, or ``on_llm_error`` when the try failed."""
        if self.run is not None:
            event, args, kwargs = _closing(error, result, self.chunks)
            try:
                getattr(self.run, event)(*args, **kwargs)
            except Exception as exc:
                self.run.raised = exc
                raise


class AsyncChildRun:
    """One attempt's child run (async)."""

    __slots__ = ("callbacks", "chunks", "run")

    def __init__(self, run: _WatchedAsyncRun | None, callbacks: BaseCallbackManager) -> None:
        self.run = run
        self.callbacks = callbacks
        self.chunks: list[ChatGenerationChunk] = []

    @property
    def raised(self) -> BaseException | None:
        """What a callback handler raised during the try (``raise_error=True``), if anything."""
        return None if self.run is None else self.run.raised

    async def report(self, error: BaseException | None, result: ChatResult | None) -> None:
        """End the child run (async twin of ``ChildRun.report``)."""
        if self.run is not None:
            event, args, kwargs = _closing(error, result, self.chunks)
            try:
                await getattr(self.run, event)(*args, **kwargs)
            except Exception as exc:
                self.run.raised = exc
                raise
