"""A scripted httpx transport: the real httpx client, transport and parsing code run; only bytes are canned."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx

Reply = httpx.Response | BaseException | Callable[[httpx.Request], httpx.Response]


class _SyncPieces(httpx.SyncByteStream):
    def __init__(self, pieces: list[bytes], error: BaseException | None) -> None:
        self.pieces = pieces
        self.error = error

    def __iter__(self) -> Iterator[bytes]:
        yield from self.pieces
        if self.error is not None:
            raise self.error


class _AsyncPieces(httpx.AsyncByteStream):
    def __init__(self, pieces: list[bytes], error: BaseException | None) -> None:
        self.pieces = pieces
        self.error = error

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for piece in self.pieces:
            yield piece
        if self.error is not None:
            raise self.error


class PiecewiseBody:
    """A streamed body delivered in the given byte pieces (lines may be split anywhere),
    optionally failing with ``error`` after the last piece."""

    def __init__(self, pieces: list[bytes], *, error: BaseException | None = None, headers: Any = None) -> None:
        self.pieces = pieces
        self.error = error
        self.headers = headers or {}


class ScriptedServer:
    """Answers each request with the next scripted reply and records every request."""

    def __init__(self, *replies: Reply | PiecewiseBody) -> None:
        self.replies = list(replies)
        self.requests: list[httpx.Request] = []

    @property
    def calls(self) -> int:
        return len(self.requests)

    def body(self, index: int = -1) -> Any:
        return json.loads(self.requests[index].content)

    def _next(self, request: httpx.Request, *, is_async: bool) -> httpx.Response:
        self.requests.append(request)
        if not self.replies:
            msg = f"unexpected request #{len(self.requests)}: {request.method} {request.url}"
            raise AssertionError(msg)
        reply = self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]
        if isinstance(reply, BaseException):
            raise reply
        if isinstance(reply, PiecewiseBody):
            stream: Any = (
                _AsyncPieces(reply.pieces, reply.error) if is_async else _SyncPieces(reply.pieces, reply.error)
            )
            return httpx.Response(200, headers=reply.headers, stream=stream, request=request)
        if isinstance(reply, httpx.Response):
            return httpx.Response(reply.status_code, headers=reply.headers, content=reply.content, request=request)
        return reply(request)

    def client(self) -> httpx.Client:
        return httpx.Client(transport=httpx.MockTransport(lambda r: self._next(r, is_async=False)))

    def async_client(self) -> httpx.AsyncClient:
        async def handler(request: httpx.Request) -> httpx.Response:
            return self._next(request, is_async=True)

        return httpx.AsyncClient(transport=httpx.MockTransport(handler))


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, json=body, headers=headers)


def split_every(data: bytes, size: int) -> list[bytes]:
    """Cut ``data`` into ``size``-byte pieces, so lines and events straddle reads."""
    return [data[i : i + size] for i in range(0, len(data), size)]
