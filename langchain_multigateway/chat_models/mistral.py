"""MistralChatModel: the mistralai SDK, for Mistral's API and servers that speak its chat format."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import TYPE_CHECKING, Any, ClassVar

from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.utils import from_env, secret_from_env
from pydantic import AliasChoices, Field, PrivateAttr, SecretStr, field_validator

from langchain_multigateway.chat_models._base import GatewayChatModel
from langchain_multigateway.chat_models._chat_stream import ChatCompletionsAssembler
from langchain_multigateway.chat_models._exchange import Exchange
from langchain_multigateway.chat_models._http import aiter_sse, iter_sse, request_id_of, set_body_read_timeout
from langchain_multigateway.chat_models._loops import CLIENTS_LOCK, LoopBound, close_when_collected
from langchain_multigateway.chat_models._mistral_format import (
    aapply_call_timeouts,
    answered_ok,
    apply_call_timeouts,
    call_timeouts,
    known_ids,
    messages_to_mistral,
    split_content,
    translate_mistral_error,
    usage_from_mistral,
)
from langchain_multigateway.chat_models._openai_format import (
    ToolChoice,
    parse_tool_calls,
    tool_choice_to_openai,
    tools_to_openai,
)
from langchain_multigateway.chat_models._redirects import guard_redirects
from langchain_multigateway.errors import GatewayError, ProviderError
from langchain_multigateway.tokens import count_message_tokens, count_text_tokens

if TYPE_CHECKING:
    from mistralai.client import Mistral

__all__ = ["MistralChatModel", "translate_mistral_error"]


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
            # the last chunk has chunk_position="last" and carries usage_metadata: the
            # server's own counts when it sends usage in its stream (Mistral's API does), else
            # an offline tiktoken estimate (prompt, bound tools and generated text) marked
            # response_metadata["usage_estimated"] = True (llama.cpp sends none: the SDK
            # cannot ask for it with stream_options)

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
            # prompt-cache hits (usage.num_cached_tokens, or prompt_tokens_details.cached_tokens)
            # appear as input_token_details["cache_read"]
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

    clients_built_from: ClassVar[frozenset[str]] = frozenset({"api_key", "server_url", "timeout", "connect_timeout"})
    _client: Mistral | None = PrivateAttr(default=None)
    _async_clients: LoopBound[Mistral] | None = PrivateAttr(default=None)

    @field_validator("server_url")
    @classmethod
    def _root_url(cls, value: str | None) -> str | None:
        """The SDK appends ``/v1/...`` itself: keep only the server's root."""
        if not value:
            return None
        value = value.rstrip("/")
        return value[: -len("/v1")] if value.endswith("/v1") else value

    # ------------------------------------------------------------------ client
    def _sdk(self, **clients: Any) -> Mistral:
        from mistralai.client import Mistral
        from mistralai.client.utils.retries import BackoffStrategy, RetryConfig

        assert self.api_key is not None  # checked at construction
        return Mistral(
            api_key=self.api_key.get_secret_value(),
            server_url=self.server_url,
            # One retry policy rules: ours. "none" switches the SDK's loop off.
            retry_config=RetryConfig("none", BackoffStrategy(0, 0, 1.0, 0), retry_connection_errors=False),
            **clients,
        )

    @staticmethod
    def _home(sdk: Mistral) -> str:
        """The server the SDK sends to (``server_url``, else its default): credential headers go there only.

        Why: the clients follow redirects (as the SDK's own do), and httpx drops only ``Authorization``
        when one names another host; ``_redirects`` drops every credential header there."""
        url, _ = sdk.sdk_configuration.get_server_details()
        return str(url)

    def _default_timeout(self) -> Any:
        import httpx2

        return httpx2.Timeout(self.timeout, connect=self.connect_timeout)

    @property
    def client(self) -> Mistral:
        """The mistralai client for sync calls (created on first use)."""
        if self._client is None:
            import httpx2

            with CLIENTS_LOCK:
                if self._client is None:
                    http = httpx2.Client(
                        follow_redirects=True,
                        timeout=self._default_timeout(),
                        event_hooks={"request": [apply_call_timeouts]},
                    )
                    self._client = self._sdk(client=http)
                    guard_redirects(http, self._home(self._client), asynchronous=False)
                    close_when_collected(self._client, http)
        return self._client

    @property
    def async_client(self) -> Mistral:
        """The mistralai client for async calls on the running event loop (made on first use
        there, its HTTP client closed when that loop shuts down)."""
        if self._async_clients is None:
            import httpx2

            def make() -> Mistral:
                http = httpx2.AsyncClient(
                    follow_redirects=True,
                    timeout=self._default_timeout(),
                    event_hooks={"request": [aapply_call_timeouts]},
                )
                sdk = self._sdk(async_client=http)
                guard_redirects(http, self._home(sdk), asynchronous=True)
                return sdk

            with CLIENTS_LOCK:
                if self._async_clients is None:
                    self._async_clients = LoopBound(make, _aclose_sdk)
        return self._async_clients.get()

    # ------------------------------------------------------------------ requests
    def _build_request(
        self, messages: Sequence[BaseMessage], stop: list[str] | None, *, stream: bool, **kwargs: Any
    ) -> dict[str, Any]:
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
        params["messages"] = messages_to_mistral(messages)
        return params

    def _translate(self, exc: BaseException, model: str | None = None) -> GatewayError:
        return translate_mistral_error(exc, provider=self.provider_name, model=model or self.model)

    def _endpoint(self) -> str | None:
        return self.server_url or "https://api.mistral.ai"

    # ------------------------------------------------------------------ transport
    # The SDK builds, authenticates and sends each request; its httpx2 clients take
    # each request's time limits from a context variable (see apply_call_timeouts).
    # Streams are read as raw server-sent events: the SDK's typed decoder rejects
    # OpenAI-style tool-call fragments (no function name after the first).
    def _send(self, exchange: Exchange) -> Any:
        with call_timeouts(exchange):
            response = self.client.chat.complete(**exchange.payload)
        exchange.answered = True
        return response.model_dump(by_alias=True)

    async def _asend(self, exchange: Exchange) -> Any:
        with call_timeouts(exchange):
            response = await self.async_client.chat.complete_async(**exchange.payload)
        exchange.answered = True
        return response.model_dump(by_alias=True)

    @contextmanager
    def _send_stream(self, exchange: Exchange) -> Iterator[Iterator[Any]]:
        with call_timeouts(exchange):
            sdk_stream = self.client.chat.stream(**exchange.payload)
        response = sdk_stream.response
        try:
            exchange.request_id = request_id_of(response.headers)
            exchange.waiting_for = set_body_read_timeout(response.request, exchange.clock)
            yield iter_sse(response.iter_lines())
        finally:
            response.close()

    @asynccontextmanager
    async def _asend_stream(self, exchange: Exchange) -> AsyncIterator[AsyncIterator[Any]]:
        with call_timeouts(exchange):
            sdk_stream = await self.async_client.chat.stream_async(**exchange.payload)
        response = sdk_stream.response
        try:
            exchange.request_id = request_id_of(response.headers)
            set_body_read_timeout(response.request, None)  # the template times each read itself
            yield aiter_sse(response.aiter_lines())
        finally:
            await response.aclose()

    def _parse_response(self, data: Any, exchange: Exchange) -> ChatResult:
        choices = data.get("choices") or []
        if not choices:
            msg = "The server answered with no choices"
            raise ProviderError(msg, provider=self.provider_name, model=data.get("model") or exchange.model)
        choice = choices[0]
        message = choice.get("message") or {}
        text, reasoning = split_content(message.get("content"))
        tool_calls, invalid = parse_tool_calls(known_ids(message.get("tool_calls")))
        additional: dict[str, Any] = {}
        if reasoning:
            additional["reasoning_content"] = reasoning
        ai = AIMessage(
            content=text,
            tool_calls=tool_calls,
            invalid_tool_calls=invalid,
            additional_kwargs=additional,
            usage_metadata=usage_from_mistral(data.get("usage")),
            response_metadata=self._response_metadata(
                data.get("model"), finish_reason=choice.get("finish_reason"), id=data.get("id")
            ),
            id=data.get("id"),
        )
        return ChatResult(generations=[ChatGeneration(message=ai)], llm_output={"model_name": data.get("model")})

    def _stream_assembler(self, exchange: Exchange) -> ChatCompletionsAssembler:
        return ChatCompletionsAssembler(
            self,
            exchange,
            split_content=split_content,
            usage_of=usage_from_mistral,
            estimate_usage=lambda generated, finish: self._estimated_usage(exchange.payload, generated, finish),
            usage_expected=True,  # Mistral's API sends it; where none comes, [DONE] ends the stream
        )

    def _estimated_usage(self, payload: Mapping[str, Any], generated: str, finish: str | None) -> UsageMetadata:
        """Usage counted offline (tiktoken) for a stream whose server sent none: Mistral's SDK
        cannot ask an OpenAI-compatible server for stream usage. Marked ``usage_estimated``.

        The prompt counts its messages and bound tools; the output counts the generated text,
        reasoning and tool calls (names and arguments), never more than ``max_tokens``, and
        exactly ``max_tokens`` when the answer stopped at that cap.
        """
        prompt = count_message_tokens(list(payload.get("messages") or []), self.token_encoding or self.model)
        if payload.get("tools"):
            schema = [{"role": "system", "content": json.dumps(payload["tools"])}]
            prompt += count_message_tokens(schema, self.token_encoding or self.model) - 6
        output = count_text_tokens(generated, self.token_encoding or self.model) if generated else 0
        cap = payload.get("max_tokens")
        if isinstance(cap, int):
            output = cap if finish == "length" else min(output, cap)
        return UsageMetadata(input_tokens=prompt, output_tokens=output, total_tokens=prompt + output)

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

    def forced_tool_choice(self, tool_name: str) -> Any:
        # with_structured_output binds exactly one tool, so "some tool" forces it; unlike
        # a named choice, OpenAI-compatible servers (llama.cpp) honour it too.
        return "any"

    # ------------------------------------------------------------------ health
    def _probe(self) -> None:
        try:
            self.client.models.list()
        except Exception as exc:
            if not answered_ok(exc):
                raise self._translate(exc) from exc

    async def _aprobe(self) -> None:
        try:
            await self.async_client.models.list_async()
        except Exception as exc:
            if not answered_ok(exc):
                raise self._translate(exc) from exc


async def _aclose_sdk(sdk: Mistral) -> None:
    http = sdk.sdk_configuration.async_client
    if http is not None:
        await http.aclose()
