"""MistralChatModel: the mistralai SDK, for Mistral's API and servers that speak its chat format."""

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
from pydantic import AliasChoices, Field, PrivateAttr, SecretStr, field_validator

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
    InvalidRequestError,
    ProviderError,
    error_from_status,
)
from langchain_multigateway.tokens import count_message_tokens

if TYPE_CHECKING:
    from mistralai.client import Mistral

__all__ = ["MistralChatModel", "translate_mistral_error"]

_REQUEST_ID_HEADERS = ("x-request-id", "request-id", "mistral-correlation-id", "x-kong-request-id")


class MistralChatModel(GatewayChatModel):
    """Mistral AI chat models through the official ``mistralai`` SDK (3.x).

    Setup:
        Install ``langchain-multigateway`` (it pulls in ``mistralai``) and set
        ``MISTRAL_API_KEY``:

        .. code-block:: bash

            pip install langchain-multigateway
            export MISTRAL_API_KEY="..."

        ``server_url`` (or ``MISTRAL_SERVER_URL``) points the SDK at another
        server that speaks Mistral's chat API, such as an OpenAI-compatible one
        (llama.cpp, vLLM). It is the server's root: the SDK appends
        ``/v1/chat/completions`` itself, so a trailing ``/v1`` is dropped.
        A server that needs no key takes any placeholder ``api_key``.

    Key init args — completion params:
        model: str
            Model name, e.g. ``"mistral-small-latest"`` (alias ``model_name``).
        temperature: float | None
            Sampling temperature (Mistral recommends 0.0-0.7).
        max_tokens: int | None
            Cap on generated tokens.
        top_p: float | None
            Nucleus sampling.
        random_seed: int | None
            Seed for deterministic sampling.
        safe_prompt: bool | None
            Ask Mistral to prepend its safety prompt.
        stop: list[str] | None
            Default stop sequences.
        parallel_tool_calls: bool | None
            Default for requests that carry tools (``bind_tools`` may override it).
        model_kwargs: dict
            Other keyword arguments of the SDK's ``chat.complete`` (e.g.
            ``presence_penalty``, ``prompt_mode``), sent as is.

    Key init args — client params:
        api_key: SecretStr | None
            Read from ``MISTRAL_API_KEY`` when not given (alias ``mistral_api_key``).
        server_url: str | None
            API root (aliases ``endpoint``, ``base_url``); ``MISTRAL_SERVER_URL``
            by default, else ``https://api.mistral.ai``.
        default_headers: dict | None
            Headers added to every request.
        timeout: float | None
            Seconds per HTTP request (alias ``request_timeout``).
        max_retries: int
            Retries of retryable failures under the gateway's one retry policy
            (the SDK's own retries are off).

    Instantiate:
        .. code-block:: python

            from langchain_multigateway.chat_models.mistral import MistralChatModel

            llm = MistralChatModel(model="mistral-small-latest", temperature=0)
            local = MistralChatModel(model="gemma", server_url="http://127.0.0.1:8088", api_key="none")

    Invoke:
        .. code-block:: python

            llm.invoke([("system", "Answer in French."), ("human", "I love programming.")])
            # AIMessage(content="J'adore la programmation.", response_metadata={"model_name": ..., ...})

    Stream:
        .. code-block:: python

            for chunk in llm.stream("Tell me a joke"):
                print(chunk.content, end="")
            # the last chunk has chunk_position="last" and carries usage_metadata when the
            # server sends usage in its stream (Mistral's API does; llama.cpp does not
            # without stream_options, which the SDK cannot send: usage_metadata is None there)

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

            llm_with_tools = llm.bind_tools([GetWeather], tool_choice="any", parallel_tool_calls=False)
            llm_with_tools.invoke("What's the weather in Paris?").tool_calls
            # [{"name": "GetWeather", "args": {"location": "Paris"}, "id": "...", "type": "tool_call"}]

        ``tool_choice`` takes ``"auto"``, ``"none"``, ``"any"`` / ``"required"``
        (sent as ``"required"``, which Mistral and OpenAI-compatible servers both
        accept), a tool's name, ``True`` or a ``{"type": "function", ...}`` dict.

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
            # {"input_tokens": 5, "output_tokens": 12, "total_tokens": 17}
            llm.get_num_tokens_from_messages([HumanMessage("Hello")])  # an approximation, see there

    Response metadata:
        ``model_name``, ``model_provider`` (``"mistral"``), ``finish_reason``, ``id``.
    """

    provider_name = "mistral"
    api_key_env = "MISTRAL_API_KEY"

    model: str = Field(default="mistral-small-latest", alias="model_name")
    api_key: SecretStr | None = Field(
        alias="mistral_api_key", default_factory=secret_from_env("MISTRAL_API_KEY", default=None)
    )
    server_url: str | None = Field(
        default_factory=from_env("MISTRAL_SERVER_URL", default=None),
        validation_alias=AliasChoices("server_url", "endpoint", "base_url"),
        validate_default=True,
    )
    default_headers: dict[str, str] | None = None
    top_p: float | None = None
    random_seed: int | None = None
    safe_prompt: bool | None = None
    parallel_tool_calls: bool | None = None
    """Default for requests that carry tools (``bind_tools`` may override it)."""
    model_kwargs: dict[str, Any] = Field(default_factory=dict)

    _client: Mistral | None = PrivateAttr(default=None)

    @field_validator("server_url")
    @classmethod
    def _root_url(cls, value: str | None) -> str | None:
        """The SDK appends ``/v1/...`` itself: keep only the server's root."""
        if not value:
            return None
        value = value.rstrip("/")
        return value[: -len("/v1")] if value.endswith("/v1") else value

    # ------------------------------------------------------------------ client
    @property
    def client(self) -> Mistral:
        """The mistralai client (created on first use; it holds a sync and an async HTTP client)."""
        if self._client is None:
            from mistralai.client import Mistral
            from mistralai.client.utils.retries import BackoffStrategy, RetryConfig

            assert self.api_key is not None  # checked at construction
            self._client = Mistral(
                api_key=self.api_key.get_secret_value(),
                server_url=self.server_url,
                timeout_ms=None if self.timeout is None else int(self.timeout * 1000),
                # One retry policy rules: ours. "none" switches the SDK's loop off.
                retry_config=RetryConfig("none", BackoffStrategy(0, 0, 1.0, 0), retry_connection_errors=False),
            )
        return self._client

    # ------------------------------------------------------------------ requests
    def _request(self, messages: Sequence[BaseMessage], stop: list[str] | None, **kwargs: Any) -> dict[str, Any]:
        params: dict[str, Any] = {
            "model": self.model,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "top_p": self.top_p,
            "random_seed": self.random_seed,
            "safe_prompt": self.safe_prompt,
            "stop": stop or self.stop,
            "http_headers": self.default_headers,
            **self.model_kwargs,
        }
        params.update(kwargs)
        # LangChain spellings of the same fields.
        if "seed" in params:
            params["random_seed"] = params.pop("seed")
        params.pop("stream", None)
        params = {k: v for k, v in params.items() if v is not None}
        if self.parallel_tool_calls is not None and params.get("tools"):
            params.setdefault("parallel_tool_calls", self.parallel_tool_calls)
        params["messages"] = _messages_to_mistral(messages)
        return params

    def _translate(self, exc: Exception, model: str | None = None) -> GatewayError:
        return translate_mistral_error(exc, provider=self.provider_name, model=model or self.model)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        params = self._request(messages, stop, **kwargs)

        def call() -> Any:
            try:
                return self.client.chat.complete(**params)
            except Exception as exc:
                raise self._translate(exc, params["model"]) from exc

        return self._result(self._with_retry(call))

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        params = self._request(messages, stop, **kwargs)

        async def call() -> Any:
            try:
                return await self.client.chat.complete_async(**params)
            except Exception as exc:
                raise self._translate(exc, params["model"]) from exc

        return self._result(await self._awith_retry(call))

    def _result(self, response: Any) -> ChatResult:
        data: Mapping[str, Any] = response if isinstance(response, Mapping) else response.model_dump(by_alias=True)
        choices = data.get("choices") or []
        if not choices:
            msg = "The server answered with no choices"
            raise ProviderError(msg, provider=self.provider_name, model=data.get("model") or self.model)
        choice = choices[0]
        message = choice.get("message") or {}
        text, reasoning = _split_content(message.get("content"))
        tool_calls, invalid = parse_tool_calls(_known_ids(message.get("tool_calls")))
        additional: dict[str, Any] = {}
        if reasoning:
            additional["reasoning_content"] = reasoning
        ai = AIMessage(
            content=text,
            tool_calls=tool_calls,
            invalid_tool_calls=invalid,
            additional_kwargs=additional,
            usage_metadata=usage_from_openai(data.get("usage")),
            response_metadata=self._response_metadata(
                data.get("model"), finish_reason=choice.get("finish_reason"), id=data.get("id")
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
        params = self._request(messages, stop, **kwargs)

        def open_stream() -> Iterator[ChatGenerationChunk]:
            from mistralai.client.utils.eventstreaming import EventStream

            try:
                sdk_stream = self.client.chat.stream(**params)
                # The SDK's typed decoder rejects OpenAI-style tool-call fragments (no
                # function name after the first); its own SSE parser with plain JSON
                # decoding reads both those and Mistral's whole tool calls.
                events = EventStream(
                    sdk_stream.response, _decode_event, sentinel="[DONE]", client_ref=sdk_stream.client_ref
                )
                assembler = _StreamAssembler(self)
                with events:
                    for event in events:
                        for chunk in assembler.feed(event):
                            if run_manager and isinstance(chunk.message.content, str) and chunk.message.content:
                                run_manager.on_llm_new_token(chunk.message.content, chunk=chunk)
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
        params = self._request(messages, stop, **kwargs)

        async def open_stream() -> AsyncIterator[ChatGenerationChunk]:
            from mistralai.client.utils.eventstreaming import EventStreamAsync

            try:
                sdk_stream = await self.client.chat.stream_async(**params)
                events = EventStreamAsync(
                    sdk_stream.response, _decode_event, sentinel="[DONE]", client_ref=sdk_stream.client_ref
                )
                assembler = _StreamAssembler(self)
                async with events:
                    async for event in events:
                        for chunk in assembler.feed(event):
                            if run_manager and isinstance(chunk.message.content, str) and chunk.message.content:
                                await run_manager.on_llm_new_token(chunk.message.content, chunk=chunk)
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
        """Bind tools (BaseTool, pydantic classes, functions or OpenAI-format dicts).

        Args:
            tools: The tools the model may call.
            tool_choice: ``"auto"``, ``"none"``, ``"any"`` / ``"required"`` (sent as
                ``"required"``), a tool's name, ``True`` (the single tool), or a
                ``{"type": "function", "function": {"name": ...}}`` dict.
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

    def _forced_tool_choice(self, tool_name: str) -> Any:
        # with_structured_output binds exactly one tool, so "some tool" forces it; unlike
        # a named choice, OpenAI-compatible servers (llama.cpp) honour it too.
        return "any"

    # ------------------------------------------------------------------ tokens & health
    def get_num_tokens_from_messages(self, messages: list[BaseMessage], tools: Sequence[Any] | None = None) -> int:
        """An approximate prompt token count, computed offline.

        Mistral's tokenizers (Tekken, SentencePiece) are not bundled: this counts
        with tiktoken's ``cl100k_base`` plus OpenAI's chat framing (see
        ``langchain_multigateway.tokens``), typically within 10-20% of what
        Mistral bills. The response's ``usage_metadata`` holds the exact count.
        """
        total = count_message_tokens(messages_to_openai(messages), "cl100k_base")
        if tools:
            schema = json.dumps(tools_to_openai(tools))
            total += count_message_tokens([{"role": "system", "content": schema}], "cl100k_base") - 6
        return total

    def _probe(self) -> None:
        try:
            self.client.models.list()
        except Exception as exc:
            if not _answered_ok(exc):
                raise self._translate(exc) from exc

    async def _aprobe(self) -> None:
        try:
            await self.client.models.list_async()
        except Exception as exc:
            if not _answered_ok(exc):
                raise self._translate(exc) from exc


# ---------------------------------------------------------------------- helpers
def _answered_ok(exc: Exception) -> bool:
    """A 200 whose model list is not in Mistral's shape (an OpenAI-compatible server): it serves."""
    from mistralai.client import errors

    return isinstance(exc, errors.ResponseValidationError) and exc.status_code == 200


def _messages_to_mistral(messages: Sequence[BaseMessage]) -> list[dict[str, Any]]:
    """OpenAI-format messages without what Mistral's schema lacks (``name`` on chat turns)."""
    out = messages_to_openai(messages)
    for message in out:
        message.pop("name", None)
    return out


def _decode_event(raw: str) -> dict[str, Any]:
    """One server-sent event (the SDK's JSON envelope) to its ``data`` dict."""
    data = json.loads(raw).get("data")
    if not isinstance(data, dict):
        msg = f"stream event is not a JSON object: {str(data)[:200]!r}"
        raise ValueError(msg)
    return data


def _split_content(content: Any) -> tuple[str, str]:
    """Mistral content (a string or a list of text / thinking chunks) as (text, reasoning)."""
    if content is None:
        return "", ""
    if isinstance(content, str):
        return content, ""
    text: list[str] = []
    reasoning: list[str] = []
    for chunk in content:
        if isinstance(chunk, str):
            text.append(chunk)
        elif chunk.get("type") == "text":
            text.append(str(chunk.get("text") or ""))
        elif chunk.get("type") == "thinking":
            inner_text, _ = _split_content(chunk.get("thinking"))
            reasoning.append(inner_text)
    return "".join(text), "".join(reasoning)


def _known_ids(calls: Sequence[Mapping[str, Any]] | None) -> list[dict[str, Any]]:
    """Tool calls with the SDK's placeholder id ``"null"`` turned into no id."""
    fixed = []
    for call in calls or []:
        call_dict = dict(call)
        if call_dict.get("id") in ("null", ""):
            call_dict["id"] = None
        fixed.append(call_dict)
    return fixed


class _StreamAssembler:
    """Turns Mistral (or OpenAI-style) stream events into LangChain chunks.

    Content and tool-call fragments go out as they arrive; one closing chunk
    carries the usage (when the server sent any), the model name and the
    finish reason, so that exactly one chunk holds each.
    """

    def __init__(self, owner: GatewayChatModel) -> None:
        self.owner = owner
        self.model_name: str | None = None
        self.finish_reason: str | None = None
        self.response_id: str | None = None
        self.usage: dict[str, Any] | None = None

    def feed(self, event: Mapping[str, Any]) -> Iterator[ChatGenerationChunk]:
        if event.get("error") or event.get("object") == "error":
            detail = event.get("error") or event.get("message") or event
            raise ProviderError(f"stream error: {detail}", provider=self.owner.provider_name, model=self.owner.model)
        self.model_name = event.get("model") or self.model_name
        self.response_id = event.get("id") or self.response_id
        if event.get("usage"):
            self.usage = dict(event["usage"])
        for choice in event.get("choices") or []:
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
            delta = choice.get("delta") or {}
            text, reasoning = _split_content(delta.get("content"))
            chunks = []
            for position, call in enumerate(_known_ids(delta.get("tool_calls"))):
                fn = call.get("function") or {}
                args = fn.get("arguments")
                chunks.append(
                    tool_call_chunk(
                        name=fn.get("name") or None,
                        args=json.dumps(args) if isinstance(args, dict) else args,
                        id=call.get("id"),
                        index=call.get("index", position),
                    )
                )
            additional = {"reasoning_content": reasoning} if reasoning else {}
            if text or chunks or additional:
                yield ChatGenerationChunk(
                    message=AIMessageChunk(
                        content=text, tool_call_chunks=chunks, additional_kwargs=additional, id=self.response_id
                    )
                )

    def finish(self) -> ChatGenerationChunk:
        meta = self.owner._response_metadata(self.model_name, finish_reason=self.finish_reason, id=self.response_id)
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


# ---------------------------------------------------------------------- errors
def translate_mistral_error(exc: Exception, *, provider: str = "mistral", model: str | None = None) -> GatewayError:
    """Map a mistralai SDK (or httpx2 transport) exception onto the gateway hierarchy.

    The caller chains the original (``raise translated from exc``).
    """
    import httpx2
    from mistralai.client import errors

    if isinstance(exc, GatewayError):
        return exc
    if isinstance(exc, httpx2.TimeoutException):
        return GatewayTimeoutError(f"request timed out: {exc!r}", provider=provider, model=model)
    if isinstance(exc, (httpx2.TransportError, errors.NoResponseError)):
        return GatewayConnectionError(f"could not reach the server: {exc!r}", provider=provider, model=model)
    if isinstance(exc, errors.ResponseValidationError):
        return ProviderError(
            f"malformed response from the server: {exc.message[:500]}",
            provider=provider,
            model=model,
            status_code=exc.status_code,
            request_id=_request_id(exc.headers),
            body=exc.body,
        )
    if isinstance(exc, errors.MistralError):
        headers = dict(exc.headers)
        body = _json_or_text(exc.body)
        return error_from_status(
            exc.status_code,
            _error_message(body) or exc.message,
            provider=provider,
            model=model,
            request_id=_request_id(exc.headers),
            headers=headers,
            body=body,
        )
    if isinstance(exc, (json.JSONDecodeError, ValueError)):
        return ProviderError(f"malformed response from the server: {exc}", provider=provider, model=model)
    if isinstance(exc, TypeError):
        # e.g. a model_kwargs / invoke keyword the SDK does not take
        return InvalidRequestError(f"the mistralai SDK refused the request: {exc}", provider=provider, model=model)
    return ProviderError(f"{type(exc).__name__}: {exc}", provider=provider, model=model, retryable=False)


def _request_id(headers: Mapping[str, str]) -> str | None:
    for name in _REQUEST_ID_HEADERS:
        value = headers.get(name)
        if value:
            return value
    return None


def _json_or_text(body: str | None) -> Any:
    if not body:
        return body
    try:
        return json.loads(body)
    except ValueError:
        return body


def _error_message(body: Any) -> str | None:
    """The human part of an error body: OpenAI's ``{"error": {"message"}}``, Mistral's
    ``{"message": ...}`` (a string or a list), or FastAPI's ``{"detail": [...]}``."""
    if isinstance(body, Mapping):
        inner = body.get("error", body)
        if isinstance(inner, Mapping):
            for key in ("message", "detail"):
                value = inner.get(key)
                if isinstance(value, str) and value:
                    return value
                if value:
                    return json.dumps(value)
        if isinstance(inner, str) and inner:
            return inner
        return None
    if isinstance(body, str) and body.strip():
        return body.strip()[:2000]
    return None
