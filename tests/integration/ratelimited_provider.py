"""An OpenAI-compatible chat server on 127.0.0.1 that announces its rate limit and enforces it.

Runs as its own process (so its CPU and event loop are not the client's):

    python -m tests.integration.ratelimited_provider --rpm-window 2 --requests 10 --delay 0.02
    # first line on stdout: "PORT <n>"

Per model name it keeps a fixed window of ``--window`` seconds holding ``--requests`` requests
and ``--tokens`` tokens (prompt characters / 4 + ``max_tokens``, as OpenAI reserves them).
Every answer, 200 or 429, carries OpenAI's headers (``x-ratelimit-limit-requests``,
``-remaining-requests``, ``-reset-requests`` as a Go duration, and the same for tokens); a
request over the budget is answered 429 with ``retry-after-ms`` and ``Retry-After``. With
``--style anthropic`` it sends Anthropic's ``anthropic-ratelimit-*`` headers instead (resets
as RFC 3339 times). ``GET /_counts`` reports served and refused requests per model;
``POST /_reset`` forgets them and starts new windows.

Standard library only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any


class Window:
    """One model's fixed window: requests and tokens used since ``start``."""

    def __init__(self, now: float) -> None:
        self.start = now
        self.requests = 0
        self.tokens = 0


class Limiter:
    def __init__(self, window: float, requests: int, tokens: int, delay: float, style: str) -> None:
        self.window = window
        self.requests = requests
        self.tokens = tokens
        self.delay = delay
        self.style = style
        self.windows: dict[str, Window] = {}
        self.served: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()

    def reset(self) -> None:
        self.windows.clear()
        self.served.clear()
        self.refused.clear()

    def judge(self, model: str, tokens: int) -> tuple[bool, dict[str, str]]:
        """Count the request if the window holds it; the headers announcing what is left."""
        now = time.monotonic()
        window = self.windows.get(model)
        if window is None or now - window.start >= self.window:
            window = self.windows[model] = Window(now)
        ok = window.requests < self.requests and window.tokens + tokens <= self.tokens
        if ok:
            window.requests += 1
            window.tokens += tokens
        reset = max(0.0, window.start + self.window - now)
        headers = self.headers(window, reset)
        if not ok:
            headers["retry-after-ms"] = str(math.ceil(reset * 1000))
            headers["retry-after"] = str(math.ceil(reset))
        return ok, headers

    def headers(self, window: Window, reset: float) -> dict[str, str]:
        left_requests = max(0, self.requests - window.requests)
        left_tokens = max(0, self.tokens - window.tokens)
        if self.style == "anthropic":
            at = datetime.fromtimestamp(time.time() + reset, tz=UTC).isoformat().replace("+00:00", "Z")
            return {
                "anthropic-ratelimit-requests-limit": str(self.requests),
                "anthropic-ratelimit-requests-remaining": str(left_requests),
                "anthropic-ratelimit-requests-reset": at,
                "anthropic-ratelimit-tokens-limit": str(self.tokens),
                "anthropic-ratelimit-tokens-remaining": str(left_tokens),
                "anthropic-ratelimit-tokens-reset": at,
            }
        duration = f"{reset:.3f}s"
        return {
            "x-ratelimit-limit-requests": str(self.requests),
            "x-ratelimit-remaining-requests": str(left_requests),
            "x-ratelimit-reset-requests": duration,
            "x-ratelimit-limit-tokens": str(self.tokens),
            "x-ratelimit-remaining-tokens": str(left_tokens),
            "x-ratelimit-reset-tokens": duration,
        }


def _tokens(body: dict[str, Any]) -> int:
    chars = sum(len(str(m.get("content") or "")) for m in body.get("messages") or [])
    return math.ceil(chars / 4) + int(body.get("max_tokens") or 16)


def _completion(model: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-limited",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
    }


def _message(model: str) -> dict[str, Any]:
    return {
        "id": "msg_limited",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": "ok"}],
        "stop_reason": "end_turn",
        "usage": {"input_tokens": 5, "output_tokens": 1},
    }


async def _respond(writer: asyncio.StreamWriter, status: int, body: Any, headers: dict[str, str]) -> None:
    data = json.dumps(body).encode()
    reason = {200: "OK", 404: "Not Found", 429: "Too Many Requests"}.get(status, "OK")
    head = [f"HTTP/1.1 {status} {reason}", "content-type: application/json", f"content-length: {len(data)}"]
    head += [f"{k}: {v}" for k, v in headers.items()]
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + data)
    await writer.drain()


async def _handle(limiter: Limiter, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError, ValueError):
        while True:
            line = await reader.readline()
            if not line:
                break
            method, path, _ = line.decode("latin-1").split(" ", 2)
            length = 0
            while True:
                raw = await reader.readline()
                if raw in (b"\r\n", b"\n", b""):
                    break
                key, _, value = raw.decode("latin-1").partition(":")
                if key.strip().lower() == "content-length":
                    length = int(value.strip())
            body = json.loads(await reader.readexactly(length)) if length else {}
            if path.startswith("/_counts"):
                await _respond(writer, 200, {"served": limiter.served, "refused": limiter.refused}, {})
                continue
            if path.startswith("/_reset"):
                limiter.reset()
                await _respond(writer, 200, {"reset": True}, {})
                continue
            anthropic = path.endswith("/messages")
            if method != "POST" or not (anthropic or path.endswith("/chat/completions")):
                await _respond(writer, 404, {"error": {"message": f"no route {path}"}}, {})
                continue
            model = str(body.get("model") or "model")
            ok, headers = limiter.judge(model, _tokens(body))
            if not ok:
                limiter.refused[model] += 1
                error: dict[str, Any] = {"error": {"message": "Rate limit reached", "type": "rate_limit_error"}}
                await _respond(writer, 429, {"type": "error", **error} if anthropic else error, headers)
                continue
            await asyncio.sleep(limiter.delay)
            limiter.served[model] += 1
            await _respond(writer, 200, _message(model) if anthropic else _completion(model), headers)
    writer.close()


async def _main(args: argparse.Namespace) -> None:
    limiter = Limiter(args.window, args.requests, args.tokens, args.delay, args.style)
    server = await asyncio.start_server(lambda r, w: _handle(limiter, r, w), "127.0.0.1", args.port, backlog=512)
    port = server.sockets[0].getsockname()[1]
    print(f"PORT {port}", flush=True)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--window", type=float, default=2.0, help="seconds per window")
    parser.add_argument("--requests", type=int, default=10, help="requests per window")
    parser.add_argument("--tokens", type=int, default=1_000_000, help="tokens per window")
    parser.add_argument("--delay", type=float, default=0.02, help="seconds to answer a served request")
    parser.add_argument("--style", choices=("openai", "anthropic"), default="openai")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(args))
    sys.exit(0)


if __name__ == "__main__":
    main()
