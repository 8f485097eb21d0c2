"""Calling the provider once: the I/O of a try, and its answer shaped for the failover loop.

:mod:`~langchain_multigateway.routing.attempt` holds what a try takes and gives back; this
module only talks to the model: a non-streamed call (``generate_*``), a stream
(``provider_stream_*``, one final chunk for a model or runnable that cannot stream), and a
structured-output runnable's raw message read back as a chat result.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.tool import tool_call_chunk
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult

from langchain_multigateway.chat_models._base import GatewayChatModel
from langchain_multigateway.routing.prepare import Prepared
from langchain_multigateway.routing.request import Request
from langchain_multigateway.routing.structured import check_refusal

if TYPE_CHECKING:
    from langchain_multigateway.routing.runs import AsyncChildRun, ChildRun

__all__ = [
    "as_last_chunk",
    "generate_async",
    "generate_sync",
    "provider_stream_async",
    "provider_stream_sync",
    "raw_result",
]


def _kwargs(p: Prepared, timeout: float | None) -> dict[str, Any]:
    """The call kwargs, with the call's time left as the request's ``timeout`` where the model takes one."""
    if timeout is None or not isinstance(p.model, GatewayChatModel):
        return p.kwargs
    return {**p.kwargs, "timeout": max(timeout, 0.001)}


def _config(child: ChildRun | AsyncChildRun | None) -> Any:
    return None if child is None else {"callbacks": child.callbacks}


def _generates_only(model: BaseChatModel, *, is_async: bool) -> bool:
    cls = type(model)
    if cls._stream is not BaseChatModel._stream:
        return False
    return not is_async or cls._astream is BaseChatModel._astream


def generate_sync(p: Prepared, request: Request, child: ChildRun | None, timeout: float | None) -> ChatResult:
    kwargs = _kwargs(p, timeout)
    if p.runnable is not None:
        output = p.runnable.invoke(request.messages, _config(child), stop=request.stop, **kwargs)
        result = raw_result(output, p.raw_key)
    else:
        result = p.model._generate(request.messages, request.stop, None if child is None else child.run, **kwargs)
    check_refusal(request.structured, result)  # a declined structured answer meets the content policy here
    return result


async def generate_async(
    p: Prepared, request: Request, child: AsyncChildRun | None, timeout: float | None
) -> ChatResult:
    kwargs = _kwargs(p, timeout)
    if p.runnable is not None:
        output = await p.runnable.ainvoke(request.messages, _config(child), stop=request.stop, **kwargs)
        result = raw_result(output, p.raw_key)
    else:
        run = None if child is None else child.run
        result = await p.model._agenerate(request.messages, request.stop, run, **kwargs)
    check_refusal(request.structured, result)
    return result


def provider_stream_sync(
    p: Prepared, request: Request, child: ChildRun | None, timeout: float | None
) -> Iterator[ChatGenerationChunk]:
    if p.runnable is not None or _generates_only(p.model, is_async=False):
        return iter((as_last_chunk(generate_sync(p, request, child, timeout)),))
    return p.model._stream(request.messages, request.stop, None if child is None else child.run, **_kwargs(p, timeout))


async def provider_stream_async(
    p: Prepared, request: Request, child: AsyncChildRun | None, timeout: float | None
) -> AsyncIterator[ChatGenerationChunk]:
    if p.runnable is not None or _generates_only(p.model, is_async=True):
        return _one(as_last_chunk(await generate_async(p, request, child, timeout)))
    run = None if child is None else child.run
    return p.model._astream(request.messages, request.stop, run, **_kwargs(p, timeout))


async def _one(chunk: ChatGenerationChunk) -> AsyncIterator[ChatGenerationChunk]:
    yield chunk


# ---------------------------------------------------------------------- shaping answers
def as_last_chunk(result: ChatResult) -> ChatGenerationChunk:
    """A whole answer as one final stream chunk."""
    message = result.generations[0].message
    assert isinstance(message, AIMessage)
    calls = [
        tool_call_chunk(name=c["name"], args=json.dumps(c["args"]), id=c.get("id"), index=i)
        for i, c in enumerate(message.tool_calls)
    ]
    return ChatGenerationChunk(
        message=AIMessageChunk(
            content=message.content,
            tool_call_chunks=calls,
            additional_kwargs=message.additional_kwargs,
            usage_metadata=message.usage_metadata,
            response_metadata=dict(message.response_metadata),
            id=message.id,
            chunk_position="last",
        )
    )


def raw_result(output: Any, raw_key: str | None) -> ChatResult:
    """A structured-output runnable's raw message as a chat result."""
    message = output[raw_key] if raw_key is not None and isinstance(output, dict) else output
    if not isinstance(message, BaseMessage):
        msg = f"Expected a message from the deployment, got {type(message).__name__}"
        raise TypeError(msg)
    return ChatResult(generations=[ChatGeneration(message=message)])
