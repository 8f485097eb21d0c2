"""The base of every provider chat model: its fields, identity, and the one call template.

``GatewayChatModel`` runs invoke / stream / ainvoke / astream once for all providers
(time limits, retries, error translation, stream completion); a provider supplies a
request builder, a transport, a response parser and a stream assembler.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from typing import Any, ClassVar, Self, TypeVar

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LangSmithParams, LanguageModelInput, ModelProfile
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    ValidationError,
    model_serializer,
    model_validator,
)

from langchain_multigateway._ls_params import langsmith_params
from langchain_multigateway._redact import MASK, is_secret_header, is_secret_query, redact, redact_value, register_model
from langchain_multigateway._retry import RetryPolicy
from langchain_multigateway.chat_models._arguments import check_arguments
from langchain_multigateway.chat_models._exchange import MALFORMED, Exchange, StreamAssembler, StreamRun, raise_as
from langchain_multigateway.chat_models._health import HealthStatus, health_status
from langchain_multigateway.chat_models._limits import (
    FIRST_TOKEN,
    IDLE,
    TOTAL,
    CallClock,
    TimeLimits,
    default_first_token,
    is_transport_timeout,
)
from langchain_multigateway.chat_models._loops import OwnsClients
from langchain_multigateway.chat_models._openai_format import messages_to_openai, tools_to_openai
from langchain_multigateway.chat_models._profiles import profile_for
from langchain_multigateway.chat_models._redirects import redirect_failure
from langchain_multigateway.chat_models._structured import (
    ProviderCapabilities,
    StructuredOutputMethod,
    response_format_request,
    structured_runnable,
)
from langchain_multigateway.errors import (
    ConfigurationError,
    GatewayConnectionError,
    GatewayError,
    GatewayTimeoutError,
    InvalidRequestError,
    MissingAPIKeyError,
    ModelNotFoundGatewayError,
    ProviderError,
)
from langchain_multigateway.tokens import count_message_tokens, count_text_tokens

__all__ = ["GatewayChatModel", "HealthStatus", "ProviderCapabilities", "StructuredOutputMethod"]

T = TypeVar("T")

_read_within = asyncio.timeout


_DRAIN_SECONDS = 0.02
"""How long the end of a finished stream's body (after ``[DONE]``, the last event) is waited for: an HTTP/1.1
connection closed before its body ended is dropped, and the next call connects (and shakes hands for TLS)
again. An upstream slower than this to end its body has its connection closed, as before."""


async def _drain(events: AsyncIterator[Any], wait: float | None) -> None:
    """Read a complete stream's remaining bytes (normally only the body's closing chunk) so that its
    connection goes back to the client's pool; nothing read here is part of the answer. Never past ``wait``
    (what the call's own limits leave): a complete answer must not end in a timeout."""
    seconds = _DRAIN_SECONDS if wait is None else min(_DRAIN_SECONDS, wait)
    if seconds <= 0:
        return
    try:
        async with _read_within(seconds):
            async for _ in events:
                pass
    except Exception:  # a late or broken end after a complete answer: the connection is closed, as before
        return


_LOCATED_ERRORS = (GatewayConnectionError, GatewayTimeoutError, ModelNotFoundGatewayError)


def _shown(name: str, value: Any) -> Any:
    """A field's value as repr, model_dump and dumps show it: credentials masked."""
    if isinstance(value, str):
        return redact(value)  # URL userinfo, ?api-key=..., any registered key
    if isinstance(value, dict) and name in ("default_headers", "default_query"):
        secret = is_secret_header if name == "default_headers" else is_secret_query
        return {k: MASK if secret(k) else v for k, v in value.items()}
    if isinstance(value, dict):
        return redact_value(value)  # model_kwargs={"openai_key": ...}, extra_headers inside it
    return value


class GatewayChatModel(OwnsClients, BaseChatModel):
    """Base of the gateway's provider chat models (not for direct use)."""

    provider_name: ClassVar[str] = "gateway"
    """Provider id used in metadata, tracing and error messages."""

    api_key_env: ClassVar[str | None] = None
    """Environment variable a required API key comes from; None when the provider needs no key."""

    secret_env: ClassVar[str | None] = None
    """Environment variable of an optional key (serialized as a secret reference, never a value)."""

    model: str = Field(alias="model_name")
    """Model name to use."""

    temperature: float | None = None
    """Sampling temperature; None leaves the provider's default."""

    max_tokens: int | None = None
    """Cap on generated tokens."""

    stop: list[str] | None = Field(default=None, alias="stop_sequences")
    """Default stop sequences."""

    timeout: float | None = Field(default=600.0, alias="request_timeout")
    """Seconds one request may take in all, streams included (alias ``request_timeout``).

    600 s: the last resort behind the three limits below, long enough for the longest
    legitimate generations. A call may pass ``timeout=`` (seconds) to cap its request
    lower, as the router does with what is left of its own deadline.
    """

    connect_timeout: float | None = 10.0
    """Seconds to open a connection (and to wait for a pooled one).

    10 s: a reachable server connects in well under a second, even over TLS across
    continents; a wrong or black-holed address is reported in 10 s instead of hanging.
    """

    first_token_timeout: float | None = None
    """Seconds to the first content chunk of a stream, or to the first byte of a
    non-streamed answer (which a server sends only once the whole answer is ready).

    ``None`` (the default) picks by call: 15 s for a stream's first token (hosted APIs
    start streaming within a few seconds, long prompts included, so 15 s catches a
    server that accepted the request and went silent), 120 s for a non-streamed answer
    (about 4,000 tokens at 35 tokens/s). Models whose profile says they reason before
    answering get 120 s and 300 s. Set a number to use it for both.
    """

    stream_idle_timeout: float | None = 20.0
    """Longest silence, in seconds, between two chunks of a stream once it has begun.

    20 s: a healthy stream sends tokens many times a second; a pause of 20 s means the
    server stalled with the connection open. (httpx fixes a sync stream's per-read limit
    when its body starts, so sync streams allow the smaller of this and the first-token
    limit between any two chunks; async streams apply each limit exactly.)
    """

    streaming: bool = False
    """Serve ``invoke`` by streaming underneath (LangChain's ``streaming``): the first-token
    and idle limits then apply to it too, and a stalled answer fails in seconds."""

    max_retries: int = 2
    """Retries after the first try for retryable errors (rate limit, timeout, 5xx)."""

    retry_policy: RetryPolicy | None = None
    """Full retry policy; overrides ``max_retries`` when given."""

    model_config = ConfigDict(populate_by_name=True, arbitrary_types_allowed=True, protected_namespaces=())

    def __init__(self, **kwargs: Any) -> None:
        try:
            super().__init__(**kwargs)
        except ValidationError as exc:
            # Surface a missing key as itself, not wrapped in pydantic's report.
            for detail in exc.errors():
                cause = (detail.get("ctx") or {}).get("error")
                if isinstance(cause, (MissingAPIKeyError, ConfigurationError)):
                    raise cause from None
            raise

    @model_validator(mode="before")
    @classmethod
    def _known_arguments_only(cls, values: Any) -> Any:
        return check_arguments(cls, values)

    @model_validator(mode="after")
    def _require_api_key(self) -> Self:
        key = getattr(self, "api_key", None)
        if self.api_key_env and (key is None or not key.get_secret_value()):
            msg = (
                f"No API key for {self.provider_name}: pass api_key=... or set the {self.api_key_env} "
                "environment variable. (A local server that needs no key takes any placeholder string.)"
            )
            raise MissingAPIKeyError(msg, provider=self.provider_name, model=self.model)
        register_model(self)  # from now on its credentials are masked in every output
        return self

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        if name in type(self).model_fields:
            register_model(self)  # a key set after construction is masked too
            if name in self.clients_built_from:
                self._forget_clients()

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        copy = super().model_copy(update=update, deep=deep)
        register_model(copy)  # a key given in update= (validators do not run) is masked too
        if update and not self.clients_built_from.isdisjoint(update):
            copy._forget_clients()
        return copy

    @property
    def lc_secrets(self) -> dict[str, str]:
        env = self.api_key_env or self.secret_env
        return {"api_key": env} if env else {}

    @classmethod
    def is_lc_serializable(cls) -> bool:
        return True

    @classmethod
    def get_lc_namespace(cls) -> list[str]:
        return ["langchain_multigateway", "chat_models", cls.provider_name]

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            yield name, _shown(str(name), value)

    @model_serializer(mode="wrap")
    def _masked_dump(self, handler: SerializerFunctionWrapHandler, info: SerializationInfo) -> Any:
        # model_dump / model_dump_json mask like repr (keys are SecretStr already).
        data = handler(self)
        if isinstance(data, dict):
            return {name: _shown(name, value) for name, value in data.items()}
        return data

    def to_json(self) -> Any:
        """LangChain serialization, without credential headers or query values (keys are never
        serialized) and with URL userinfo masked."""
        data = super().to_json()
        kwargs = data.get("kwargs") if isinstance(data, dict) else None
        if isinstance(kwargs, dict):
            for name, secret in (("default_headers", is_secret_header), ("default_query", is_secret_query)):
                if isinstance(kwargs.get(name), dict):
                    kwargs[name] = {k: v for k, v in kwargs[name].items() if not secret(k)}
            for name, value in kwargs.items():
                if isinstance(value, (str, dict)):
                    kwargs[name] = redact_value(value)
        return data

    def _resolve_model_profile(self) -> ModelProfile | None:
        return profile_for(self.provider_name, self.model)

    # ------------------------------------------------------------------ identity
    @property
    def _llm_type(self) -> str:
        return f"multigateway-{self.provider_name}"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model": self.model, "provider": self.provider_name, "temperature": self.temperature}

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        return langsmith_params(
            self.provider_name,
            self.model,
            temperature=self.temperature,
            max_tokens=self.max_tokens,
            stop=stop or self.stop,
            call_kwargs=kwargs,
        )

    # ------------------------------------------------------------------ retries
    @property
    def effective_retry_policy(self) -> RetryPolicy:
        """The retry policy in force (``retry_policy`` or one built from ``max_retries``)."""
        return self.retry_policy or RetryPolicy(max_attempts=self.max_retries + 1)

    def _single_attempt(self) -> bool:
        # One attempt needs no retry machinery (deployments inside a router run like this).
        return self.retry_policy.max_attempts == 1 if self.retry_policy else self.max_retries == 0

    def _with_retry(self, fn: Callable[[], T]) -> T:
        return fn() if self._single_attempt() else self.effective_retry_policy.call(fn)

    async def _awith_retry(self, fn: Callable[[], Awaitable[T]]) -> T:
        return await fn() if self._single_attempt() else await self.effective_retry_policy.acall(fn)

    def _stream_with_retry(self, open_stream: Callable[[], Iterator[T]]) -> Iterator[T]:
        """Retry opening a stream until its first item; after that, never (no repeated text)."""

        def first() -> tuple[Iterator[T], list[T]]:
            iterator = open_stream()
            for item in iterator:
                return iterator, [item]
            return iterator, []

        iterator, head = self._with_retry(first)
        yield from head
        yield from iterator

    async def _astream_with_retry(self, open_stream: Callable[[], AsyncIterator[T]]) -> AsyncIterator[T]:
        """Async twin of :meth:`_stream_with_retry`."""

        async def first() -> tuple[AsyncIterator[T], list[T]]:
            iterator = open_stream()
            try:
                return iterator, [await iterator.__anext__()]
            except StopAsyncIteration:
                return iterator, []

        iterator, head = await self._awith_retry(first)
        for item in head:
            yield item
        async for item in iterator:
            yield item

    # ------------------------------------------------------------------ error context
    def _endpoint(self) -> str | None:
        """The API root requests go to, for error messages (never holds a key)."""
        return None

    def _locate(self, error: GatewayError) -> GatewayError:
        """Add where the request went to errors about reaching it, so a wrong URL is obvious."""
        where = self._endpoint()
        if not where or not isinstance(error, _LOCATED_ERRORS) or where in error.message:
            return error
        extra = f"server {where}"
        if isinstance(error, ModelNotFoundGatewayError):
            extra += "; check the model name and the base URL"
        error.message = f"{error.message} [{extra}]"
        error.args = (error.message,)
        return error

    # ------------------------------------------------------------------ health
    def _probe(self) -> None:
        """Raise if the provider is not serving; subclasses call a cheap endpoint."""
        raise NotImplementedError

    async def _aprobe(self) -> None:
        raise NotImplementedError

    def health_check(self) -> HealthStatus:
        """Ask the provider's models endpoint whether it serves; never raises."""
        start = time.perf_counter()
        try:
            self._probe()
        except Exception as exc:
            return self._health(start, exc)
        return self._health(start, None)

    async def ahealth_check(self) -> HealthStatus:
        """Async twin of :meth:`health_check`; never raises."""
        start = time.perf_counter()
        try:
            await self._aprobe()
        except Exception as exc:
            return self._health(start, exc)
        return self._health(start, None)

    def _health(self, start: float, error: BaseException | None) -> HealthStatus:
        return health_status(self.provider_name, self.model, start, error)

    # ------------------------------------------------------------------ metadata
    def _response_metadata(self, model_name: str | None, **extra: Any) -> dict[str, Any]:
        meta: dict[str, Any] = {"model_name": model_name or self.model, "model_provider": self.provider_name}
        meta.update({k: v for k, v in extra.items() if v is not None})
        return meta

    # ------------------------------------------------------------------ capabilities
    structured_output_methods: ClassVar[tuple[StructuredOutputMethod, ...]] = (
        "json_schema",
        "function_calling",
        "json_mode",
    )
    """The ``with_structured_output`` methods this provider serves natively."""

    supports_tool_choice: ClassVar[bool] = True
    """Whether a call can force a tool (``tool_choice="any"`` or a tool's name)."""

    @property
    def capabilities(self) -> ProviderCapabilities:
        """What this model can be asked for (structured-output methods, forced tool choice)."""
        return ProviderCapabilities(self.structured_output_methods, self.supports_tool_choice)

    def forced_tool_choice(self, tool_name: str) -> Any:
        """The ``tool_choice`` that forces the one bound tool ``tool_name``."""
        return tool_name

    def structured_output_request(
        self, method: StructuredOutputMethod, json_schema: dict[str, Any] | None = None, *, strict: bool | None = None
    ) -> dict[str, Any]:
        """Call kwargs asking for JSON that follows ``json_schema`` (``"json_schema"``) or any object."""
        return response_format_request(method, json_schema, strict=strict)

    def with_structured_output(
        self,
        schema: dict[str, Any] | type | None = None,
        *,
        method: StructuredOutputMethod = "json_schema",
        include_raw: bool = False,
        strict: bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, dict[str, Any] | BaseModel]:
        """A runnable that returns ``schema``-shaped output.

        Args:
            schema: A pydantic class, a TypedDict, or a JSON-schema / OpenAI-tool dict.
                ``None`` only with ``method="json_mode"``.
            method: ``"json_schema"`` (the provider's native schema-constrained JSON,
                the default), ``"function_calling"`` (a forced tool call) or
                ``"json_mode"`` (any JSON object; say the shape in the prompt).
            include_raw: Return ``{"raw", "parsed", "parsing_error"}`` instead of
                raising when parsing fails.
            strict: Ask the provider for strict schema adherence, where supported.
        """
        if kwargs:
            msg = f"Unexpected keyword arguments to with_structured_output: {sorted(kwargs)}"
            raise ValueError(msg)
        return structured_runnable(self, schema, method=method, include_raw=include_raw, strict=strict)

    # ------------------------------------------------------------------ tokens
    token_encoding: ClassVar[str | None] = "cl100k_base"
    """tiktoken encoding for counting; None counts by the model's name (OpenAI models)."""

    def get_num_tokens(self, text: str) -> int:
        """Tokens in ``text`` by tiktoken, offline (an approximation for non-OpenAI models)."""
        return count_text_tokens(text, self.token_encoding or self.model)

    def get_num_tokens_from_messages(self, messages: list[BaseMessage], tools: Sequence[Any] | None = None) -> int:
        """Prompt tokens, counted offline with tiktoken (see ``langchain_multigateway.tokens``).

        Exact for OpenAI models; for others an approximation (their tokenizers are not
        bundled: ``cl100k_base`` plus OpenAI's chat framing, typically within 10-20 %
        of the provider's count), good for budgeting. ``usage_metadata`` has the exact count.
        """
        encoding = self.token_encoding or self.model
        total = count_message_tokens(messages_to_openai(messages), encoding)
        if tools:
            schema = json.dumps(tools_to_openai(tools))
            total += count_message_tokens([{"role": "system", "content": schema}], encoding) - 6
        return total

    # ------------------------------------------------------------------ time limits
    def _time_limits(self, *, stream: bool) -> TimeLimits:
        """This model's limits for one request (``first_token_timeout=None`` resolved)."""
        first = self.first_token_timeout
        if first is None:
            first = default_first_token(stream=stream, reasoning=bool((self.profile or {}).get("reasoning_output")))
        return TimeLimits(self.connect_timeout, first, self.stream_idle_timeout if stream else None, self.timeout)

    def _clock(self, payload: Mapping[str, Any], *, stream: bool, deadline: float | None) -> CallClock:
        limits = self._time_limits(stream=stream)
        if deadline is not None:
            limits = limits.capped(deadline - time.monotonic())
        model = str(payload.get("model") or self.model)
        clock = CallClock(limits, stream=stream, server=self._endpoint(), provider=self.provider_name, model=model)
        if limits.total is not None and limits.total <= 0:
            raise clock.error(TOTAL)
        return clock

    # ------------------------------------------------------------------ the call template
    # Every provider runs invoke / stream / ainvoke / astream through these four methods.
    # A provider supplies the request builder, the transport (send and send_stream,
    # sync and async), the response parser and a stream assembler; one signature each.
    def _build_request(
        self, messages: Sequence[BaseMessage], stop: list[str] | None, *, stream: bool, **kwargs: Any
    ) -> dict[str, Any]:
        """The request body (with a ``"model"`` key) for ``messages`` and this call's kwargs."""
        raise NotImplementedError

    def _send(self, exchange: Exchange) -> Any:
        """Send a non-streamed request; return the decoded answer (set ``exchange.request_id``)."""
        raise NotImplementedError

    async def _asend(self, exchange: Exchange) -> Any:
        raise NotImplementedError

    def _send_stream(self, exchange: Exchange) -> AbstractContextManager[Iterator[Any]]:
        """Open a streamed request: a context whose value iterates the stream's events."""
        raise NotImplementedError

    def _asend_stream(self, exchange: Exchange) -> AbstractAsyncContextManager[AsyncIterator[Any]]:
        raise NotImplementedError

    def _parse_response(self, data: Any, exchange: Exchange) -> ChatResult:
        """The decoded non-streamed answer as a ChatResult."""
        raise NotImplementedError

    def _stream_assembler(self, exchange: Exchange) -> StreamAssembler:
        """A fresh assembler turning this stream's events into chunks."""
        raise NotImplementedError

    def _translate(self, exc: BaseException, model: str | None = None) -> GatewayError:
        """Map a transport / SDK exception onto the gateway hierarchy (providers refine this)."""
        return ProviderError(f"{type(exc).__name__}: {exc}", provider=self.provider_name, model=model, retryable=False)

    def _failure(self, exc: BaseException, exchange: Exchange) -> GatewayError:
        """The gateway error for ``exc`` raised during ``exchange``, located at its server."""
        if isinstance(exc, GatewayError):
            error = exc
        elif isinstance(exc, TimeoutError):  # an asyncio.timeout scope of ours expired
            error = exchange.clock.error(exchange.waiting_for)
        elif is_transport_timeout(exc):
            limit = exchange.waiting_for
            if limit == IDLE and not exchange.clock.content_seen:
                limit = FIRST_TOKEN  # a sync stream's body read timed out before any content
            error = exchange.clock.classify(exc, limit)
        elif isinstance(exc, UnicodeEncodeError) and not exchange.answered:
            # The prompt, not the server: a lone surrogate cannot be sent as UTF-8 (no retry helps).
            bad = exc.object[exc.start : exc.end]
            msg = f"the request holds text that is not valid Unicode ({bad!r}): decode input with errors='replace'"
            error = InvalidRequestError(msg, provider=self.provider_name, model=exchange.model, retryable=False)
        elif exchange.answered and isinstance(exc, MALFORMED):
            # The server answered, but not in the shape its API documents.
            what = "malformed JSON" if isinstance(exc, json.JSONDecodeError) else "a malformed answer"
            msg = f"{what} from the server: {type(exc).__name__}: {str(exc)[:300]}"
            error = ProviderError(msg, provider=self.provider_name, model=exchange.model, retryable=True)
        elif (redirect := redirect_failure(exc)) is not None:
            # Before the SDK's reading: the openai SDK calls a refused redirect a connection error.
            error = ProviderError(
                redirect[0], provider=self.provider_name, model=exchange.model, status_code=redirect[1], retryable=False
            )
        else:
            error = self._translate(exc, exchange.model)
        if exchange.withheld_from and error.status_code is not None:
            error.message = (
                f"{error.message} [answered by {exchange.withheld_from[-1]} after a redirect; credential headers "
                "go to the base URL's origin only: if the provider moved there, set the base URL to it]"
            )
        exchange.stamp_error(error, exc)  # a 429's headers say when its budget resets
        return self._locate(error)

    def _deadline(self, kwargs: dict[str, Any]) -> float | None:
        """The call's deadline from a ``timeout=`` call kwarg (seconds), popped from ``kwargs``."""
        seconds = kwargs.pop("timeout", None)
        return None if seconds is None else time.monotonic() + float(seconds)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        deadline = self._deadline(kwargs)
        payload = self._build_request(messages, stop, stream=False, **kwargs)

        def attempt() -> ChatResult:
            exchange = Exchange(payload, self._clock(payload, stream=False, deadline=deadline))
            try:
                data = self._send(exchange)
                exchange.answered = True
                return exchange.stamped(self._parse_response(data, exchange))
            except Exception as exc:
                raise_as(self._failure(exc, exchange), exc)

        return self._with_retry(attempt)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        deadline = self._deadline(kwargs)
        payload = self._build_request(messages, stop, stream=False, **kwargs)

        async def attempt() -> ChatResult:
            exchange = Exchange(payload, self._clock(payload, stream=False, deadline=deadline))
            try:
                data = await self._asend(exchange)
                exchange.answered = True
                return exchange.stamped(self._parse_response(data, exchange))
            except Exception as exc:
                raise_as(self._failure(exc, exchange), exc)

        return await self._awith_retry(attempt)

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        deadline = self._deadline(kwargs)
        payload = self._build_request(messages, stop, stream=True, **kwargs)

        def open_stream() -> Iterator[ChatGenerationChunk]:
            run = StreamRun(self, Exchange(payload, self._clock(payload, stream=True, deadline=deadline)))
            try:
                with self._send_stream(run.exchange) as events:
                    for event in events:
                        for chunk in run.feed(event):
                            if run_manager and chunk.text:
                                run_manager.on_llm_new_token(chunk.text, chunk=chunk)
                            yield chunk
                        if run.complete:
                            break
                        run.check_overdue()  # sync reads cannot be cut mid-wait by the first-token deadline
            except Exception as exc:
                run.failed(self._failure(exc, run.exchange), exc)
            yield run.finish()

        yield from self._stream_with_retry(open_stream)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        deadline = self._deadline(kwargs)
        payload = self._build_request(messages, stop, stream=True, **kwargs)

        async def open_stream() -> AsyncIterator[ChatGenerationChunk]:
            run = StreamRun(self, Exchange(payload, self._clock(payload, stream=True, deadline=deadline)))
            try:
                async with self._asend_stream(run.exchange) as events:
                    while not run.complete:
                        wait, run.exchange.waiting_for = run.exchange.clock.next_wait()
                        try:
                            async with _read_within(wait):  # first token, stream silence, whole request
                                event = await anext(events)
                        except StopAsyncIteration:
                            break
                        for chunk in run.feed(event):
                            if run_manager and chunk.text:
                                await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
                            yield chunk
                    if run.complete:
                        await _drain(events, run.exchange.clock.next_wait()[0])
            except Exception as exc:
                run.failed(self._failure(exc, run.exchange), exc)
            yield run.finish()

        async for chunk in self._astream_with_retry(open_stream):
            yield chunk
