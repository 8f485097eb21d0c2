"""The router's four call paths (``_generate``, ``_stream`` and their async twins) over the engine."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any, cast

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGenerationChunk, ChatResult

from langchain_multigateway.routing._attempts import AsyncAttempt, Attempt, AttemptRuns, StreamRun
from langchain_multigateway.routing._engine import RoutingEngine, _now
from langchain_multigateway.routing._relay import Relay, empty, first, raw_result
from langchain_multigateway.routing._request import STREAM_RUN, Prepared, RoutedCall, as_last_chunk

__all__ = ["CallPaths"]


def _config(attempt: Attempt | AsyncAttempt | None) -> Any:
    return None if attempt is None else {"callbacks": attempt.callbacks}


class CallPaths(RoutingEngine):
    """Mixin of RoutingChatModel: each call path plans a ``RoutedCall`` and runs it through the engine."""

    if TYPE_CHECKING:

        def _call(
            self,
            messages: list[BaseMessage],
            stop: list[str] | None,
            metadata: dict[str, Any] | None,
            kwargs: dict[str, Any],
            streaming: bool,
        ) -> RoutedCall: ...

    def _stream_call(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None,
        run_manager: CallbackManagerForLLMRun | AsyncCallbackManagerForLLMRun | None,
        kwargs: dict[str, Any],
        is_async: bool,
    ) -> RoutedCall:
        marker = kwargs.pop(STREAM_RUN, None)
        if run_manager is None and isinstance(marker, (CallbackManagerForLLMRun, AsyncCallbackManagerForLLMRun)):
            run_manager = marker  # handed over by the router's _generate_with_cache
        if run_manager is not None or not isinstance(marker, StreamRun):
            call = self._call(messages, stop, run_manager.metadata if run_manager else None, kwargs, True)
            call.runs = AttemptRuns.of(run_manager)
            return call
        call = self._call(messages, stop, marker.config.get("metadata"), kwargs, True)
        call.runs = AttemptRuns.of_stream(marker, self, is_async=is_async)
        return call

    # ------------------------------------------------------------------ sync
    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        call = self._call(messages, stop, run_manager.metadata if run_manager else None, kwargs, False)
        if run_manager is not None and run_manager.handlers:
            call.runs = AttemptRuns.of(run_manager)

        def run(p: Prepared, attempt: Attempt | None) -> ChatResult:
            if p.runnable is not None:
                return raw_result(p.runnable.invoke(messages, _config(attempt), stop=call.stop, **p.kwargs), p.raw_key)
            return p.model._generate(messages, call.stop, attempt.run if attempt else None, **p.kwargs)

        served = self._route(call, run)
        result = cast(ChatResult, served.result)
        if served.attempt is not None:
            served.attempt.end(result)
        self._succeeded(served, call, result.generations[0].message)
        return result

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        call = self._stream_call(messages, stop, run_manager, kwargs, False)

        def run(p: Prepared, attempt: Attempt | None) -> tuple[list[ChatGenerationChunk], Any, float]:
            if p.runnable is not None:
                result = raw_result(
                    p.runnable.invoke(messages, _config(attempt), stop=call.stop, **p.kwargs), p.raw_key
                )
                return [as_last_chunk(cast(AIMessage, result.generations[0].message))], iter(()), _now()
            child = attempt.run if attempt else None
            if type(p.model)._stream is BaseChatModel._stream:
                result = p.model._generate(messages, call.stop, child, **p.kwargs)
                return [as_last_chunk(cast(AIMessage, result.generations[0].message))], iter(()), _now()
            iterator = p.model._stream(messages, call.stop, child, **p.kwargs)
            head = list(first(iterator))
            return head, iterator, _now()

        served = self._route(call, run)
        head, rest, first_at = served.result
        relay = Relay(self, served, call, first_at)
        attempt = cast(Attempt | None, served.attempt)
        try:
            for chunk in head:
                yield relay.pass_on(chunk)
            for chunk in rest:
                yield relay.pass_on(chunk)
        except GeneratorExit:
            relay.finish(None)
            if attempt is not None:
                attempt.end()
            raise
        except Exception as exc:
            relay.finish(exc)
            if attempt is not None:
                attempt.error(exc)
            raise
        final = relay.finish(None)
        if attempt is not None:
            attempt.end()
        if final is not None:
            yield final

    # ------------------------------------------------------------------ async
    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        call = self._call(messages, stop, run_manager.metadata if run_manager else None, kwargs, False)
        if run_manager is not None and run_manager.handlers:
            call.runs = AttemptRuns.of(run_manager)

        async def run(p: Prepared, attempt: AsyncAttempt | None) -> ChatResult:
            if p.runnable is not None:
                output = await p.runnable.ainvoke(messages, _config(attempt), stop=call.stop, **p.kwargs)
                return raw_result(output, p.raw_key)
            return await p.model._agenerate(messages, call.stop, attempt.run if attempt else None, **p.kwargs)

        served = await self._aroute(call, run)
        result = cast(ChatResult, served.result)
        if served.attempt is not None:
            await served.attempt.end(result)
        self._succeeded(served, call, result.generations[0].message)
        return result

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        call = self._stream_call(messages, stop, run_manager, kwargs, True)

        async def run(p: Prepared, attempt: AsyncAttempt | None) -> tuple[list[ChatGenerationChunk], Any, float]:
            model = p.model
            child = attempt.run if attempt else None
            if p.runnable is not None or (
                type(model)._astream is BaseChatModel._astream and type(model)._stream is BaseChatModel._stream
            ):
                if p.runnable is not None:
                    output = await p.runnable.ainvoke(messages, _config(attempt), stop=call.stop, **p.kwargs)
                    result = raw_result(output, p.raw_key)
                else:
                    result = await model._agenerate(messages, call.stop, child, **p.kwargs)
                return [as_last_chunk(cast(AIMessage, result.generations[0].message))], empty(), _now()
            iterator = model._astream(messages, call.stop, child, **p.kwargs)
            try:
                head = [await iterator.__anext__()]
            except StopAsyncIteration:
                head = []
            return head, iterator, _now()

        served = await self._aroute(call, run)
        head, rest, first_at = served.result
        relay = Relay(self, served, call, first_at)
        attempt = cast(AsyncAttempt | None, served.attempt)
        try:
            for chunk in head:
                yield relay.pass_on(chunk)
            async for chunk in rest:
                yield relay.pass_on(chunk)
        except GeneratorExit:
            relay.finish(None)
            if attempt is not None:
                await attempt.end()
            raise
        except BaseException as exc:
            relay.finish(exc if isinstance(exc, Exception) else None)
            if attempt is not None:
                await attempt.error(exc)
            raise
        final = relay.finish(None)
        if attempt is not None:
            await attempt.end()
        if final is not None:
            yield final
