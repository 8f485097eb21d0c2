"""A routed stream: fail over until the first chunk, then relay the served deployment's chunks.

The failover loop (``engine``) runs with the streaming attempt until a deployment
yields its first chunk; from then on :class:`Relay` passes the chunks through,
adding the router's metadata once, on the last chunk (or on a closing chunk when
the provider marked none). The chunks come from the attempt's generator, which holds
the deployment's slot: closing it (``finally``) gives the slot back on every exit.

A failure after chunks reached the caller is never presented as a success: it ends
the stream with :class:`StreamInterruptedError` carrying the text delivered so far,
the deployment and the cause (the seam where ``stream_recovery="continue"`` resumes).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

from langchain_core.messages import AIMessageChunk
from langchain_core.outputs import ChatGenerationChunk

from langchain_multigateway.errors import GatewayError, GatewayTimeoutError, StreamInterruptedError
from langchain_multigateway.routing import attempt
from langchain_multigateway.routing.attempt import Opened
from langchain_multigateway.routing.engine import CallState, Engine, drive_async, drive_sync
from langchain_multigateway.routing.request import Request

__all__ = ["Relay", "relay_async", "relay_sync"]


class Relay:
    """Passes one served stream through, adding the router's metadata once, at the end."""

    __slots__ = ("call", "opened", "saw_last", "saw_model")

    def __init__(self, opened: Opened, call: CallState) -> None:
        self.opened = opened
        self.call = call
        self.saw_model = False
        self.saw_last = False

    def pass_on(self, chunk: ChatGenerationChunk) -> ChatGenerationChunk:
        message = chunk.message
        meta = message.response_metadata
        if meta.get("model_name"):
            self.saw_model = True
        if isinstance(message, AIMessageChunk) and message.chunk_position == "last" and not self.saw_last:
            self.saw_last = True
            dep = self.opened.slot.dep
            extra = self.opened.slot.metadata(self.call.attempts)
            extra["provider"] = meta.get("model_provider") or dep.provider
            extra["model"] = meta.get("model_name") or dep.model_name
            if not self.saw_model:
                extra["model_name"] = dep.model_name
                extra["model_provider"] = dep.provider
                self.saw_model = True
            message.response_metadata = {**meta, **extra}
        return chunk

    def closing(self) -> ChatGenerationChunk | None:
        """A last chunk carrying the metadata, when the provider marked none as last."""
        if self.saw_last:
            return None
        dep = self.opened.slot.dep
        meta = self.opened.slot.metadata(self.call.attempts)
        if not self.saw_model:
            meta["model_name"] = dep.model_name
            meta["model_provider"] = dep.provider
        return ChatGenerationChunk(message=AIMessageChunk(content="", response_metadata=meta, chunk_position="last"))

    def interrupted(self, error: BaseException) -> StreamInterruptedError:
        """The typed error for a stream cut after chunks reached the caller."""
        slot = self.opened.slot
        dep = slot.dep
        delivered = slot.delivered
        msg = (
            f"The stream from deployment {dep.name!r} failed after {len(delivered)} characters had been "
            f"delivered: {type(error).__name__}: {error}"
        )
        status = error.status_code if isinstance(error, GatewayError) else None
        return StreamInterruptedError(
            msg,
            delivered=delivered,
            deployment=dep.name,
            cause=error,
            provider=dep.provider,
            model=dep.model_name,
            status_code=status,
        )


def relay_sync(engine: Engine, request: Request, call: CallState) -> Iterator[ChatGenerationChunk]:
    """The routed stream (sync)."""
    opened: Opened = drive_sync(engine, request, call, attempt.stream_sync)
    relay = Relay(opened, call)
    chunks = opened.chunks
    try:
        if opened.head is not None:
            yield relay.pass_on(opened.head)
        for chunk in chunks:
            yield relay.pass_on(chunk)
    except Exception as exc:
        raise relay.interrupted(exc) from exc
    finally:
        chunks.close()  # the attempt's generator: gives its slot back (a no-op once it has ended)
    closing = relay.closing()
    if closing is not None:
        yield closing


async def relay_async(engine: Engine, request: Request, call: CallState) -> AsyncIterator[ChatGenerationChunk]:
    """The routed stream (async); the call's ``timeout`` also bounds the wait for each chunk."""
    opened: Opened = await drive_async(engine, request, call, attempt.stream_async)
    relay = Relay(opened, call)
    chunks = opened.chunks
    try:
        if opened.head is not None:
            yield relay.pass_on(opened.head)
        while True:
            try:
                chunk = await _next(chunks, call)
            except StopAsyncIteration:
                break
            yield relay.pass_on(chunk)
    except Exception as exc:
        raise relay.interrupted(exc) from exc
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
