"""A loopback STUB upstream speaking OpenAI's Chat Completions wire format, for the server's tests.

Not a model: it answers from the request, by the documented wire format, so a test
knows what the gateway must pass on. ``POST /v1/chat/completions``:

* model ``down*``: 503 (the router fails over to the next deployment)
* ``tools`` sent: a call of the only / forced tool, arguments filled from its JSON schema
* ``response_format`` json_schema: content is a JSON object filled from the schema;
  json_object: ``{"ok": true}``
* otherwise: ``echo: <last user text>``
* model ``slow*``: streams 50 pieces 0.1 s apart (disconnect and shutdown tests); not streamed,
  answers after 5 s unless the caller hangs up first (counted as an abandoned call)
* model ``cut*``: streams three pieces, then drops the connection
* model ``leaky*``: 401 whose message quotes the ``Authorization`` header it got

Streams send ``usage`` in a last chunk when ``stream_options.include_usage`` is set.
``GET /stats`` counts requests, completed and abandoned streams (a client that went
away mid-stream) and requests per model.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

USAGE = {"prompt_tokens": 20, "completion_tokens": 5, "total_tokens": 25}


class Stats:
    def __init__(self) -> None:
        self.by_model: Counter[str] = Counter()
        self.streams_done = 0
        self.streams_abandoned = 0
        self.streams_open = 0
        self.calls_open = 0
        self.calls_abandoned = 0
        self.bodies: list[dict[str, Any]] = []


def sample(schema: dict[str, Any]) -> Any:
    kind = schema.get("type")
    if "enum" in schema:
        return schema["enum"][0]
    if kind == "object" or "properties" in schema:
        return {name: sample(sub) for name, sub in (schema.get("properties") or {}).items()}
    if kind == "array":
        return [sample(schema.get("items") or {"type": "string"})]
    if kind == "integer":
        return 7
    if kind == "number":
        return 1.5
    if kind == "boolean":
        return True
    return "Paris"


def _last_user(body: dict[str, Any]) -> str:
    for message in reversed(body.get("messages") or []):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
            return str(content)
    return ""


def _answer(body: dict[str, Any]) -> tuple[str | None, list[dict[str, Any]]]:
    tools = body.get("tools") or []
    choice = body.get("tool_choice")
    if tools and choice != "none":
        forced = choice.get("function", {}).get("name") if isinstance(choice, dict) else None
        tool = next((t for t in tools if t["function"]["name"] == forced), tools[0])
        args = sample(tool["function"].get("parameters") or {})
        return None, [
            {
                "id": "call_stub1",
                "type": "function",
                "function": {"name": tool["function"]["name"], "arguments": json.dumps(args)},
            }
        ]
    fmt = body.get("response_format") or {}
    if fmt.get("type") == "json_schema":
        return json.dumps(sample(fmt["json_schema"]["schema"])), []
    if fmt.get("type") == "json_object":
        return '{"ok": true}', []
    return f"echo: {_last_user(body)}", []


def create_app(stats: Stats) -> Starlette:
    async def completions(request: Request) -> Response:
        body = await request.json()
        model = str(body.get("model"))
        stats.by_model[model] += 1
        stats.bodies.append(body)
        if model.startswith("down"):
            return JSONResponse({"error": {"message": "stub outage", "type": "server_error"}}, 503)
        if model.startswith("leaky"):  # an upstream that quotes the credential it refused, as some do
            sent = request.headers.get("authorization", "")
            return JSONResponse({"error": {"message": f"Incorrect API key provided: {sent}", "type": "auth"}}, 401)
        if model.startswith("slow") and not body.get("stream") and not await _patient(request, stats):
            return Response(status_code=499)
        content, calls = _answer(body)
        if body.get("stream"):
            return StreamingResponse(_stream(stats, body, model, content, calls), media_type="text/event-stream")
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if calls:
            message["tool_calls"] = calls
        return JSONResponse(
            {
                "id": "chatcmpl-stub",
                "object": "chat.completion",
                "created": 0,
                "model": model,
                "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if calls else "stop"}],
                "usage": USAGE,
            }
        )

    async def stats_view(request: Request) -> Response:
        return JSONResponse(
            {
                "by_model": dict(stats.by_model),
                "streams_done": stats.streams_done,
                "streams_abandoned": stats.streams_abandoned,
                "streams_open": stats.streams_open,
                "calls_open": stats.calls_open,
                "calls_abandoned": stats.calls_abandoned,
            }
        )

    return Starlette(
        routes=[
            Route("/v1/chat/completions", completions, methods=["POST"]),
            Route("/stats", stats_view, methods=["GET"]),
        ]
    )


async def _patient(request: Request, stats: Stats) -> bool:
    """Wait 5 s before answering; False (counted) when the caller hung up meanwhile."""
    stats.calls_open += 1
    try:
        for _ in range(100):
            if await request.is_disconnected():
                stats.calls_abandoned += 1
                return False
            await asyncio.sleep(0.05)
        return True
    finally:
        stats.calls_open -= 1


def _chunk(model: str, delta: dict[str, Any], finish: str | None = None) -> bytes:
    payload = {
        "id": "chatcmpl-stub",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return f"data: {json.dumps(payload)}\n\n".encode()


async def _stream(
    stats: Stats, body: dict[str, Any], model: str, content: str | None, calls: list[dict[str, Any]]
) -> AsyncIterator[bytes]:
    stats.streams_open += 1
    finished = False
    try:
        yield _chunk(model, {"role": "assistant", "content": ""})
        if calls:
            call = calls[0]
            head = {
                "index": 0,
                "id": call["id"],
                "type": "function",
                "function": {"name": call["function"]["name"], "arguments": ""},
            }
            yield _chunk(model, {"tool_calls": [head]})
            arguments = call["function"]["arguments"]
            half = len(arguments) // 2
            for piece in (arguments[:half], arguments[half:]):
                yield _chunk(model, {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
        elif model.startswith("cut"):
            for i in range(3):
                yield _chunk(model, {"content": f"{i} "})
            raise ConnectionResetError("the stub drops the stream")
        elif model.startswith("slow"):
            for i in range(50):
                await asyncio.sleep(0.1)
                yield _chunk(model, {"content": f"{i} "})
        else:
            text = content or ""
            for start in range(0, len(text), 4):
                yield _chunk(model, {"content": text[start : start + 4]})
        yield _chunk(model, {}, "tool_calls" if calls else "stop")
        if (body.get("stream_options") or {}).get("include_usage"):
            payload = {
                "id": "chatcmpl-stub",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": model,
                "choices": [],
                "usage": USAGE,
            }
            yield f"data: {json.dumps(payload)}\n\n".encode()
        yield b"data: [DONE]\n\n"
        finished = True
    finally:
        stats.streams_open -= 1
        if finished:
            stats.streams_done += 1
        else:
            stats.streams_abandoned += 1
