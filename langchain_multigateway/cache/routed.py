"""The router's side of the response cache: the call's cache arguments, its lookup, and streams recorded or replayed.

``RoutingChatModel`` calls :func:`take_cache_args` before it describes a call (so
``cache=`` and ``cache_scope=`` are never sent to a provider), :func:`open_lookup` with
the described request, and then either returns a hit or serves the call and hands the
result to :func:`kept` / :func:`akept`. Streams go through :func:`cached_stream_sync` /
:func:`cached_stream_async`: a hit is streamed back as chunks; a miss is relayed as it
comes and stored only when it ran to its end (a stream cut short, or abandoned by its
reader, is never cached).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any

from langchain_core.messages import AIMessage, AIMessageChunk
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langchain_core.outputs.chat_generation import merge_chat_generation_chunks

from langchain_multigateway.cache.policy import CacheScopeError, GatewayCache, Lookup

__all__ = ["CacheArgs", "akept", "cached_stream_async", "cached_stream_sync", "kept", "open_lookup", "take_cache_args"]

CacheArgs = tuple[Any, Any]
"""(mode, scope) a call asked for; None where it said nothing."""


def take_cache_args(kwargs: dict[str, Any], metadata: Mapping[str, Any] | None) -> CacheArgs:
    """Pop ``cache`` / ``cache_scope`` from the call kwargs; else read them from the run's metadata.

    A kwarg scope that differs from the run's is refused: the run's scope is the one a
    server set from the caller's key, and no argument may widen it to another tenant's answers.
    """
    mode = kwargs.pop("cache", None)
    scope = kwargs.pop("cache_scope", None)
    if metadata:
        mode = metadata.get("cache") if mode is None else mode
        given = metadata.get("cache_scope")
        if scope not in (None, "") and given not in (None, "") and scope != given:
            msg = (
                "cache_scope= differs from the run's metadata cache_scope (set by whoever runs the call, "
                "such as the server from the caller's key); pass one of them, not both"
            )
            raise CacheScopeError(msg)
        scope = given if scope in (None, "") else scope
    return mode, scope


def open_lookup(cache: GatewayCache | None, request: Any, args: CacheArgs, *, router: str = "") -> Lookup | None:
    """The call's lookup (None without a cache or with ``cache="off"``); ``request`` is the router's ``Request``,
    ``router`` the asked router's name (its answers are its own, whichever deployment served them)."""
    if cache is None:
        return None
    mode, scope = args
    structured = request.structured
    if request.tags:  # routing_tags pick which deployments (models) may answer: part of whose answer it is
        router = f"{router}#{','.join(sorted(request.tags))}"
    return cache.begin(
        request.messages,
        scope=scope,
        mode=mode,
        params=request.kwargs,
        tools=request.tools,
        tool_kwargs=request.tool_kwargs,
        response_format=dict(structured) if structured is not None else None,
        stop=request.stop,
        router=router,
    )


def _missed(lookup: Lookup, message: Any) -> None:
    if lookup.reads and isinstance(message, AIMessage):
        message.response_metadata = {**message.response_metadata, "cache": "miss"}


def kept(lookup: Lookup | None, result: ChatResult) -> ChatResult:
    """A served result: marked a miss, and stored when the call writes."""
    if lookup is not None and result.generations:
        message = getattr(result.generations[0], "message", None)
        _missed(lookup, message)
        if isinstance(message, AIMessage) and len(result.generations) == 1:  # n > 1 is never replayed as one
            lookup.store(message)
    return result


async def akept(lookup: Lookup | None, result: ChatResult) -> ChatResult:
    """Async twin of :func:`kept`."""
    if lookup is not None and result.generations:
        message = getattr(result.generations[0], "message", None)
        _missed(lookup, message)
        if isinstance(message, AIMessage) and len(result.generations) == 1:  # n > 1 is never replayed as one
            await lookup.astore(message)
    return result


def _nothing() -> None:
    return None


def _last(chunk: ChatGenerationChunk) -> bool:
    message = chunk.message
    return isinstance(message, AIMessageChunk) and message.chunk_position == "last"


def cached_stream_sync(
    lookup: Lookup, relay: Callable[[], Iterator[ChatGenerationChunk]]
) -> Iterator[ChatGenerationChunk]:
    """A hit streamed back, or the relayed stream, stored once it has run to its end."""
    hit = lookup.lookup()
    if hit is not None:
        yield from hit.chunks()
        return
    chunks: list[ChatGenerationChunk] = []
    stream = relay()
    try:
        for chunk in stream:
            if _last(chunk):
                _missed(lookup, chunk.message)
            chunks.append(chunk)
            yield chunk
    finally:
        getattr(stream, "close", _nothing)()  # abandoned or failed: the relay gives its slot back; nothing is stored
    merged = merge_chat_generation_chunks(chunks)
    if merged is not None and isinstance(merged.message, AIMessage):
        lookup.store(merged.message)


async def cached_stream_async(
    lookup: Lookup, relay: Callable[[], AsyncIterator[ChatGenerationChunk]]
) -> AsyncIterator[ChatGenerationChunk]:
    """Async twin of :func:`cached_stream_sync`."""
    hit = await lookup.alookup()
    if hit is not None:
        for chunk in hit.chunks():
            yield chunk
        return
    chunks: list[ChatGenerationChunk] = []
    stream = relay()
    try:
        async for chunk in stream:
            if _last(chunk):
                _missed(lookup, chunk.message)
            chunks.append(chunk)
            yield chunk
    finally:
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            await aclose()
    merged = merge_chat_generation_chunks(chunks)
    if merged is not None and isinstance(merged.message, AIMessage):
        await lookup.astore(merged.message)
