"""The Starlette app: routes, authentication, body limit, and the request path of each endpoint.

Each chat request goes down once and comes back up: authenticate (401) -> read the
body within the limit (413) -> parse it in its wire format (400) -> find the router
(404) -> check the key may use it (403) and is within its limits (429) -> run the
call -> answer in the same wire format. Errors before a stream's first chunk are
plain JSON errors with their status; after it, an error event ends the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import orjson
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from langchain_multigateway._redact import WATCHED_LOGGERS, install_log_redaction, register_secret
from langchain_multigateway.server import anthropic_api, openai_api
from langchain_multigateway.server.call import ChatCall
from langchain_multigateway.server.errors import ApiError, anthropic_error_body, api_error_from, openai_error_body
from langchain_multigateway.server.gateway import Gateway
from langchain_multigateway.server.keys import KeyStore, VirtualKey

if TYPE_CHECKING:
    from langchain_multigateway.dashboard import DashboardSource, Gatekeeper

__all__ = ["MASTER_KEY_ENV", "ServerSettings", "create_app"]

logger = logging.getLogger("langchain_multigateway.server")
MASTER_KEY_ENV = "MULTIGATEWAY_MASTER_KEY"
_MASTER = VirtualKey(id="master", name="master", prefix="")


@dataclass
class ServerSettings:
    """How the server treats requests (the CLI's flags set these).

    Attributes:
        max_body_bytes: Larger request bodies get 413 (default 4 MiB: room for a few
            base64 images; send larger images as URLs).
        require_key: Every API call needs a virtual key or the master key (default True;
            ``--no-auth`` turns it off for a gateway only you can reach).
        master_key: Administers keys over HTTP and may call every model; from
            ``$MULTIGATEWAY_MASTER_KEY`` by default.
    """

    max_body_bytes: int = 4 * 1024 * 1024
    body_timeout: float = 30.0
    """Seconds a request body may take to arrive (408 after): a client cannot hold a
    connection open forever by sending its body a byte at a time."""
    require_key: bool = True
    master_key: SecretStr | None = field(default_factory=lambda: _env_secret(MASTER_KEY_ENV))


def _env_secret(name: str) -> SecretStr | None:
    value = os.environ.get(name, "").strip()
    return SecretStr(value) if value else None


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, headers=headers, media_type="application/json")


class _Server:
    """The handlers, with what they share."""

    def __init__(self, gateway: Gateway, keys: KeyStore | None, settings: ServerSettings) -> None:
        self.gateway = gateway
        self.keys = keys
        self.settings = settings
        master = settings.master_key.get_secret_value() if settings.master_key else ""
        self._master = master.encode()
        register_secret(master)  # masked in every log, error and trace from now on
        # uvicorn's own loggers (errors with tracebacks, the access log) are redacted like the gateway's.
        WATCHED_LOGGERS.add("uvicorn")
        install_log_redaction()

    # ------------------------------------------------------------------ the steps
    def authenticate(self, request: Request) -> VirtualKey | None:
        """The caller's key (``_MASTER`` for the master key); None when keys are not required."""
        secret = _presented(request)
        if not self.settings.require_key and not secret:
            return None
        if not secret:
            msg = "missing API key: send 'Authorization: Bearer <key>' or 'x-api-key: <key>' (multigateway keys create)"
            raise ApiError(401, "authentication", msg, code="missing_api_key")
        if self._master and hmac.compare_digest(secret.encode(), self._master):
            return _MASTER
        key = self.keys.authenticate(secret) if self.keys is not None else None
        if key is None:
            raise ApiError(
                401, "authentication", "invalid API key: this gateway knows no such key", code="invalid_api_key"
            )
        state = key.state()
        if state != "active":
            msg = f"API key {key.prefix}… ({key.name}) is {state}; ask the gateway's admin for a new one"
            raise ApiError(401, "authentication", msg, code=f"{state}_api_key")
        return key

    async def body(self, request: Request) -> Any:
        limit = self.settings.max_body_bytes
        declared = request.headers.get("content-length")
        too_large = ApiError(
            413,
            "too_large",
            f"request body over the limit of {limit} bytes (send images as URLs)",
            code="body_too_large",
        )
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise too_large
        data = bytearray()
        seconds = self.settings.body_timeout
        # A client trickling its body (slowloris) is cut off. A bare timer rather than asyncio.timeout,
        # whose bookkeeping cost a fifth of reading a small body.
        task = asyncio.current_task()
        assert task is not None
        expired: list[bool] = []

        def expire() -> None:
            expired.append(True)
            task.cancel()

        timer = asyncio.get_running_loop().call_later(seconds, expire)
        receive = request.receive  # the ASGI messages themselves: Starlette's stream() adds a generator per call
        try:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise ClientDisconnect
                data += message.get("body", b"")
                if len(data) > limit:
                    raise too_large
                if not message.get("more_body", False):
                    break
        except asyncio.CancelledError:
            if not expired:
                raise
            task.uncancel()
            msg = f"the request body did not arrive within {seconds:g} s; send it at once"
            raise ApiError(408, "timeout", msg, code="body_timeout") from None
        finally:
            timer.cancel()
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise ApiError(400, "invalid_request", f"the request body is not valid JSON: {exc}") from None

    def admit(self, call: ChatCall, key: VirtualKey | None) -> None:
        if call.model not in self.gateway.routers:
            served = ", ".join(sorted(self.gateway.routers))
            msg = f"the model {call.model!r} does not exist on this gateway; it serves: {served}"
            raise ApiError(404, "not_found", msg, param="model", code="model_not_found")
        if key is None or key is _MASTER:
            return
        if not key.allows(call.model):
            allowed = ", ".join(key.models or ())
            msg = f"key {key.name!r} may not use {call.model!r}; it may use: {allowed}"
            raise ApiError(403, "permission", msg, param="model", code="model_not_allowed")
        if self.gateway.limits is not None:
            self.gateway.limits.admit(key)

    def _key_of(self, key: VirtualKey | None) -> VirtualKey | None:
        return None if key is _MASTER else key

    # ------------------------------------------------------------------ chat endpoints
    async def chat(
        self,
        request: Request,
        parse: Callable[[Any], ChatCall],
        render: Callable[[ChatCall, Any, Any], dict[str, Any]],
        stream: Callable[[ChatCall, Any], AsyncIterator[bytes]],
        error_body: Callable[[ApiError], dict[str, Any]],
        route: str,
    ) -> Response:
        try:
            key = self.authenticate(request)
            call = parse(await self.body(request))
            hold = None
            try:
                self.admit(call, key)
                if self.gateway.limits is not None and key is not None and key is not _MASTER:
                    try:
                        hold = await self.gateway.limits.ahold(key, lambda: self.gateway.estimate_cost(call))
                    except BaseException:
                        self.gateway.limits.cancel(key)  # admitted above: give its budget reservation back
                        raise
            except ApiError:
                self._refused(key)
                raise
            key = self._key_of(key)
            if call.stream:
                routed = self.gateway.stream(call, key, hold)
                # Until the first chunk (a max_concurrency slot, failover, the first token) a client that
                # hangs up cancels the stream here; after it, the streaming response watches for that.
                starting = _HangUp(request)
                try:
                    await routed.start(starting.client_left)
                except asyncio.CancelledError:
                    await routed.aclose()
                    return self._cut_short(starting, route)
                except BaseException:
                    await routed.aclose()
                    raise
                finally:
                    starting.stop()
                return StreamingResponse(
                    stream(call, routed), media_type="text/event-stream", headers={**routed.headers(), **_NO_CACHE}
                )
            # A client that hangs up cancels the call: the upstream request is cut and
            # everything it held (key hold, router slot, budget estimate) is given back.
            hang_up = _HangUp(request)
            settle_later: list[Callable[[], None]] = []
            try:
                message, outcome, upstream = await self.gateway.invoke(
                    call, key, hold, settle_later, hang_up.client_left
                )
            except asyncio.CancelledError:
                return self._cut_short(hang_up, route)
            finally:
                hang_up.stop()
            try:
                content = None
                if upstream is not None and route == "chat_completions":
                    # Passed through: the upstream's own answer, under the name the client addressed.
                    upstream["model"] = call.model
                    with contextlib.suppress(orjson.JSONEncodeError):  # nested past orjson's depth: rendered
                        content = orjson.dumps(upstream)
                if content is None:
                    content = orjson.dumps(render(call, message, outcome))
                response = _AnswerThenSettle(content, outcome.headers(), settle_later)
            except Exception:
                _settle(settle_later)  # the upstream answered (and billed) it: recorded once, whatever we answer
                raise
            settle_later.append(lambda: self._count(route, 200))
            return response
        except ClientDisconnect:
            return Response(status_code=499)
        except Exception as exc:
            failure = api_error_from(exc)
            self._count(route, failure.status)
            headers = failure.headers()
            if failure.status in (408, 413) or failure.code == "server_stopping":
                headers["connection"] = "close"  # a body not read, or the server stopping: this connection is done
            if (failure.status < 500 and failure.status != 429) or failure.code == "budget_exceeded":
                # The same request would fail the same way: tell the openai SDK not to retry it.
                headers["x-should-retry"] = "false"
            return _json(error_body(failure), failure.status, headers)

    def _cut_short(self, hang_up: _HangUp, route: str) -> Response:
        """A call cancelled before its answer: 499 when its client left; else the server is stopping (503)."""
        if not hang_up.cancelled_the_call():
            raise _stopping() from None  # not the CancelledError: a plain 503
        self._count(route, 499)
        return Response(status_code=499)

    def _refused(self, key: VirtualKey | None) -> None:
        """Count a call a key's permissions or limits refused before anything was sent."""
        if key is not None and key is not _MASTER and self.gateway.metrics is not None:
            self.gateway.metrics.key_call(key.name, "refused", {"input": 0, "output": 0}, None)

    def _count(self, route: str, status: int) -> None:
        if self.gateway.metrics is not None:
            self.gateway.metrics.response(route, status)

    async def chat_completions(self, request: Request) -> Response:
        return await self.chat(
            request,
            openai_api.parse_chat_request,
            openai_api.completion_body,
            self._openai_stream,
            openai_error_body,
            "chat_completions",
        )

    async def messages(self, request: Request) -> Response:
        return await self.chat(
            request,
            anthropic_api.parse_messages_request,
            anthropic_api.message_body,
            self._anthropic_stream,
            anthropic_error_body,
            "messages",
        )

    async def _openai_stream(self, call: ChatCall, routed: Any) -> AsyncIterator[bytes]:
        writer = openai_api.ChunkWriter(call)
        try:
            # Events known together go out in one write (each write is a send to the client).
            head = [_sse(writer.first())]
            out = writer.feed(routed.first) if routed.first is not None else None
            if out is not None:
                head.append(_sse(out))
            yield b"".join(head)
            async for chunk in routed.rest():
                out = writer.feed(chunk)
                if out is not None:
                    yield _sse(out)
            yield b"".join([*(_sse(out) for out in writer.end(routed.outcome())), b"data: [DONE]\n\n"])
            self._count("chat_completions", 200)
        except Exception as exc:
            self._count("chat_completions", api_error_from(exc).status)
            yield _sse(openai_error_body(api_error_from(exc)))
        finally:
            # Shielded: when the client went away this task is being cancelled, and the
            # upstream stream must still be closed (which cancels the provider's request).
            with anyio.CancelScope(shield=True):
                await routed.aclose()

    async def _anthropic_stream(self, call: ChatCall, routed: Any) -> AsyncIterator[bytes]:
        writer = anthropic_api.EventWriter(call)
        try:
            # Events known together go out in one write (each write is a send to the client).
            head = writer.start() + (writer.feed(routed.first) if routed.first is not None else [])
            yield b"".join(_event(event, data) for event, data in head)
            async for chunk in routed.rest():
                events = writer.feed(chunk)
                if events:
                    yield b"".join(_event(event, data) for event, data in events)
            yield b"".join(_event(event, data) for event, data in writer.end(routed.outcome()))
            self._count("messages", 200)
        except Exception as exc:
            self._count("messages", api_error_from(exc).status)
            yield _event("error", anthropic_error_body(api_error_from(exc)))
        finally:
            # Shielded: when the client went away this task is being cancelled, and the
            # upstream stream must still be closed (which cancels the provider's request).
            with anyio.CancelScope(shield=True):
                await routed.aclose()

    # ------------------------------------------------------------------ the rest
    async def models(self, request: Request) -> Response:
        try:
            key = self.authenticate(request)
        except ApiError as failure:
            return _json(openai_error_body(failure), failure.status)
        names = sorted(n for n in self.gateway.routers if key is None or key is _MASTER or key.allows(n))
        data = [{"id": n, "object": "model", "created": 0, "owned_by": "multigateway"} for n in names]
        return _json({"object": "list", "data": data})

    async def liveness(self, request: Request) -> Response:
        return _json({"status": "ok"})

    async def readiness(self, request: Request) -> Response:
        """Ready when every router has a deployment whose breaker is not open; per deployment, its load."""
        routers: dict[str, Any] = {}
        ready = True
        for name, router in self.gateway.routers.items():
            health = router.health()
            usable = any(h.breaker != "open" for h in health.values())
            ready = ready and usable
            deployments = {
                dep: {"breaker": h.breaker, "in_flight": h.in_flight, "waiting": h.waiting} for dep, h in health.items()
            }  # waiting: calls queued for one of a max_concurrency deployment's slots
            routers[name] = {"ready": usable, "deployments": deployments}
        return _json({"status": "ready" if ready else "unavailable", "routers": routers}, 200 if ready else 503)

    async def metrics(self, request: Request) -> Response:
        if self.gateway.metrics is None:
            return _json({"error": {"message": "metrics are off"}}, 404)
        from prometheus_client import CONTENT_TYPE_LATEST

        return Response(self.gateway.metrics.render(), media_type=CONTENT_TYPE_LATEST)


def _stopping() -> ApiError:
    """The answer to a call uvicorn cancelled (the only other canceller of a handler: its graceful timeout
    passed while the call was unanswered). The call is settled as cut short and the client is told to send
    it again, to an instance that is not stopping, instead of a bare 500 and a traceback in the log."""
    task = asyncio.current_task()
    if task is not None:
        task.uncancel()
    msg = "the gateway is shutting down and cut this call short; send it again"
    return ApiError(503, "unavailable", msg, code="server_stopping", retry_after=1)


_NO_CACHE = {"cache-control": "no-cache", "x-accel-buffering": "no"}


class _AnswerThenSettle(Response):
    """A JSON answer whose call is settled (ledger, limits, metrics) once the answer is written.

    The client does not wait for the bookkeeping. Settling is synchronous and writing an answer
    yields to the event loop only when the client reads slower than the answer is written, so a
    next request, even one from the same client, sees the call's spend and counts. The call is
    settled however the writing ends (the client gone, the server stopping): nothing is lost.
    """

    def __init__(self, body: bytes, headers: dict[str, str], settle: list[Callable[[], None]]) -> None:
        super().__init__(body, headers=headers, media_type="application/json")
        self._settle = settle

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            _settle(self._settle)


def _settle(steps: list[Callable[[], None]]) -> None:
    for step in steps:
        try:
            step()
        except Exception:  # the answer is out: a failed record is logged, not turned into an error
            logger.exception("settling an answered call failed")


_WATCH_AFTER_SECONDS = 0.02
"""How long a call runs before its client is watched for hanging up. A call answered sooner (a
cached or very fast upstream) never pays for the watcher, a task of its own that cost about as
much as the router's decision; a client that leaves a longer call is noticed within this much."""


class _HangUp:
    """Cancels the current task when its client disconnects (the body was read: the next message is the
    disconnect). Plain asyncio rather than an anyio cancel scope: this runs on every call, and the
    scope's backend lookups cost more than the watching."""

    __slots__ = ("_cancelled", "_request", "_task", "_timer", "_watcher")

    def __init__(self, request: Request) -> None:
        self._task = asyncio.current_task()
        self._cancelled = False
        self._request = request
        self._watcher: asyncio.Future[None] | None = None
        self._timer = asyncio.get_running_loop().call_later(_WATCH_AFTER_SECONDS, self._start)

    def _start(self) -> None:
        if self._task is not None:  # uvicorn keeps answering "disconnect" once it happened: nothing is missed
            self._watcher = asyncio.ensure_future(self._watch(self._request))

    async def _watch(self, request: Request) -> None:
        while True:
            message = await request.receive()
            if message["type"] == "http.disconnect":
                if self._task is not None:
                    self._cancelled = True
                    self._task.cancel()
                return

    def client_left(self) -> bool:
        """Whether this hang-up cancelled the call (else, if it was cancelled, the server is stopping)."""
        return self._cancelled

    def cancelled_the_call(self) -> bool:
        """Whether the task's cancellation was this hang-up's (then it is taken back: the task goes on)."""
        if self._cancelled and self._task is not None:
            self._task.uncancel()
            return True
        return False

    def stop(self) -> None:
        self._task = None  # synchronous: a disconnect seen from now on cancels nothing
        self._timer.cancel()
        if self._watcher is not None:
            self._watcher.cancel()


def _presented(request: Request) -> str | None:
    auth = request.headers.get("authorization")
    if auth and auth[:7].lower() == "bearer ":
        return auth[7:].strip() or None
    return request.headers.get("x-api-key") or None


def _sse(data: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(data) + b"\n\n"


def _event(event: str, data: dict[str, Any]) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def _dashboard_of(server: _Server) -> tuple[DashboardSource, Gatekeeper]:
    from langchain_multigateway.dashboard import DashboardSource, Gatekeeper

    ledger = server.gateway.ledger
    path = None if ledger is None or ledger.spill_path is None else Path(ledger.path)  # no file: in memory
    source = DashboardSource(routers=server.gateway.routers, ledger_path=path, keys=server.keys)
    master = server.settings.master_key
    return source, Gatekeeper(master.get_secret_value() if master else None)


def create_app(
    gateway: Gateway,
    *,
    keys: KeyStore | None = None,
    settings: ServerSettings | None = None,
    on_shutdown: Callable[[], Awaitable[None]] | None = None,
) -> Starlette:
    """The ASGI app serving ``gateway``'s routers (run it with uvicorn)."""
    from langchain_multigateway.dashboard import dashboard_routes
    from langchain_multigateway.server.admin import admin_routes

    server = _Server(gateway, keys, settings or ServerSettings())
    chat_routes: dict[str, Callable[[Request], Awaitable[Response]]] = {  # POST; the fast lane serves them too
        "/v1/chat/completions": server.chat_completions,
        "/chat/completions": server.chat_completions,
        "/v1/messages": server.messages,
    }
    routes = [
        *(Route(path, handler, methods=["POST"]) for path, handler in chat_routes.items()),
        Route("/v1/models", server.models, methods=["GET"]),
        Route("/health/liveness", server.liveness, methods=["GET"]),
        Route("/health/readiness", server.readiness, methods=["GET"]),
        Route("/metrics", server.metrics, methods=["GET"]),
        *admin_routes(server),
        *dashboard_routes(*_dashboard_of(server)),  # /ui: the read-only dashboard, for the master key
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        gateway.warm_up()
        yield
        if on_shutdown is not None:
            await on_shutdown()

    app = _GatewayApp(routes=routes, lifespan=lifespan)
    app.hot_routes = chat_routes
    app.state.server = server
    return app


class _GatewayApp(Starlette):
    """Starlette, with the chat endpoints' POSTs handed straight to their handler.

    Starlette's error and exception middleware and its route matching cost about 13 µs a
    request, more than a tenth of what the gateway itself adds to a call. The chat handlers
    answer every failure themselves (their errors in the client's wire format), and uvicorn
    answers 500 to anything that escapes, as Starlette's error middleware would. An app given
    middleware of its own (``app.add_middleware``) takes Starlette's path for every request,
    so that middleware sees them all.
    """

    hot_routes: dict[str, Callable[[Request], Awaitable[Response]]]

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and not self.user_middleware:
            path = scope["path"]
            root = scope.get("root_path")
            if root and path.startswith(root):  # behind a proxy's prefix (uvicorn puts it in the path): the route
                path = path[len(root) :]  # is what follows it, as Starlette's routing reads it
            handler = self.hot_routes.get(path)
            if handler is not None:
                scope["app"] = self
                response = await handler(Request(scope, receive, send))
                await response(scope, receive, send)
                return
        await super().__call__(scope, receive, send)
