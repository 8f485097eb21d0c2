"""A real HTTP server on 127.0.0.1 that answers from a script, for transport tests.

Each request pops the next scripted reply (status, headers, body or SSE events,
delay, or a connection reset); every request is recorded for assertions.
``script.set(...)`` re-scripts a running server, so one server can serve a module.
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # bytes or str sent as is (malformed bodies), anything else JSON-encoded
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"
    sse: list[Any] | None = None  # events; a dict is JSON-encoded, a str sent as is, a float is a pause (s)
    delay: float = 0.0
    reset: bool = False  # close the socket without answering
    cut_after: int | None = None  # SSE: drop the connection after this many events


@dataclass
class Script:
    replies: list[Reply]
    requests: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def set(self, *replies: Reply) -> None:
        """Re-script a running server and forget what it has seen (one server per test module)."""
        with self.lock:
            self.replies = list(replies)
            self.requests.clear()

    def next_reply(self) -> Reply:
        with self.lock:
            if not self.replies:
                return Reply(500, {"error": "no reply scripted"})
            return self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]


def chat_completion(content: str = "Hello!", *, model: str = "stub-model", usage: bool = True) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "chatcmpl-stub",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
    }
    if usage:
        body["usage"] = {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
    return body


def chat_stream(pieces: list[str], *, model: str = "stub-model") -> list[Any]:
    events: list[Any] = []
    for piece in pieces:
        events.append(
            {
                "id": "chatcmpl-stub",
                "object": "chat.completion.chunk",
                "model": model,
                "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}],
            }
        )
    events.append(
        {
            "id": "chatcmpl-stub",
            "object": "chat.completion.chunk",
            "model": model,
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
        }
    )
    events.append(
        {
            "id": "chatcmpl-stub",
            "object": "chat.completion.chunk",
            "model": model,
            "choices": [],
            "usage": {"prompt_tokens": 5, "completion_tokens": len(pieces), "total_tokens": 5 + len(pieces)},
        }
    )
    events.append("[DONE]")
    return events


def sse(*events: Any) -> Reply:
    """A streamed reply: each event as a ``data:`` line, then ``[DONE]``."""
    return Reply(sse=[*events, "[DONE]"])


def _handler(script: Script) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            return

        def _serve(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body: Any = json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode(errors="replace")
            with script.lock:
                script.requests.append(
                    {
                        "method": self.command,
                        "path": self.path,
                        # Lower-cased: header names are case-insensitive on the wire.
                        "headers": {k.lower(): v for k, v in self.headers.items()},
                        "body": body,
                    }
                )
            reply = script.next_reply()
            if reply.delay:
                time.sleep(reply.delay)
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self._answer(reply)  # suppressed: the client gave up first (a timeout test)

        def _answer(self, reply: Reply) -> None:
            if reply.reset:
                # SO_LINGER 0: the peer sees a reset, not a clean close.
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.connection.close()
                self.close_connection = True
                return
            if reply.sse is not None:
                self.send_response(reply.status)
                self.send_header("content-type", "text/event-stream")
                self.send_header("connection", "close")
                for key, value in reply.headers.items():
                    self.send_header(key, value)
                self.end_headers()
                for index, event in enumerate(reply.sse):
                    if reply.cut_after is not None and index >= reply.cut_after:
                        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                        self.connection.close()
                        self.close_connection = True
                        return
                    if isinstance(event, float):
                        time.sleep(event)  # a stall with the connection open
                        continue
                    data = event if isinstance(event, str) else json.dumps(event)
                    self.wfile.write(f"data: {data}\n\n".encode())
                    self.wfile.flush()
                self.close_connection = True
                return
            payload = reply.body if isinstance(reply.body, (bytes, str)) else json.dumps(reply.body)
            data = payload.encode() if isinstance(payload, str) else payload
            self.send_response(reply.status)
            self.send_header("content-type", reply.content_type)
            self.send_header("content-length", str(len(data)))
            for key, value in reply.headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        do_GET = _serve  # noqa: N815
        do_POST = _serve  # noqa: N815

    return Handler


@contextmanager
def serve(*replies: Reply) -> Iterator[tuple[str, Script]]:
    """Start a loopback server answering with ``replies`` (the last one repeats)."""
    script = Script(list(replies))
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(script))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", script
    finally:
        server.shutdown()
        server.server_close()
