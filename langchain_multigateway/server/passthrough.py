"""The server's lean path for non-streamed chat: the router decides, the HTTP request is sent without the SDK.

Profiling ``multigateway serve`` under load showed the openai SDK's request machinery
(option building, header assembly, auth hooks) costing about as much CPU as the HTTP
exchange itself, and LangChain's ``ainvoke`` wrappers around the router more than the
router's own work. The server needs neither: it has no callback handlers, and an
OpenAI-compatible upstream's answer is already in the shape the client asked for.

So a non-streamed call goes straight to the router's engine (:func:`drive_async` with
the router's own :class:`Engine`: selection, admission, gates, breakers, rate windows,
budgets, retries and failover are the router's, decided in the same code as for a
library call) and each try at an :class:`OpenAIChatModel` deployment is performed here:

* the body is the one the provider builds (``_build_request``: its defaults, bound
  tools, structured-output format, the call's parameters), never re-derived here;
* it is POSTed by :class:`Upstream` (aiohttp, a session per deployment and event loop:
  see ``upstream.py`` for why), with the headers the SDK would send (key, organization,
  project, ``default_headers``);
* the answer is read by the provider's own parser (usage, malformed answers), and
  errors are typed by the provider's own rules (``error_from_status``, ``_failure``);
* the upstream's JSON goes back to the client with only ``model`` rewritten, except an
  answer the full path would shape otherwise, which the server renders from the parsed
  message as the full path does: one quoting a credential the deployment was sent (an
  upstream echoing its key in some field), and structured output answered as a tool call;
* a structured-output refusal is the router's :class:`ModelRefusalError` (its content
  policy: raise, or the next deployment), as :func:`check_refusal` makes it on the full path.

Any other deployment (another provider, a Responses-API model, a custom binding, a
model given its own ``http_async_client``) is
tried with the router's own attempt function, so a mixed router works unchanged. A
router with a response cache, or a LangChain cache in force, is not served here: its
calls take the full path so the cache sees them. Nor is any call while LangSmith tracing
is on (``LANGSMITH_TRACING=true``): only LangChain's run machinery on the full path traces it.
"""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeGuard
from urllib.parse import unquote, urlsplit, urlunsplit

import orjson
from langchain_core.globals import get_llm_cache
from langchain_core.outputs import ChatResult

from langchain_multigateway._redact import MIN_SECRET_LENGTH, is_secret_header, is_secret_query
from langchain_multigateway.chat_models._error_body import error_message_of
from langchain_multigateway.chat_models._exchange import Exchange, raise_as
from langchain_multigateway.chat_models.openai import OpenAIChatModel
from langchain_multigateway.errors import error_from_status
from langchain_multigateway.routing import attempt
from langchain_multigateway.routing.attempt import Answer, Failed, Shared, Slot, Try, atake
from langchain_multigateway.routing.engine import drive_async
from langchain_multigateway.routing.request import Request, read_overrides
from langchain_multigateway.routing.structured import check_refusal
from langchain_multigateway.server import upstream
from langchain_multigateway.server.upstream import Upstream

if TYPE_CHECKING:
    from langchain_multigateway.routing import RoutingChatModel
    from langchain_multigateway.state.base import Admission

__all__ = ["PassThrough", "Served"]

_CHAT_PATH = "/chat/completions"


class Served:
    """A served call: the router's finished answer, and the upstream's JSON when it was passed through."""

    __slots__ = ("data", "result")

    def __init__(self, result: ChatResult, data: dict[str, Any] | None) -> None:
        self.result = result
        self.data = data
        """The upstream's ``chat.completion`` object (None: a deployment served through LangChain)."""


class _Raw(Answer):
    """A try answered by pass-through: the router's Answer plus the upstream's JSON."""

    __slots__ = ("data",)

    def __init__(self, slot: Slot, result: ChatResult, data: dict[str, Any] | None) -> None:
        super().__init__(slot, result)
        self.data = data


class _Sender:
    """How to reach one OpenAI-compatible deployment: its URL, headers, and its upstream client."""

    def __init__(self, model: OpenAIChatModel) -> None:
        base = model._endpoint() or ""
        self.url = base.rstrip("/") + _CHAT_PATH
        headers = {"content-type": "application/json", "accept": "application/json"}
        if model.api_key is not None:
            headers["authorization"] = f"Bearer {model.api_key.get_secret_value()}"
        if model.organization:
            headers["openai-organization"] = model.organization
        project = os.environ.get("OPENAI_PROJECT_ID")
        if project:  # as the openai SDK sends it (the model leaves it to the SDK's environment default)
            headers["openai-project"] = project
        headers.update(model.default_headers or {})
        self.url, basic = _without_userinfo(self.url)
        if basic is not None:  # as the SDK's httpx2 client: a URL's user:password@ is Basic auth, over any other
            headers["authorization"] = basic
        self.headers = headers
        self.params: Any = dict(model.default_query) if model.default_query else None
        # What an answer must not quote to be passed on verbatim (placeholders like "none" are no secret).
        sent = [v for k, v in headers.items() if is_secret_header(k)]
        sent += [str(v) for k, v in (self.params or {}).items() if is_secret_query(k)]
        sent += [v.removeprefix("Bearer ") for v in sent if v.startswith("Bearer ")]
        sent += [unquote(v) for v in (urlsplit(base).password,) if v]  # the base URL's user:password@
        self.secrets = tuple({v.encode() for v in sent if len(v) >= MIN_SECRET_LENGTH})
        self.upstream = Upstream(self.url)


class PassThrough:
    """The lean non-streamed path for the routers that allow it (see the module docstring)."""

    def __init__(self, routers: Mapping[str, RoutingChatModel]) -> None:
        self._senders: dict[int, _Sender] = {}
        self._routers = {name: router for name, router in routers.items() if _cache_free(router)}
        if _tracing_on():  # read once, as LangSmith reads its environment once
            self._routers = {}

    def serves(self, model: str) -> bool:
        """Whether calls to the router ``model`` take this path."""
        return model in self._routers and get_llm_cache() is None

    def warm_up(self) -> None:
        """Build each OpenAI deployment's sender now (and its client, in the serving loop)."""
        for router in self._routers.values():
            for dep in router.deployments:
                if _lean(dep.model):
                    self._sender(dep.model).upstream.warm_up()

    def _sender(self, model: OpenAIChatModel) -> _Sender:
        sender = self._senders.get(id(model))
        if sender is None:
            sender = self._senders[id(model)] = _Sender(model)
        return sender

    async def invoke(self, name: str, messages: list[Any], stop: list[str] | None, kwargs: dict[str, Any]) -> Served:
        """Route one non-streamed call of router ``name``; raises the router's typed errors."""
        router = self._routers[name]
        engine = router._engine  # the router's own engine: every routing decision is made there
        overrides = read_overrides(kwargs, None)
        request, call = engine.begin(messages, stop, kwargs, overrides, streaming=False, whole=False, runs=None)
        answer = await drive_async(engine, request, call, self._attempt)
        result = answer.finish(call.attempts)
        return Served(result, answer.data if isinstance(answer, _Raw) else None)

    async def _attempt(self, shared: Shared, request: Request, step: Try) -> Answer | Failed | Admission:
        """One try: passed through for a plain OpenAI deployment, else the router's own attempt."""
        model = step.prepared.model
        if not _lean(model) or step.prepared.runnable is not None:
            return await attempt.invoke_async(shared, request, step)
        slot = await atake(shared, request, step)
        if not isinstance(slot, Slot):
            return slot
        sent: tuple[ChatResult, dict[str, Any] | None] | None = None
        try:
            sent = await self._send(model, request, step)
            check_refusal(request.structured, sent[0])  # as the full path: the router's content policy decides
            slot.succeeded(sent[0].generations[0].message)
        except BaseException as exc:
            slot.ended(exc)
            if slot.failure is None:
                raise  # cancelled (the client went away) or interrupted: not the deployment's outcome
        finally:
            await slot.afinish(None, None)  # the slot's one release, however the try ended
        if slot.failure is not None or sent is None:
            assert slot.failure is not None
            return slot.failure
        return _Raw(slot, sent[0], sent[1])

    async def _send(
        self, model: OpenAIChatModel, request: Request, step: Try
    ) -> tuple[ChatResult, dict[str, Any] | None]:
        """POST the provider's body: the provider's parse of the answer, and the answer itself (None: not JSON
        of the chat-completions shape, rendered by the server from the parsed message)."""
        deadline = None if step.timeout is None else time.monotonic() + max(step.timeout, 0.001)
        payload = model._build_request(request.messages, request.stop, stream=False, **step.prepared.kwargs)
        if "messages" not in payload:  # a Responses-API body: the provider's own transport knows its path
            kwargs = dict(step.prepared.kwargs)
            if step.timeout is not None:
                kwargs["timeout"] = max(step.timeout, 0.001)
            return await model._agenerate(request.messages, request.stop, None, **kwargs), None
        exchange = Exchange(payload, model._clock(payload, stream=False, deadline=deadline))
        sender = self._sender(model)
        try:
            timeouts, exchange.waiting_for = exchange.clock.http_timeouts()
            body = orjson.dumps(payload)
            answer = await sender.upstream.post(body, sender.headers, sender.params, timeouts)
            exchange.request_id = answer.headers.get("x-request-id")
            note = getattr(exchange, "note_headers", None)
            if note is not None:
                note(answer.headers)  # rate limits the upstream announced (learned by the router)
            if answer.status >= 400:
                raise _status_error(model, exchange, answer)
            exchange.answered = True
            data = orjson.loads(answer.body)
            result = model._parse_response(data, exchange)  # usage, and a malformed answer typed as such
            stamped = getattr(exchange, "stamped", None)
            result = stamped(result) if stamped is not None else result
            return result, data if _verbatim(sender, request, answer.body, data, result) else None
        except Exception as exc:
            raise_as(model._failure(exc, exchange), exc)


def _without_userinfo(url: str) -> tuple[str, str | None]:
    """``url`` without its ``user:password@``, and the Basic ``Authorization`` they make (None: none in it).

    aiohttp refuses a URL with credentials next to an ``Authorization`` header (every try would fail).
    """
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url, None
    bare = urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))
    if not (parts.username or parts.password):
        return bare, None
    pair = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
    return bare, "Basic " + base64.b64encode(pair.encode()).decode()


def _verbatim(sender: _Sender, request: Request, raw: bytes, data: Any, result: ChatResult) -> bool:
    """Whether the upstream's JSON may go to the client as it is (else the server renders the parsed answer)."""
    if b"\\u" in raw or b"\\/" in raw:  # JSON escapes could spell a credential: look at it as it will go out
        try:
            raw = orjson.dumps(data)
        except orjson.JSONEncodeError:  # nested past what orjson writes: rendered from the parsed answer
            return False
    if any(secret in raw for secret in sender.secrets):
        return False  # it quotes a credential it was sent: only the parsed answer's fields go out
    message = result.generations[0].message
    # Structured output a deployment answered with a tool call: the client asked for content (JSON text).
    return request.structured is None or not getattr(message, "tool_calls", None)


def _status_error(model: OpenAIChatModel, exchange: Exchange, answer: upstream.Answer) -> Exception:
    """An HTTP error answer typed as the provider types it (status, message, Retry-After, request id)."""
    try:
        body: Any = orjson.loads(answer.body)
    except orjson.JSONDecodeError:
        body = answer.body.decode("utf-8", "replace")
    return error_from_status(
        answer.status,
        _error_message(body) or f"HTTP {answer.status}",
        provider=model.provider_name,
        model=exchange.model,
        request_id=exchange.request_id,
        headers=answer.headers,
        body=body,
    )


def _error_message(body: Any) -> str | None:
    # The SDK path's reading of an error body; a plain-text one (a proxy's HTML page) is capped.
    if isinstance(body, str):
        return body[:500] or None
    return error_message_of(body)


def _lean(model: Any) -> TypeGuard[OpenAIChatModel]:
    """Whether tries at ``model`` are sent by this path: a plain OpenAI-compatible deployment using its
    default HTTP client (a client the user gave the model, for a proxy or certificates, is the SDK's to use)."""
    return type(model) is OpenAIChatModel and model.http_async_client is None


def _tracing_on() -> bool:
    """Whether LangChain would trace a call to LangSmith (a tracer the lean path, without runs, would skip)."""
    from langchain_core.tracers.context import _tracing_v2_is_enabled

    return bool(_tracing_v2_is_enabled())


def _cache_free(router: RoutingChatModel) -> bool:
    """No cache would see the call: the router's response cache and LangChain's ``cache=`` are off."""
    return getattr(router, "response_cache", None) is None and router.cache in (None, False)
