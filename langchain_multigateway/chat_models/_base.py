"""Plumbing every provider chat model shares: identity, retries, health, structured output."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from operator import itemgetter
from typing import Any, ClassVar, Literal, TypeVar

from langchain_core.language_models import BaseChatModel, LangSmithParams, LanguageModelInput, ModelProfile
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.output_parsers import JsonOutputKeyToolsParser, JsonOutputParser, PydanticOutputParser
from langchain_core.output_parsers.base import OutputParserLike
from langchain_core.output_parsers.openai_tools import PydanticToolsParser
from langchain_core.outputs import ChatGenerationChunk
from langchain_core.runnables import Runnable, RunnableMap, RunnablePassthrough
from langchain_core.utils.function_calling import convert_to_json_schema, convert_to_openai_tool
from langchain_core.utils.pydantic import is_basemodel_subclass
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
from typing_extensions import Self

from langchain_multigateway._ls_params import langsmith_params
from langchain_multigateway._redact import MASK, is_secret_header, is_secret_query, redact, register_model
from langchain_multigateway._retry import RetryPolicy
from langchain_multigateway.chat_models._profiles import profile_for
from langchain_multigateway.errors import (
    GatewayConnectionError,
    GatewayError,
    GatewayTimeoutError,
    MissingAPIKeyError,
    ModelNotFoundGatewayError,
)
from langchain_multigateway.tokens import count_text_tokens

__all__ = ["GatewayChatModel", "HealthStatus", "StructuredOutputMethod"]

T = TypeVar("T")
StructuredOutputMethod = Literal["function_calling", "json_schema", "json_mode"]


class HealthStatus(BaseModel):
    """What a health probe found: never raised, always returned."""

    model_config = ConfigDict(frozen=True)

    ok: bool
    latency_ms: float
    error: str | None = None
    provider: str | None = None
    model: str | None = None


_LOCATED_ERRORS = (GatewayConnectionError, GatewayTimeoutError, ModelNotFoundGatewayError)


def _shown(name: str, value: Any) -> Any:
    """A field's value as repr, model_dump and dumps show it: credentials masked."""
    if isinstance(value, str):
        return redact(value)  # URL userinfo, ?api-key=..., any registered key
    if isinstance(value, dict) and name in ("default_headers", "default_query"):
        secret = is_secret_header if name == "default_headers" else is_secret_query
        return {k: MASK if secret(k) else v for k, v in value.items()}
    return value


class GatewayChatModel(BaseChatModel):
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

    timeout: float | None = Field(default=60.0, alias="request_timeout")
    """Seconds before one HTTP request times out."""

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
                if isinstance(cause, MissingAPIKeyError):
                    raise cause from None
            raise

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
                if isinstance(value, str):
                    kwargs[name] = redact(value)
        return data

    def get_num_tokens(self, text: str) -> int:
        """Tokens in ``text`` by tiktoken, offline (an approximation for non-OpenAI models)."""
        return count_text_tokens(text, self.model)

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
        if isinstance(error, GatewayTimeoutError) and self.timeout:
            extra += f", timeout {self.timeout:g} s"
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
        return HealthStatus(
            ok=error is None,
            latency_ms=(time.perf_counter() - start) * 1000,
            error=None if error is None else f"{type(error).__name__}: {error}",
            provider=self.provider_name,
            model=self.model,
        )

    # ------------------------------------------------------------------ metadata
    def _response_metadata(self, model_name: str | None, **extra: Any) -> dict[str, Any]:
        meta: dict[str, Any] = {"model_name": model_name or self.model, "model_provider": self.provider_name}
        meta.update({k: v for k, v in extra.items() if v is not None})
        return meta

    # ------------------------------------------------------------------ structured output
    structured_output_methods: ClassVar[tuple[StructuredOutputMethod, ...]] = (
        "json_schema",
        "function_calling",
        "json_mode",
    )

    def _json_schema_request(self, schema: dict[str, Any], name: str, strict: bool | None) -> dict[str, Any]:
        """Call kwargs asking for JSON that follows ``schema``."""
        spec: dict[str, Any] = {"name": name, "schema": schema}
        if strict is not None:
            spec["strict"] = strict
        return {"response_format": {"type": "json_schema", "json_schema": spec}}

    def _json_mode_request(self) -> dict[str, Any]:
        """Call kwargs asking for any JSON object."""
        return {"response_format": {"type": "json_object"}}

    def _forced_tool_choice(self, tool_name: str) -> Any:
        """tool_choice that forces the one bound tool."""
        return tool_name

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
        if method not in self.structured_output_methods:
            msg = (
                f"{type(self).__name__} does not support method={method!r}; "
                f"choose one of {list(self.structured_output_methods)}"
            )
            raise ValueError(msg)
        if schema is None and method != "json_mode":
            msg = f"schema is required for method={method!r} (only 'json_mode' works without one)"
            raise ValueError(msg)
        is_pydantic = isinstance(schema, type) and is_basemodel_subclass(schema)
        tool_schema: Any = schema
        output_format = {"kwargs": {"method": method, "strict": strict}, "schema": schema}
        llm: Runnable[LanguageModelInput, BaseMessage]
        parser: OutputParserLike[Any]
        if method == "function_calling":
            tool_name = convert_to_openai_tool(tool_schema)["function"]["name"]
            llm = self.bind_tools(
                [tool_schema],
                tool_choice=self._forced_tool_choice(tool_name),
                strict=strict,
                ls_structured_output_format=output_format,
            )
            if is_pydantic:
                parser = PydanticToolsParser(tools=[tool_schema], first_tool_only=True)
            else:
                parser = JsonOutputKeyToolsParser(key_name=tool_name, first_tool_only=True)
        else:
            if method == "json_schema":
                json_schema = convert_to_json_schema(tool_schema)
                name = json_schema.get("title") or "response"
                params = self._json_schema_request(_strip_title(json_schema), str(name), strict)
            else:
                params = self._json_mode_request()
            llm = self.bind(ls_structured_output_format=output_format if schema is not None else None, **params)
            parser = PydanticOutputParser(pydantic_object=tool_schema) if is_pydantic else JsonOutputParser()
        if not include_raw:
            return llm | parser
        parse = RunnablePassthrough.assign(parsed=itemgetter("raw") | parser, parsing_error=lambda _: None)
        fallback = RunnablePassthrough.assign(parsed=lambda _: None)
        with_fallback = parse.with_fallbacks([fallback], exception_key="parsing_error")
        return RunnableMap(raw=llm) | with_fallback


def _strip_title(schema: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in schema.items() if k not in ("title",)}


def ai_message_from_chunk(chunk: ChatGenerationChunk) -> AIMessage:
    """Helper for tests and providers: the message a final chunk stands for."""
    return AIMessage(**chunk.message.model_dump(exclude={"type"}))


def first_tool_names(tools: Sequence[dict[str, Any]]) -> list[str]:
    """Function names of OpenAI-format tools."""
    return [t["function"]["name"] for t in tools if t.get("type") == "function"]
