"""uvicorn's httptools protocol with a deadline for each request's line and headers.

uvicorn bounds an idle keep-alive connection, but not a request whose headers never
finish: a client sending its headers a byte at a time (or opening a connection and
sending nothing) holds the connection, and its memory, for as long as it likes, and
enough such clients exhaust the server. Here each request's line and headers must
arrive within ``header_timeout`` seconds of its first byte (of the connection, for its
first request): after that, a request begun gets ``408`` and the connection is closed;
a connection that sent nothing is simply closed. The body has its own limit in the app
(``ServerSettings.body_timeout``, also a 408).

``multigateway serve`` uses this protocol when httptools is installed (the ``server``
extra installs it); the deadline comes from ``$MULTIGATEWAY_SERVE_HEADER_TIMEOUT``
(``--header-timeout``, default 10 s), read in each worker process.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from langchain_multigateway.server.gateway import mark_stopping
from langchain_multigateway.server.runtime import ENV

__all__ = ["DEFAULT_HEADER_TIMEOUT", "BoundedHttpToolsProtocol"]

DEFAULT_HEADER_TIMEOUT = 10.0


def _timeout_response(seconds: float) -> bytes:
    message = f"the request's headers did not arrive within {seconds:g} s; send them at once"
    body = orjson.dumps({"error": {"message": message, "type": "timeout", "param": None, "code": "header_timeout"}})
    head = (
        "HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` whose requests must send their line and headers within a deadline."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout = float(os.environ.get(ENV["header_timeout"]) or DEFAULT_HEADER_TIMEOUT)
        self._headers_timer: asyncio.TimerHandle | None = None
        self._request_begun = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()  # a connection that never sends a request is closed too

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._request_begun = True
        if self._headers_timer is None:  # the next request on a kept-alive connection
            self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        self._request_begun = False
        super().on_headers_complete()

    def shutdown(self) -> None:
        mark_stopping()  # uvicorn is stopping: a call cut from now on is the server's doing, not its client's
        super().shutdown()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._headers_timer = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def _disarm(self) -> None:
        if self._headers_timer is not None:
            self._headers_timer.cancel()
            self._headers_timer = None

    def _headers_too_slow(self) -> None:
        self._headers_timer = None
        if self.transport.is_closing():
            return
        answering = self.cycle
        if self._request_begun and answering is not None and not answering.response_complete:
            # A request pipelined behind one still being answered: a 408 now would land inside that
            # answer's body. Its deadline runs again once the answer is out (uvicorn reads no more meanwhile).
            self._arm()
            return
        if self._request_begun:
            self.transport.write(_timeout_response(self.header_timeout))
        self.transport.close()
