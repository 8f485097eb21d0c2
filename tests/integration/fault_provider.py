"""A fake OpenAI-compatible chat provider whose MODEL NAME selects how it misbehaves.

Runs as its own process on a loopback port (so its CPU and its event loop are not the
client's), speaks real HTTP/1.1 (keep-alive, JSON bodies, chunked SSE streams), and
counts every request it sees, per model, with a wall-clock timestamp:

    python -m tests.integration.fault_provider --port 0 --profile fast
    # first line on stdout: "PORT <n>"

    GET  /_counts   {"profile": ..., "waits": {...}, "requests": {"<model>": [{"t": ..., ...}]}}
    POST /_reset    forget the counts, re-arm the "once" faults, drop held connections
    POST /_drop     drop held connections only (frees a client stuck on a silent one)

Every answer is the same 60-token text (``ANSWER_TOKENS``), so a client can tell a
complete answer from a truncated one, and a continuation from a restart. The models
(``FAULTS`` lists them) are the sixteen scenarios of issue 12 plus three healthy ones:
``ok``, ``continuable`` (honours a trailing assistant message as a prefix and streams only
the rest, as llama.cpp and Mistral's ``prefix: true`` do) and ``reject-prefill`` (answers
400 to a conversation ending with an assistant message, as OpenAI's hosted API and recent
Claude models do). Waits come from the profile: ``fast`` for CI, ``realistic`` by hand.

Standard library only: the test process imports ``PROFILES`` and ``ANSWER_TOKENS`` from here.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket
import struct
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["ANSWER", "ANSWER_TOKENS", "CUT_AFTER", "FAULTS", "HEALTHY_MARKER", "MALFORMED_AFTER", "PROFILES", "Waits"]

ANSWER_TOKENS = ["w01", *(f" w{i:02d}" for i in range(2, 61))]
ANSWER = "".join(ANSWER_TOKENS)
CUT_AFTER = 40
"""Content tokens sent before a stream is cut or stalls."""
MALFORMED_AFTER = 30
"""Content tokens sent before the malformed event."""
HEALTHY_MARKER = "[healthy]"
"""A prompt containing this is answered normally by every model (the "healthy call afterwards")."""


@dataclass(frozen=True)
class Waits:
    """How long the fake makes a client wait, per profile (seconds)."""

    retry_after: int
    """The ``Retry-After`` header of the 429-with-Retry-After fault (whole seconds, as HTTP says)."""
    first_token: float
    """Delay before the first content (slow-first-token fault)."""
    stall: float
    """Silence mid-stream with the connection open, after which the connection is dropped."""
    outage: float
    """How long the flapping primary answers 503 (from its first request after a reset)."""
    token_interval: float
    """Pause between two streamed tokens."""


PROFILES = {
    "fast": Waits(retry_after=1, first_token=1.0, stall=1.5, outage=3.0, token_interval=0.002),
    "realistic": Waits(retry_after=2, first_token=20.0, stall=30.0, outage=60.0, token_interval=0.02),
}

FAULTS = (
    "ok",
    "continuable",
    "reject-prefill",
    "rate-limit-retry-after-once",
    "rate-limit-no-retry-after",
    "error-500-once",
    "error-503-persistent",
    "error-500-persistent",
    "reset-before-headers",
    "no-response",
    "slow-first-token",
    "stream-cut",
    "stream-stall",
    "malformed-chunk",
    "no-done",
    "context-length-exceeded",
    "content-policy",
    "flapping",
)

_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 429: "Too Many Requests", 500: "Internal Server Error"}
_REASONS[503] = "Service Unavailable"


def _error(message: str, kind: str, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


# Error bodies in the documented shapes (OpenAI's error object; Azure OpenAI's content filter).
CONTEXT_LENGTH_BODY = _error(
    "This model's maximum context length is 8192 tokens. However, your messages resulted in 9247 tokens. "
    "Please reduce the length of the messages.",
    "invalid_request_error",
    code="context_length_exceeded",
    param="messages",
)
CONTENT_FILTER_BODY = {
    "error": {
        "message": "The prompt was filtered by the content management policy of this deployment (fake provider).",
        "type": None,
        "param": "prompt",
        "code": "content_filter",
        "status": 400,
        "innererror": {
            "code": "ResponsibleAIPolicyViolation",
            "content_filter_result": {
                "hate": {"filtered": False, "severity": "safe"},
                "self_harm": {"filtered": False, "severity": "safe"},
                "sexual": {"filtered": False, "severity": "safe"},
                "violence": {"filtered": True, "severity": "high"},
            },
        },
    }
}
PREFILL_REJECTED_BODY = _error(
    "Assistant prefill is not supported by this model: the last message must come from the user.",
    "invalid_request_error",
    param="messages",
)


class Reply:
    """One HTTP exchange on an open connection: status bodies, SSE events, resets."""

    def __init__(self, writer: asyncio.StreamWriter, model: str, number: int) -> None:
        self.writer, self.model = writer, model
        self.id = f"chatcmpl-fake-{number}"

    def json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(payload).encode()
        self.head(status, {"Content-Type": "application/json", "Content-Length": str(len(body)), **(headers or {})})
        self.writer.write(body)

    def head(self, status: int, headers: dict[str, str]) -> None:
        lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}", f"x-request-id: req-{self.id}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())

    def stream_head(self) -> None:
        self.head(200, {"Content-Type": "text/event-stream", "Transfer-Encoding": "chunked"})

    def event(self, data: dict[str, Any] | str) -> None:
        line = f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n".encode()
        self.writer.write(f"{len(line):x}\r\n".encode() + line + b"\r\n")

    def chunk(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return {"id": self.id, "object": "chat.completion.chunk", "created": int(time.time()), "model": self.model,
                "choices": [choice]}  # fmt: skip

    def completion(self, text: str, usage: dict[str, int]) -> dict[str, Any]:
        message = {"role": "assistant", "content": text}
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.model,
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            "usage": usage,
        }

    def end_stream(self) -> None:
        self.writer.write(b"0\r\n\r\n")

    def reset(self) -> None:
        """Drop the connection with a TCP reset (no FIN, no HTTP answer)."""
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()


def _usage(request: dict[str, Any], completion_tokens: int) -> dict[str, int]:
    """Deterministic usage: words in the prompt plus 3 per message; one token per streamed piece."""
    messages = request.get("messages") or []
    prompt = sum(len(str(m.get("content") or "").split()) + 3 for m in messages)
    return {"prompt_tokens": prompt, "completion_tokens": completion_tokens, "total_tokens": prompt + completion_tokens}


def _assistant_prefix(request: dict[str, Any]) -> str | None:
    messages = request.get("messages") or []
    if messages and messages[-1].get("role") == "assistant":
        return str(messages[-1].get("content") or "")
    return None


@dataclass
class Exchange:
    """One chat request: how to answer it, what it asked, and its entry in the counts."""

    reply: Reply
    request: dict[str, Any]
    record: dict[str, Any]


class FaultProvider:
    def __init__(self, profile: str) -> None:
        self.profile = profile
        self.waits = PROFILES[profile]
        self.requests: dict[str, list[dict[str, Any]]] = {}
        self.fired: set[str] = set()
        self.outage_started: float | None = None
        self.held: dict[asyncio.StreamWriter, asyncio.Event] = {}
        self.number = 0

    # ------------------------------------------------------------------ HTTP plumbing
    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                method, path, _ = line.decode("latin-1").split(" ", 2)
                headers: dict[str, str] = {}
                while (raw := await reader.readline()) not in (b"\r\n", b"\n", b""):
                    key, _, value = raw.decode("latin-1").partition(":")
                    headers[key.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length") or 0))
                if not await self.route(method, path, body, writer):
                    break
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            if not writer.is_closing():
                writer.close()

    async def route(self, method: str, path: str, body: bytes, writer: asyncio.StreamWriter) -> bool:
        """Answer one request; False closes the connection."""
        control = Reply(writer, "-", 0)
        if method == "GET" and path == "/_counts":
            control.json(200, {"profile": self.profile, "waits": asdict(self.waits), "requests": self.requests})
            return True
        if method == "POST" and path == "/_reset":
            self.requests.clear()
            self.fired.clear()
            self.outage_started = None
            self.release_held()
            control.json(200, {"reset": True})
            return True
        if method == "POST" and path == "/_drop":  # free clients stuck on held connections, keep the counts
            self.release_held()
            control.json(200, {"dropped": True})
            return True
        if method == "GET" and path.endswith("/models"):
            control.json(200, {"object": "list", "data": [{"id": name, "object": "model"} for name in FAULTS]})
            return True
        if method != "POST" or not path.endswith("/chat/completions"):
            control.json(404, _error(f"no route for {method} {path}", "invalid_request_error"))
            return True
        request = json.loads(body)
        model = str(request.get("model"))
        self.number += 1
        record: dict[str, Any] = {
            "t": time.time(),
            "stream": bool(request.get("stream")),
            "prefix": _assistant_prefix(request),
            "messages": len(request.get("messages") or []),
            "include_usage": bool((request.get("stream_options") or {}).get("include_usage")),
        }
        self.requests.setdefault(model, []).append(record)
        healthy = any(HEALTHY_MARKER in str(m.get("content")) for m in request.get("messages") or [])
        handler = self.fault_ok if healthy else getattr(self, "fault_" + model.replace("-", "_"), None)
        exchange = Exchange(Reply(writer, model, self.number), request, record)
        record["healthy"] = healthy
        if handler is None:
            record["outcome"] = "404"
            exchange.reply.json(
                404, _error(f"The model `{model}` does not exist", "invalid_request_error", "model_not_found")
            )
            return True
        try:
            outcome: str = await handler(exchange)
        except ConnectionError:
            record["outcome"] = "client-gone"
            raise
        record["outcome"] = outcome
        return not outcome.startswith(("reset", "cut"))

    # ------------------------------------------------------------------ answers
    async def answer(
        self,
        ex: Exchange,
        *,
        start: int = 0,
        first_delay: float = 0.0,
        cut_after: int | None = None,
        stall_after: int | None = None,
        malformed_after: int | None = None,
        done: bool = True,
    ) -> str:
        """The answer from token ``start`` on, streamed or not, with the given misbehaviour."""
        reply, request, record = ex.reply, ex.request, ex.record
        tokens = ANSWER_TOKENS[start:]
        usage = _usage(request, len(tokens))
        if not request.get("stream"):
            payload = json.dumps(reply.completion("".join(tokens), usage)).encode()
            if first_delay:
                await asyncio.sleep(first_delay)
            headers = {"Content-Type": "application/json", "Content-Length": str(len(payload))}
            if cut_after is not None or stall_after is not None:
                reply.head(200, headers)
                reply.writer.write(payload[: len(payload) * 2 // 3])
                await reply.writer.drain()
                if cut_after is not None:
                    reply.reset()
                    return "cut-body"
                await self.hold(reply, self.waits.stall)
                reply.reset()
                return "cut-body-after-stall"
            reply.head(200, headers)
            reply.writer.write(payload)
            record["usage"] = usage
            return "ok"
        reply.stream_head()
        reply.event(reply.chunk({"role": "assistant", "content": ""}))
        await reply.writer.drain()
        if first_delay:
            await asyncio.sleep(first_delay)
        for index, token in enumerate(tokens):
            if index == cut_after:
                reply.reset()
                return f"cut@{index}"
            if index == stall_after:  # silent with the connection open, then dropped (as a proxy would)
                await self.hold(reply, self.waits.stall)
                reply.reset()
                return f"cut@{index}-after-stall"
            if index == malformed_after:
                reply.event('{"id": "broken", "choices": [{"delta": {"content": "w')  # JSON cut short
            reply.event(reply.chunk({"content": token}))
            await reply.writer.drain()
            if self.waits.token_interval:
                await asyncio.sleep(self.waits.token_interval)
        reply.event(reply.chunk({}, finish="stop"))
        if (request.get("stream_options") or {}).get("include_usage"):
            reply.event({**reply.chunk({}), "choices": [], "usage": usage})
        if done:
            reply.event("[DONE]")
        reply.end_stream()
        record["usage"] = usage
        return "ok" if done else "ok-without-done"

    async def hold(self, reply: Reply, seconds: float | None) -> None:
        """Keep the connection open and silent (until ``seconds`` pass, or a reset drops it)."""
        await reply.writer.drain()
        released = self.held[reply.writer] = asyncio.Event()  # kept here, so the parked task stays referenced
        try:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(released.wait(), seconds)
        finally:
            self.held.pop(reply.writer, None)
        if reply.writer.is_closing():
            raise ConnectionResetError("dropped by /_reset or /_drop")

    def release_held(self) -> None:
        """Abort every held connection and wake its handler."""
        for writer, released in list(self.held.items()):
            writer.transport.abort()
            released.set()

    def once(self, model: str) -> bool:
        """True the first time ``model`` is asked after a reset."""
        first = model not in self.fired
        self.fired.add(model)
        return first

    # ------------------------------------------------------------------ the faults, by model name
    async def fault_ok(self, ex: Exchange) -> str:
        return await self.answer(ex)

    async def fault_continuable(self, ex: Exchange) -> str:
        prefix = ex.record["prefix"]
        if prefix is None:
            return await self.answer(ex)
        start = next((n for n in range(len(ANSWER_TOKENS) + 1) if "".join(ANSWER_TOKENS[:n]) == prefix), None)
        if start is None:  # a prefix this answer never had: the client sent something else than it received
            ex.reply.json(
                400, _error("assistant prefix is not a prefix of this model's answer", "invalid_request_error")
            )
            return "400-bad-prefix"
        return await self.answer(ex, start=start)

    async def fault_reject_prefill(self, ex: Exchange) -> str:
        if ex.record["prefix"] is not None:
            ex.reply.json(400, PREFILL_REJECTED_BODY)
            return "400-prefill"
        return await self.answer(ex)

    async def fault_rate_limit_retry_after_once(self, ex: Exchange) -> str:
        if self.once(ex.reply.model):
            body = _error("Rate limit reached for requests. Please try again later.", "requests", "rate_limit_exceeded")
            ex.reply.json(429, body, {"Retry-After": str(self.waits.retry_after)})
            return "429"
        return await self.answer(ex)

    async def fault_rate_limit_no_retry_after(self, ex: Exchange) -> str:
        ex.reply.json(429, _error("Rate limit reached for requests.", "requests", "rate_limit_exceeded"))
        return "429"

    async def fault_error_500_once(self, ex: Exchange) -> str:
        if self.once(ex.reply.model):
            ex.reply.json(500, _error("The server had an error while processing your request.", "server_error"))
            return "500"
        return await self.answer(ex)

    async def fault_error_500_persistent(self, ex: Exchange) -> str:
        ex.reply.json(500, _error("The server had an error while processing your request.", "server_error"))
        return "500"

    async def fault_error_503_persistent(self, ex: Exchange) -> str:
        ex.reply.json(503, _error("The engine is currently overloaded, please try again later.", "server_error"))
        return "503"

    async def fault_reset_before_headers(self, ex: Exchange) -> str:
        ex.reply.reset()
        return "reset"

    async def fault_no_response(self, ex: Exchange) -> str:
        with contextlib.suppress(ConnectionError):
            await self.hold(ex.reply, None)
        return "reset-silent"

    async def fault_slow_first_token(self, ex: Exchange) -> str:
        return await self.answer(ex, first_delay=self.waits.first_token)

    async def fault_stream_cut(self, ex: Exchange) -> str:
        return await self.answer(ex, cut_after=CUT_AFTER)

    async def fault_stream_stall(self, ex: Exchange) -> str:
        return await self.answer(ex, stall_after=CUT_AFTER)

    async def fault_malformed_chunk(self, ex: Exchange) -> str:
        return await self.answer(ex, malformed_after=MALFORMED_AFTER)

    async def fault_no_done(self, ex: Exchange) -> str:
        return await self.answer(ex, done=False)

    async def fault_context_length_exceeded(self, ex: Exchange) -> str:
        ex.reply.json(400, CONTEXT_LENGTH_BODY)
        return "400-context"

    async def fault_content_policy(self, ex: Exchange) -> str:
        ex.reply.json(400, CONTENT_FILTER_BODY)
        return "400-content-filter"

    async def fault_flapping(self, ex: Exchange) -> str:
        now = time.time()
        if self.outage_started is None:
            self.outage_started = now
        if now - self.outage_started < self.waits.outage:
            ex.reply.json(503, _error("The service is temporarily unavailable.", "server_error"))
            return "503"
        return await self.answer(ex)


async def serve(port: int, profile: str) -> None:
    provider = FaultProvider(profile)
    listener = await asyncio.start_server(provider.handle, "127.0.0.1", port, backlog=256)
    print(f"PORT {listener.sockets[0].getsockname()[1]}", flush=True)
    async with listener:
        await listener.serve_forever()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed on the first line)")
    parser.add_argument("--profile", choices=sorted(PROFILES), default="fast")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.port, args.profile))


if __name__ == "__main__":
    main(sys.argv[1:])
