"""A routed stream: fail over until the first chunk, then relay the served deployment's chunks.

The failover loop (``engine``) runs with the streaming attempt until a deployment
yields its first chunk; from then on :class:`Relay` passes the chunks through,
adding the router's metadata once, on the last chunk (or on a closing chunk when
the provider marked none). The chunks come from the attempt's generator, which holds
the deployment's slot: closing it (``finally``) gives the slot back on every exit.

A failure after chunks reached the caller is never presented as a success: it ends
the stream with :class:`StreamInterruptedError` carrying the text delivered so far,
the deployment and the cause; or, with ``stream_recovery="continue"``, the failover
loop runs again for a continuation (the conversation plus the delivered text as an
assistant prefix, offered only to deployments that can continue one) and the relay
goes on with the continuation's chunks, so the caller's concatenated stream is the answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, cast

from langchain_core.messages import AIMessageChunk
from langchain_core.messages.ai import UsageMetadata, add_usage
from langchain_core.outputs import ChatGenerationChunk

from langchain_multigateway.errors import AttemptRecord, GatewayError, GatewayTimeoutError, StreamInterruptedError
from langchain_multigateway.routing import attempt
from langchain_multigateway.routing.attempt import Opened, Slot
from langchain_multigateway.routing.engine import CallState, Engine, drive_async, drive_sync
from langchain_multigateway.routing.policy import Action
from langchain_multigateway.routing.request import Request, continuation

__all__ = ["SERVING", "Relay", "relay_async", "relay_sync"]

SERVING: ContextVar[tuple[str, int] | None] = ContextVar("multigateway_serving", default=None)
"""``(deployment, try number)`` of the stream being read in this context, set when its first
chunk is about to be passed on: an HTTP server names them in its headers before the body,
without a callback handler (which would make every call build child runs)."""


class Relay:
    """Passes a routed stream through: the router's metadata once, at the end; the text delivered so far."""

    __slots__ = ("call", "carried_usage", "parts", "pending", "saw_last", "saw_model", "slot", "tool_calls")

    def __init__(self, call: CallState) -> None:
        self.call = call
        self.slot: Slot | None = None
        self.saw_model = False
        self.saw_last = False
        self.parts: list[str] = []
        self.tool_calls = False
        """A tool call's pieces reached the caller (a text prefix cannot carry the rest of one)."""
        self.carried_usage: UsageMetadata | None = None
        """Usage of attempts cut mid-answer, added to the answer's (a continuation bills both)."""
        self.pending: StreamInterruptedError | None = None
        """The interruption a continuation is trying to repair."""

    @property
    def delivered(self) -> str:
        return "".join(self.parts)

    def serving(self, opened: Opened) -> None:
        self.slot = opened.slot
        SERVING.set((opened.slot.dep.name, len(self.call.attempts) + 1))

    def pass_on(self, chunk: ChatGenerationChunk) -> ChatGenerationChunk:
        message = chunk.message
        meta = message.response_metadata
        if chunk.text:
            self.parts.append(chunk.text)
        if isinstance(message, AIMessageChunk) and message.tool_call_chunks:
            self.tool_calls = True
        if meta.get("model_name"):
            self.saw_model = True
        if isinstance(message, AIMessageChunk) and message.chunk_position == "last" and not self.saw_last:
            self.saw_last = True
            slot = self._slot()
            extra = slot.metadata(self.call.attempts)
            extra["provider"] = meta.get("model_provider") or slot.dep.provider
            extra["model"] = meta.get("model_name") or slot.dep.model_name
            if not self.saw_model:
                extra["model_name"] = slot.dep.model_name
                extra["model_provider"] = slot.dep.provider
                self.saw_model = True
            message.response_metadata = {**meta, **extra}
            if self.carried_usage is not None and message.usage_metadata is not None:
                message.usage_metadata = add_usage(self.carried_usage, message.usage_metadata)
        return chunk

    def closing(self) -> ChatGenerationChunk | None:
        """A last chunk carrying the metadata, when the provider marked none as last."""
        if self.saw_last:
            return None
        slot = self._slot()
        meta = slot.metadata(self.call.attempts)
        if not self.saw_model:
            meta["model_name"] = slot.dep.model_name
            meta["model_provider"] = slot.dep.provider
        return ChatGenerationChunk(message=AIMessageChunk(content="", response_metadata=meta, chunk_position="last"))

    def interrupted(self, error: BaseException) -> StreamInterruptedError:
        """The typed error for a stream cut after chunks reached the caller."""
        dep = self._slot().dep
        delivered = self.delivered
        msg = (
            f"The stream from deployment {dep.name!r} failed after {len(delivered)} characters had been "
            f"delivered: {type(error).__name__}: {error}"
        )
        status = error.status_code if isinstance(error, GatewayError) else None
        interrupted = StreamInterruptedError(
            msg,
            delivered=delivered,
            deployment=dep.name,
            cause=error,
            provider=dep.provider,
            model=dep.model_name,
            status_code=status,
        )
        interrupted.__cause__ = error
        return interrupted

    def resume(self, request: Request, error: Exception) -> Request:
        """The request that resumes the answer after ``error``; raise ``StreamInterruptedError`` when the call
        did not ask for it (``stream_recovery="error"``), nothing reached the caller yet, a tool call had
        begun (its cut arguments cannot be resumed from a text prefix), or the failure is one the policy
        raises (a content-policy refusal is never routed around by a continuation)."""
        slot = self._slot()
        if slot.child is not None and slot.child.raised is error:
            raise error  # the caller's own callback handler raised: theirs to see as it is, nothing to resume
        interrupted = self.interrupted(error)
        refused = slot.failure is not None and slot.failure.decision.action is Action.RAISE
        if request.stream_recovery != "continue" or not self.parts or self.tool_calls or refused:
            raise interrupted
        self.pending = interrupted
        self.call.attempts.append(AttemptRecord(slot.dep.name, error, (slot.released_at - slot.started) * 1000))
        self.call.done.add(slot.dep.name)  # the next eligible deployment resumes, not the one that was cut
        if slot.usage:
            usage = cast(UsageMetadata, slot.usage)
            self.carried_usage = usage if self.carried_usage is None else add_usage(self.carried_usage, usage)
        self.saw_last = False
        return continuation(request, self.delivered)

    @contextmanager
    def resuming(self) -> Iterator[None]:
        """Around the failover loop run for a continuation: if nothing can continue, the interruption stands."""
        try:
            yield
        except GatewayError:
            assert self.pending is not None
            raise self.pending from self.pending.cause

    def _slot(self) -> Slot:
        assert self.slot is not None
        return self.slot


def relay_sync(engine: Engine, request: Request, call: CallState) -> Iterator[ChatGenerationChunk]:
    """The routed stream (sync)."""
    relay = Relay(call)
    opened: Opened = drive_sync(engine, request, call, attempt.stream_sync)
    while True:
        relay.serving(opened)
        chunks = opened.chunks
        try:
            for chunk in opened.head:
                yield relay.pass_on(chunk)
            for chunk in chunks:
                yield relay.pass_on(chunk)
            break
        except Exception as exc:
            request = relay.resume(request, exc)  # or raise StreamInterruptedError
            with relay.resuming():
                opened = drive_sync(engine, request, call, attempt.stream_sync)
        finally:
            chunks.close()  # the attempt's generator: gives its slot back (a no-op once it has ended)
    closing = relay.closing()
    if closing is not None:
        yield closing


async def relay_async(engine: Engine, request: Request, call: CallState) -> AsyncIterator[ChatGenerationChunk]:
    """The routed stream (async); the call's ``timeout`` also bounds the wait for each chunk."""
    relay = Relay(call)
    opened: Opened = await drive_async(engine, request, call, attempt.stream_async)
    while True:
        relay.serving(opened)
        chunks = opened.chunks
        try:
            for chunk in opened.head:
                yield relay.pass_on(chunk)
            while True:
                try:
                    chunk = await _next(chunks, call)
                except StopAsyncIteration:
                    break
                yield relay.pass_on(chunk)
            break
        except Exception as exc:
            request = relay.resume(request, exc)
            with relay.resuming():
                opened = await drive_async(engine, request, call, attempt.stream_async)
        finally:
            await chunks.aclose()
    closing = relay.closing()
    if closing is not None:
        yield closing


async def _next(chunks: Any, call: CallState) -> ChatGenerationChunk:
    remaining = call.remaining()
    if remaining is None:
        chunk: ChatGenerationChunk = await chunks.__anext__()
        return chunk
    try:
        async with asyncio.timeout(remaining):
            return await chunks.__anext__()  # type: ignore[no-any-return]
    except TimeoutError:
        raise GatewayTimeoutError(
            f"The call's timeout of {call.timeout:g} s expired while the stream was running",
            limit="timeout",
            seconds=call.timeout,
        ) from None
