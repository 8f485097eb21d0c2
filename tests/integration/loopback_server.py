"""An OpenAI-compatible chat server on 127.0.0.1 that injects faults, for fault tests and benchmarks.

Run as a separate process so its CPU is not the client's:

    python tests/integration/loopback_server.py --fault-rate 0.3 --seed 1
    # prints "PORT <n>" on its first line

Requests for a model whose name starts with ``faulty`` fail at ``--fault-rate``
with one of: 429 with Retry-After (and retry-after-ms), 500, 503, a response slower than the client's
timeout, a connection reset, malformed JSON, or an SSE stream cut after its first
event (before any content). ``POST /control {"outage": {"<model>": seconds}}``
makes every request for that model answer 503 for a while. ``GET /stats`` reports
completions served per request marker (``req-<n>`` in the prompt), so a test can
prove no request was answered twice.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import re
import socket
import struct
import sys
import time
from collections import Counter
from typing import Any

MARKER = re.compile(r"req-\d+")
FAULTS = ("rate_limit", "error_500", "error_503", "slow", "reset", "malformed", "cut_stream")


class Server:
    def __init__(self, fault_rate: float, seed: int, slow_seconds: float) -> None:
        self.fault_rate = fault_rate
        self.random = random.Random(seed)
        self.slow_seconds = slow_seconds
        self.served: Counter[str] = Counter()
        self.faults: Counter[str] = Counter()
        self.requests = 0
        self.outage_until: dict[str, float] = {}
        self.counter = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                method, path, _ = line.decode("latin-1").split(" ", 2)
                headers: dict[str, str] = {}
                while True:
                    raw = await reader.readline()
                    if raw in (b"\r\n", b"\n", b""):
                        break
                    key, _, value = raw.decode("latin-1").partition(":")
                    headers[key.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0") or 0))
                if not await self.route(method, path, body, writer):
                    break
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            if not writer.is_closing():
                writer.close()

    @staticmethod
    def respond(writer: asyncio.StreamWriter, status: int, payload: bytes, extra: dict[str, str] | None = None) -> None:
        reason = {200: "OK", 429: "Too Many Requests", 500: "Internal Server Error", 503: "Service Unavailable"}
        head = [f"HTTP/1.1 {status} {reason.get(status, 'Status')}", "Content-Type: application/json"]
        head.append(f"Content-Length: {len(payload)}")
        for key, value in (extra or {}).items():
            head.append(f"{key}: {value}")
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + payload)

    @staticmethod
    def reset(writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()

    async def route(self, method: str, path: str, body: bytes, writer: asyncio.StreamWriter) -> bool:
        if method == "GET" and path.startswith("/stats"):
            stats = {"served": dict(self.served), "faults": dict(self.faults), "requests": self.requests}
            self.respond(writer, 200, json.dumps(stats).encode())
            return True
        if method == "GET" and path.endswith("/models"):
            self.respond(writer, 200, b'{"object": "list", "data": [{"id": "clean", "object": "model"}]}')
            return True
        if method == "POST" and path.startswith("/control"):
            command = json.loads(body)
            for model, seconds in (command.get("outage") or {}).items():
                self.outage_until[model] = time.monotonic() + float(seconds)
            self.respond(writer, 200, b"{}")
            return True
        if method != "POST" or not path.endswith("/chat/completions"):
            self.respond(writer, 404, b'{"error": {"message": "not found"}}')
            return True
        self.requests += 1
        request = json.loads(body)
        model = str(request.get("model", "model"))
        text = " ".join(str(m.get("content", "")) for m in request.get("messages", []))
        found = MARKER.search(text)
        marker = found.group(0) if found else "none"
        stream = bool(request.get("stream"))
        if self.outage_until.get(model, 0.0) > time.monotonic():
            self.faults["outage"] += 1
            self.respond(writer, 503, b'{"error": {"message": "outage", "type": "server_error"}}')
            return True
        if model.startswith("faulty") and self.random.random() < self.fault_rate:
            return await self.fault(self.random.choice(FAULTS), writer, stream, model)
        self.counter += 1
        reply = f"echo {marker}"
        if stream:
            await self.stream(writer, model, reply)
        else:
            self.respond(writer, 200, json.dumps(self.completion(model, reply)).encode())
        self.served[marker] += 1
        return True

    def completion(self, model: str, reply: str) -> dict[str, Any]:
        return {
            "id": f"chatcmpl-{self.counter}",
            "object": "chat.completion",
            "created": 0,
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15},
        }

    @staticmethod
    def event(payload: dict[str, Any] | str) -> bytes:
        data = payload if isinstance(payload, str) else json.dumps(payload)
        line = f"data: {data}\n\n".encode()
        return f"{len(line):x}\r\n".encode() + line + b"\r\n"

    def stream_head(self, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")

    def delta(self, model: str, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            "id": f"chatcmpl-{self.counter}",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }

    async def stream(self, writer: asyncio.StreamWriter, model: str, reply: str) -> None:
        self.stream_head(writer)
        writer.write(self.event(self.delta(model, {"role": "assistant", "content": ""})))
        for piece in reply.split(" "):
            writer.write(self.event(self.delta(model, {"content": piece + " "})))
        writer.write(self.event(self.delta(model, {}, finish="stop")))
        usage = {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}
        writer.write(self.event({**self.delta(model, {}), "choices": [], "usage": usage}))
        writer.write(self.event("[DONE]"))
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    async def fault(self, kind: str, writer: asyncio.StreamWriter, stream: bool, model: str) -> bool:
        self.faults[kind] += 1
        if kind == "rate_limit":
            self.respond(
                writer,
                429,
                b'{"error": {"message": "slow down", "type": "rate_limit"}}',
                {"Retry-After": "1", "retry-after-ms": "200"},
            )
        elif kind in ("error_500", "error_503"):
            self.respond(writer, int(kind[-3:]), b'{"error": {"message": "injected", "type": "server_error"}}')
        elif kind == "slow":
            await asyncio.sleep(self.slow_seconds)
            self.respond(writer, 503, b'{"error": {"message": "too late", "type": "server_error"}}')
        elif kind == "reset":
            self.reset(writer)
            return False
        elif kind == "malformed":
            if stream:
                self.stream_head(writer)
                line = b"data: {not json\n\n"
                writer.write(f"{len(line):x}\r\n".encode() + line + b"\r\n0\r\n\r\n")
            else:
                self.respond(writer, 200, b'{"id": "x", "choices": [{"message": ')
        else:  # cut_stream: headers and the first (content-less) event, then the connection drops
            if stream:
                self.stream_head(writer)
                writer.write(self.event(self.delta(model, {"role": "assistant", "content": ""})))
                await writer.drain()
            self.reset(writer)
            return False
        await writer.drain()
        return True


async def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--fault-rate", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--slow-seconds", type=float, default=1.0)
    args = parser.parse_args(argv)
    server = Server(args.fault_rate, args.seed, args.slow_seconds)
    listener = await asyncio.start_server(server.handle, "127.0.0.1", args.port, backlog=1024)
    port = listener.sockets[0].getsockname()[1]
    print(f"PORT {port}", flush=True)
    async with listener:
        await listener.serve_forever()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(sys.argv[1:]))
