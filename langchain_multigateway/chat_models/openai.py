"""OpenAIChatModel: the openai SDK, for OpenAI and any OpenAI-compatible server."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.tool import tool_call_chunk
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.utils import from_env, secret_from_env
from pydantic import Field, PrivateAttr, SecretStr

from langchain_multigateway.chat_models._base import GatewayChatModel
from langchain_multigateway.chat_models._openai_format import (
    ToolChoice,
    messages_to_openai,
    parse_tool_calls,
    tool_choice_to_openai,
    tools_to_openai,
    usage_from_openai,
)
from langchain_multigateway.errors import (
    GatewayConnectionError,
    GatewayError,
    GatewayTimeoutError,
    ProviderError,
    error_from_status,
)
from langchain_multigateway.tokens import count_message_tokens

if TYPE_CHECKING:
    import openai

__all__ = ["OpenAIChatModel"]

# Non-streamed calls go through the SDK client's own ``post`` (auth, base URL, headers,
# timeouts and typed HTTP errors as usual) with the body we built and the raw response
# back: the SDK's per-request TypedDict transform and typed response objects cost more
# CPU than the rest of a call, and the gateway needs plain dicts anyway.
_CHAT_PATH = "/chat/completions"


def _raw_response_type() -> Any:
    import httpx2

    return httpx2.Response


class OpenAIChatModel(GatewayChatModel):
    """OpenAI chat models, and any server that speaks OpenAI's chat API.

    Setup:
        Install ``langchain-multigateway`` and set ``OPENAI_API_KEY``:

        .. code-block:: bash

            pip install langchain-multigateway
            export OPENAI_API_KEY="sk-..."

        For an OpenAI-compatible server (llama.cpp, vLLM, LM Studio, Azure-style
        gateways) pass ``base_url`` (or set ``OPENAI_BASE_URL``); a server that
        needs no key takes any placeholder ``api_key``.

    Key init args — completion params:
        model: str
            Model name, e.g. ``"gpt-4o-mini"`` (alias ``model_name``).
        temperature: float | None
            Sampling temperature.
        max_tokens: int | None
            Cap on generated tokens.
        stop: list[str] | None
            Default stop sequences.
        seed, top_p, frequency_penalty, presence_penalty: optional sampling params.
        model_kwargs: dict
            Any other request field, sent as is.
        stream_usage: bool
            Ask for token usage in the last streamed chunk (default True).

    Key init args — client params:
        api_key: SecretStr | None
            Read from ``OPENAI_API_KEY`` when not given.
        base_url: str | None
            API root, e.g. ``http://127.0.0.1:8088/v1``; ``OPENAI_BASE_URL`` by default.
        organization: str | None
            ``OPENAI_ORG_ID`` by default.
        default_headers: dict | None
            Headers added to every request.
        timeout: float | None
            Seconds per HTTP request (alias ``request_timeout``).
        max_retries: int
            Retries of retryable failures under the gateway's one retry policy
            (the SDK's own retries are off).

    Instantiate:
        .. code-block:: python

            from langchain_multigateway import OpenAIChatModel

            llm = OpenAIChatModel(model="gpt-4o-mini", temperature=0)
            local = OpenAIChatModel(model="gemma", base_url="http://127.0.0.1:8088/v1", api_key="none")

    Invoke:
        .. code-block:: python

            llm.invoke([("system", "Answer in French."), ("human", "I love programming.")])
            # AIMessage(content="J'adore la programmation.", response_metadata={"model_name": ..., ...})

    Stream:
        .. code-block:: python

            for chunk in llm.stream("Tell me a joke"):
                print(chunk.content, end="")
            # the last chunk carries usage_metadata and chunk_position="last"

    Async:
        .. code-block:: python

            await llm.ainvoke("Hello")
            async for chunk in llm.astream("Hello"):
                ...
            await llm.abatch(["Hello", "Bonjour"])

    Tool calling:
        .. code-block:: python

            from pydantic import BaseModel, Field

            class GetWeather(BaseModel):
                '''Get the current weather in a given location.'''
                location: str = Field(..., description="City, e.g. Paris")

            llm_with_tools = llm.bind_tools([GetWeather], tool_choice="auto", parallel_tool_calls=False)
            llm_with_tools.invoke("What's the weather in Paris?").tool_calls
            # [{"name": "GetWeather", "args": {"location": "Paris"}, "id": "call_...", "type": "tool_call"}]

    Structured output:
        .. code-block:: python

            class Joke(BaseModel):
                setup: str
                punchline: str

            llm.with_structured_output(Joke).invoke("Tell me a joke about cats")            # json_schema
            llm.with_structured_output(Joke, method="function_calling", include_raw=True)
            llm.with_structured_output(None, method="json_mode")

    Token usage:
        .. code-block:: python

            msg = llm.invoke("Hello")
            msg.usage_metadata
            # {"input_tokens": 9, "output_tokens": 12, "total_tokens": 21,
            #  "input_token_details": {"cache_read": 0}, "output_token_details": {"reasoning": 0}}
            llm.get_num_tokens_from_messages([HumanMessage("Hello")])  # tiktoken, offline-safe

    Response metadata:
        ``model_name``, ``model_provider`` (``"openai"``), ``finish_reason``, ``id``,
        ``system_fingerprint`` when the server sends one.
    """

    provider_name = "openai"
    api_key_env = "OPENAI_API_KEY"

    model: str = Field(default="gpt-4o-mini", alias="model_name")
    api_key: SecretStr | None = Field(
        alias="openai_api_key", default_factory=secret_from_env("OPENAI_API_KEY", default=None)
    )
    base_url: str | None = Field(alias="openai_api_base", default_factory=from_env("OPENAI_BASE_URL", default=None))
    organization: str | None = Field(
        alias="openai_organization", default_factory=from_env("OPENAI_ORG_ID", default=None)
    )
    default_headers: dict[str, str] | None = None
    default_query: dict[str, object] | None = None
    top_p: float | None = None
    seed: int | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    stream_usage: bool = True
    parallel_tool_calls: bool | None = None
    """Default for requests that carry tools (``bind_tools`` may override it)."""
    model_kwargs: dict[str, Any] = Field(default_factory=dict)
    http_client: Any | None = Field(default=None, exclude=True)
    """An ``httpx2.Client`` for the sync SDK client (proxies, custom transports, replay)."""
    http_async_client: Any | None = Field(default=None, exclude=True)
    """An ``httpx2.AsyncClient`` for the async SDK client."""

    _client: openai.OpenAI | None = PrivateAttr(default=None)
    _async_client: openai.AsyncOpenAI | None = PrivateAttr(default=None)

    # ------------------------------------------------------------------ clients
    def _client_kwargs(self) -> dict[str, Any]:
        assert self.api_key is not None  # checked at construction
        return {
            "api_key": self.api_key.get_secret_value(),
            "base_url": self.base_url,
            "organization": self.organization,
            "default_headers": self.default_headers,
            "default_query": self.default_query,
            "timeout": self.timeout,
            "max_retries": 0,  # one retry policy rules: ours
        }

    @property
    def client(self) -> openai.OpenAI:
        """The sync openai client (created on first use)."""
        if self._client is None:
            import openai

            self._client = openai.OpenAI(**self._client_kwargs(), http_client=self.http_client)
        return self._client

    @property
    def async_client(self) -> openai.AsyncOpenAI:
        """The async openai client (created on first use)."""
        if self._async_client is None:
            import openai

            self._async_client = openai.AsyncOpenAI(**self._client_kwargs(), http_client=self.http_async_client)
        return self._async_client

    # ------------------------------------------------------------------ requests
    def _request(
        self, messages: Sequence[BaseMessage], stop: list[str] | None, *, stream: bool, **kwargs: Any
    ) -> dict[str, Any]:
        params: dict[str, Any] = {
            "model": self.model,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "top_p": self.top_p,
            "seed": self.seed,
            "frequency_penalty": self.frequency_penalty,
            "presence_penalty": self.presence_penalty,
            "stop": stop or self.stop,
            **self.model_kwargs,
        }
        params.update(kwargs)
        params = {k: v for k, v in params.items() if v is not None}
        if self.parallel_tool_calls is not None and params.get("tools"):
            params.setdefault("parallel_tool_calls", self.parallel_tool_calls)
        params["messages"] = messages_to_openai(messages)
        if stream:
            params["stream"] = True
            if self.stream_usage and "stream_options" not in params:
                params["stream_options"] = {"include_usage": True}
        return params

    def _translate(self, exc: Exception, model: str | None = None) -> GatewayError:
        return self._locate(translate_openai_error(exc, provider=self.provider_name, model=model or self.model))

    def _endpoint(self) -> str | None:
        return self.base_url or "https://api.openai.com/v1"

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        params = self._request(messages, stop, stream=False, **kwargs)

        def call() -> ChatResult:
            try:
                raw = self.client.post(_CHAT_PATH, cast_to=_raw_response_type(), body=params)
                return self._result(json.loads(raw.content), raw.headers.get("x-request-id"))
            except GatewayError:
                raise
            except Exception as exc:
                raise self._translate(exc, params["model"]) from exc

        return self._with_retry(call)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        params = self._request(messages, stop, stream=False, **kwargs)

        async def call() -> ChatResult:
            try:
                raw = await self.async_client.post(_CHAT_PATH, cast_to=_raw_response_type(), body=params)
                return self._result(json.loads(raw.content), raw.headers.get("x-request-id"))
            except GatewayError:
                raise
            except Exception as exc:
                raise self._translate(exc, params["model"]) from exc

        return await self._awith_retry(call)

    def _result(self, data: Any, request_id: str | None = None) -> ChatResult:
        if not isinstance(data, Mapping):
            msg = f"expected a JSON object from the server, got {type(data).__name__}"
            raise ProviderError(msg, provider=self.provider_name, model=self.model, request_id=request_id)
        if data.get("error"):
            raise ProviderError(str(data["error"]), provider=self.provider_name, model=self.model)
        choices = data.get("choices") or []
        if not choices:
            msg = "The server answered with no choices"
            raise ProviderError(msg, provider=self.provider_name, model=data.get("model") or self.model)
        choice = choices[0]
        message = choice.get("message") or {}
        tool_calls, invalid = parse_tool_calls(message.get("tool_calls"))
        additional: dict[str, Any] = {}
        if message.get("refusal"):
            additional["refusal"] = message["refusal"]
        reasoning = message.get("reasoning_content")
        if reasoning:
            additional["reasoning_content"] = reasoning
        ai = AIMessage(
            content=message.get("content") or "",
            tool_calls=tool_calls,
            invalid_tool_calls=invalid,
            additional_kwargs=additional,
            usage_metadata=usage_from_openai(data.get("usage")),
            response_metadata=self._response_metadata(
                data.get("model"),
                finish_reason=choice.get("finish_reason"),
                id=data.get("id"),
                system_fingerprint=data.get("system_fingerprint"),
                service_tier=data.get("service_tier"),
                request_id=request_id,
            ),
            id=data.get("id"),
        )
        return ChatResult(generations=[ChatGeneration(message=ai)], llm_output={"model_name": data.get("model")})

    # ------------------------------------------------------------------ streaming
    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        params = self._request(messages, stop, stream=True, **kwargs)

        def open_stream() -> Iterator[ChatGenerationChunk]:
            try:
                with self.client.chat.completions.with_streaming_response.create(**params) as response:
                    assembler = _StreamAssembler(self, response.request_id)
                    for line in response.iter_lines():
                        for chunk in assembler.feed_line(line):
                            if run_manager and chunk.text:
                                run_manager.on_llm_new_token(chunk.text, chunk=chunk)
                            yield chunk
                yield assembler.finish()
            except GatewayError:
                raise
            except Exception as exc:
                raise self._translate(exc, params["model"]) from exc

        yield from self._stream_with_retry(open_stream)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        params = self._request(messages, stop, stream=True, **kwargs)

        async def open_stream() -> AsyncIterator[ChatGenerationChunk]:
            try:
                async with self.async_client.chat.completions.with_streaming_response.create(**params) as response:
                    assembler = _StreamAssembler(self, response.request_id)
                    async for line in response.iter_lines():
                        for chunk in assembler.feed_line(line):
                            if run_manager and chunk.text:
                                await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
                            yield chunk
                yield assembler.finish()
            except GatewayError:
                raise
            except Exception as exc:
                raise self._translate(exc, params["model"]) from exc

        async for chunk in self._astream_with_retry(open_stream):
            yield chunk

    # ------------------------------------------------------------------ tools
    def bind_tools(
        self,
        tools: Sequence[Any],
        *,
        tool_choice: ToolChoice = None,
        strict: bool | None = None,
        parallel_tool_calls: bool | None = None,
        **kwargs: Any,
    ) -> Runnable[Any, AIMessage]:
        """Bind tools (BaseTool, pydantic classes, functions or OpenAI dicts).

        Args:
            tools: The tools the model may call.
            tool_choice: ``"auto"``, ``"none"``, ``"required"`` / ``"any"``, a tool's
                name, ``True`` (the single tool), or an OpenAI tool_choice dict.
            strict: Ask for strict schema adherence of the arguments.
            parallel_tool_calls: Allow several calls in one turn.
        """
        formatted = tools_to_openai(tools, strict=strict)
        names = [t["function"]["name"] for t in formatted]
        choice = tool_choice_to_openai(tool_choice, names)
        if choice is not None:
            kwargs["tool_choice"] = choice
        if parallel_tool_calls is not None:
            kwargs["parallel_tool_calls"] = parallel_tool_calls
        return super().bind(tools=formatted, **kwargs)

    # ------------------------------------------------------------------ tokens & health
    def get_num_tokens_from_messages(self, messages: list[BaseMessage], tools: Sequence[Any] | None = None) -> int:
        """Prompt tokens by tiktoken (offline; see ``langchain_multigateway.tokens``)."""
        total = count_message_tokens(messages_to_openai(messages), self.model)
        if tools:
            schema = json.dumps(tools_to_openai(tools))
            total += count_message_tokens([{"role": "system", "content": schema}], self.model) - 6
        return total

    def _probe(self) -> None:
        try:
            self.client.models.list()
        except Exception as exc:
            raise self._translate(exc) from exc

    async def _aprobe(self) -> None:
        try:
            await self.async_client.models.list()
        except Exception as exc:
            raise self._translate(exc) from exc


class _StreamAssembler:
    """Turns OpenAI stream events into LangChain chunks.

    Content and tool-call fragments go out as they arrive; one closing chunk
    carries the usage, the model name and the finish reason, so that exactly
    one chunk holds each (LangChain's streaming rules).
    """

    def __init__(self, owner: GatewayChatModel, request_id: str | None = None) -> None:
        self.owner = owner
        self.request_id = request_id
        self.done = False
        self.model_name: str | None = None
        self.finish_reason: str | None = None
        self.response_id: str | None = None
        self.system_fingerprint: str | None = None
        self.usage: dict[str, Any] | None = None

    def feed_line(self, line: str) -> Iterator[ChatGenerationChunk]:
        """One line of the SSE body: ``data: {...}`` events, ``[DONE]``, comments and blanks."""
        if self.done or not line.startswith("data:"):
            return iter(())
        data = line[5:].strip()
        if data == "[DONE]":
            self.done = True
            return iter(())
        return self.feed(json.loads(data))

    def feed(self, event: Mapping[str, Any]) -> Iterator[ChatGenerationChunk]:
        if event.get("error"):
            raise ProviderError(
                f"stream error: {event['error']}", provider=self.owner.provider_name, model=self.owner.model
            )
        self.model_name = event.get("model") or self.model_name
        self.response_id = event.get("id") or self.response_id
        self.system_fingerprint = event.get("system_fingerprint") or self.system_fingerprint
        if event.get("usage"):
            self.usage = dict(event["usage"])
        for choice in event.get("choices") or []:
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
            delta = choice.get("delta") or {}
            content = delta.get("content") or ""
            chunks = [
                tool_call_chunk(
                    name=(call.get("function") or {}).get("name"),
                    args=(call.get("function") or {}).get("arguments"),
                    id=call.get("id"),
                    index=call.get("index"),
                )
                for call in delta.get("tool_calls") or []
            ]
            additional = {}
            if delta.get("reasoning_content"):
                additional["reasoning_content"] = delta["reasoning_content"]
            if content or chunks or additional:
                yield ChatGenerationChunk(
                    message=AIMessageChunk(
                        content=content, tool_call_chunks=chunks, additional_kwargs=additional, id=self.response_id
                    )
                )

    def finish(self) -> ChatGenerationChunk:
        meta = self.owner._response_metadata(
            self.model_name,
            finish_reason=self.finish_reason,
            id=self.response_id,
            system_fingerprint=self.system_fingerprint,
            request_id=self.request_id,
        )
        return ChatGenerationChunk(
            message=AIMessageChunk(
                content="",
                usage_metadata=usage_from_openai(self.usage),
                response_metadata=meta,
                id=self.response_id,
                chunk_position="last",
            ),
            generation_info={"finish_reason": self.finish_reason},
        )


def translate_openai_error(exc: Exception, *, provider: str, model: str | None) -> GatewayError:
    """Map an openai (or mistralai-like) SDK exception onto the gateway hierarchy."""
    import openai

    if isinstance(exc, GatewayError):
        return exc
    if isinstance(exc, openai.APITimeoutError):
        return GatewayTimeoutError(f"request timed out: {exc}", provider=provider, model=model)
    if isinstance(exc, openai.APIConnectionError):
        return GatewayConnectionError(f"could not reach the server: {exc}", provider=provider, model=model)
    if isinstance(exc, openai.APIStatusError):
        return error_from_status(
            exc.status_code,
            _error_message(exc.body) or exc.message,
            provider=provider,
            model=model,
            request_id=exc.request_id,
            headers=dict(exc.response.headers),
            body=exc.body,
        )
    if isinstance(exc, (openai.APIResponseValidationError, json.JSONDecodeError, ValueError)):
        return ProviderError(f"malformed response from the server: {exc}", provider=provider, model=model)
    return ProviderError(f"{type(exc).__name__}: {exc}", provider=provider, model=model, retryable=False)


def _error_message(body: object) -> str | None:
    if isinstance(body, Mapping):
        inner = body.get("error", body)
        if isinstance(inner, Mapping) and isinstance(inner.get("message"), str):
            return str(inner["message"])
        if isinstance(body.get("message"), str):
            return str(body["message"])
        if isinstance(inner, str):
            return inner
    if isinstance(body, str):
        return body
    return None
