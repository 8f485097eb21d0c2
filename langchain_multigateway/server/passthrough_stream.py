"""The server's lean path for streamed chat: the router's stream engine, without LangChain's ``astream``.

``RoutingChatModel.astream`` wraps the router's stream in LangChain's run machinery:
a callback manager configured per call, a run started and ended, every chunk handed
to ``on_llm_new_token`` and kept for the run's final result. The server has no
callback handlers, so that work only delays the stream (measured on loopback, one stream
at a time: 0.2-0.4 ms of the time to the first event and 0.5-0.6 ms of the whole stream;
most of what remains is the openai SDK's request and the HTTP writes, see
``benchmarks/server_overhead.py --stream --full-path``).

So a streamed call of a router this path serves goes to what ``_astream`` itself runs:
the router's :class:`Engine` (``begin``) and :func:`relay_async`. Every routing decision
stays there: failover until the first chunk, the call's timeout on each chunk, breakers,
rate windows, budgets, the refusal watch of structured output, the router's metadata
and usage on the last chunk, a continuation under ``stream_recovery="continue"``. Each try
still streams through the deployment's own ``_astream`` (its SDK or HTTP transport).

Of what ``astream`` does to each chunk, only what a client can see is kept: a chunk's
``generation_info`` (the finish reason, for this package's providers) merged under its
``response_metadata``. Run ids and callbacks are not made.

Which routers: the same as :class:`PassThrough` (no response cache, no LangChain cache,
no LangSmith tracing), and only those that stream as ``astream`` would stream them: no
``disable_streaming``, no LangChain ``rate_limiter``, no ``output_version="v1"`` (each
of which changes what ``astream`` does). Any other router's streams take the full path.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any, cast

from langchain_core.globals import get_llm_cache
from langchain_core.messages import AIMessageChunk
from langchain_core.outputs import ChatGenerationChunk

from langchain_multigateway.routing.request import read_overrides
from langchain_multigateway.routing.stream import relay_async
from langchain_multigateway.server.passthrough import _cache_free, _tracing_on

if TYPE_CHECKING:
    from langchain_core.messages import BaseMessage

    from langchain_multigateway.routing import RoutingChatModel

__all__ = ["StreamThrough"]


class StreamThrough:
    """The lean streamed path for the routers that allow it (see the module docstring)."""

    def __init__(self, routers: Mapping[str, RoutingChatModel]) -> None:
        self._routers = {name: r for name, r in routers.items() if _cache_free(r) and _streams_as_is(r)}
        if _tracing_on():  # read once, as LangSmith reads its environment once
            self._routers = {}

    def serves(self, model: str) -> bool:
        """Whether streams of the router ``model`` take this path."""
        return model in self._routers and get_llm_cache() is None

    def stream(
        self, name: str, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any]
    ) -> AsyncIterator[AIMessageChunk]:
        """Router ``name``'s stream of ``messages``: nothing runs until the first chunk is asked for, and errors
        before it (every deployment failed, a bad override) are raised there, as from ``astream``."""
        return _chunks(self._routers[name], messages, stop, kwargs)


async def _chunks(
    router: RoutingChatModel, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any]
) -> AsyncIterator[AIMessageChunk]:
    engine = router._engine  # the router's own engine: every routing decision is made there
    overrides = read_overrides(kwargs, None)
    request, call = engine.begin(messages, stop, kwargs, overrides, streaming=True, whole=False, runs=None)
    relay = cast("AsyncGenerator[ChatGenerationChunk, None]", relay_async(engine, request, call))  # a generator
    try:
        async for chunk in relay:
            message = chunk.message
            assert isinstance(message, AIMessageChunk)
            if chunk.generation_info:  # as astream shows it: the message's own metadata wins
                message.response_metadata = {**chunk.generation_info, **message.response_metadata}
            yield message
    finally:
        # Closed here, not left to the event loop's generator finaliser: the relay's own ``finally``
        # closes the try's stream, which cuts the upstream request and gives the deployment's slot back.
        await relay.aclose()


def _streams_as_is(router: RoutingChatModel) -> bool:
    """Whether ``astream`` would pass the router's ``_astream`` chunks on unchanged (see the module docstring)."""
    return router.disable_streaming is False and router.rate_limiter is None and router.output_version != "v1"
