"""OpenAIChatModel: the openai SDK, for OpenAI and any OpenAI-compatible server."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import TYPE_CHECKING, Any, ClassVar

from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.utils import from_env, secret_from_env
from pydantic import Field, PrivateAttr, SecretStr

from langchain_multigateway.chat_models._base import GatewayChatModel
from langchain_multigateway.chat_models._chat_stream import ChatCompletionsAssembler
from langchain_multigateway.chat_models._error_body import error_message_of
from langchain_multigateway.chat_models._exchange import Exchange
from langchain_multigateway.chat_models._http import aiter_sse, iter_sse, set_body_read_timeout
from langchain_multigateway.chat_models._loops import CLIENTS_LOCK, LoopBound, close_when_collected
from langchain_multigateway.chat_models._openai_format import (
    ToolChoice,
    content_with_reasoning,
    messages_to_openai,
    parse_tool_calls,
    tool_choice_to_openai,
    tools_to_openai,
    usage_from_openai,
)
from langchain_multigateway.chat_models._redirects import guard_redirects
from langchain_multigateway.chat_models._responses_format import (
    needs_responses_api,
    output_to_message_parts,
    response_id_of,
    responses_body,
    usage_from_responses,
)
from langchain_multigateway.chat_models._responses_stream import ResponsesAssembler
from langchain_multigateway.errors import (
    GatewayConnectionError,
    GatewayError,
    GatewayTimeoutError,
    ProviderError,
    error_from_status,
)

if TYPE_CHECKING:
    import openai

__all__ = ["OpenAIChatModel"]

# The SDK's per-request TypedDict transform and typed response objects cost more CPU
# than the rest of a call, and the gateway needs plain dicts anyway: see _send.
_CHAT_PATH = "/chat/completions"
_RESPONSES_PATH = "/responses"


def _path(payload: Mapping[str, Any]) -> str:
    """Where a built body goes: Responses bodies carry ``input``, chat bodies ``messages``."""
    return _RESPONSES_PATH if "input" in payload else _CHAT_PATH


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

    Responses API:
        .. code-block:: python

            reasoning = {"effort": "low", "summary": "auto"}  # summaries of the model's reasoning
            llm = OpenAIChatModel(model="o4-mini", use_responses_api=True, model_kwargs={"reasoning": reasoning})
            msg = llm.invoke("How many r's in strawberry?")
            msg.content_blocks
            # [{"type": "reasoning", "reasoning": "**Counting** ...", "id": "rs_..."},
            #  {"type": "text", "text": "There are 3.", "id": "msg_..."}]
            llm.invoke([*history, msg, HumanMessage("And in raspberry?")])  # reasoning items go back
            llm.invoke([*history, msg, HumanMessage("...")], previous_response_id=msg.response_metadata["id"])

        ``POST /responses`` through the same SDK client: messages become input items
        (``function_call`` / ``function_call_output`` for tool calls and results),
        ``response_format`` becomes ``text.format``, ``max_tokens`` ``max_output_tokens``.
        Models OpenAI serves only there use it by default (see ``use_responses_api``).

    Reasoning:
        Reasoning that an OpenAI-compatible server returns beside the answer
        (``reasoning_content`` from DeepSeek, llama.cpp and vLLM, or ``reasoning``) is a
        ``reasoning`` block first in ``content_blocks`` (the content is then a list of
        blocks), also kept in ``additional_kwargs["reasoning_content"]``; it is never sent back.

    Token usage:
        .. code-block:: python

            msg = llm.invoke("Hello")
            msg.usage_metadata
            # {"input_tokens": 9, "output_tokens": 12, "total_tokens": 21,
            #  "input_token_details": {"cache_read": 0}, "output_token_details": {"reasoning": 0}}
            llm.get_num_tokens_from_messages([HumanMessage("Hello")])  # tiktoken, offline-safe

    Response metadata:
        ``model_name``, ``model_provider`` (``"openai"``), ``finish_reason``, ``id``,
        ``system_fingerprint`` when the server sends one; in Responses mode also ``status``.
    """

    provider_name = "openai"
    api_key_env = "OPENAI_API_KEY"
    token_encoding = None  # count with the model's own encoding (tiktoken knows OpenAI's models)

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
    use_responses_api: bool | None = None
    """Speak OpenAI's Responses API (``POST /responses``) instead of chat completions.

    ``None`` (the default) picks by model: the models OpenAI serves only there (``o1-pro``,
    ``o3-pro``, every ``gpt-5…-pro``, any ``codex`` or ``deep-research`` model,
    ``computer-use-preview``; see ``_responses_format.RESPONSES_ONLY_MODELS``) use it, every
    other model chat completions, which every OpenAI-compatible server speaks. A call that
    passes ``previous_response_id`` uses it too (only this API stores conversations).
    """
    use_previous_response_id: bool = False
    """In Responses mode, send only the messages after the last AI message that came from
    this API, with ``previous_response_id`` set to its id (the server holds the rest; needs
    ``store`` left on). Off by default: every request is then whole and can go to any server
    or fail over to another deployment."""
    http_client: Any | None = Field(default=None, exclude=True)
    """An ``httpx2.Client`` for the sync SDK client (proxies, custom transports, replay).

    Used as given: its redirect policy and hooks are yours (build it with ``openai.DefaultHttpxClient``
    to keep the SDK's defaults). The client made when none is given follows redirects, as the SDK's
    does, and sends credential headers (``Authorization``, ``api-key``, any ``default_headers`` entry
    named like a credential, or holding a key the process knows) only to the base URL's own scheme,
    host and port, and stops at a 301/302/303 to a POST with a ``ProviderError`` (httpx would resend
    it as a bodiless GET); httpx alone drops just ``Authorization`` when a redirect names another host."""
    http_async_client: Any | None = Field(default=None, exclude=True)
    """An ``httpx2.AsyncClient`` for the async SDK client (used as given, like ``http_client``)."""

    clients_built_from: ClassVar[frozenset[str]] = frozenset(
        {"api_key", "base_url", "organization", "default_headers", "default_query", "timeout", "connect_timeout"}
        | {"http_client", "http_async_client"}
    )
    _client: openai.OpenAI | None = PrivateAttr(default=None)
    _async_clients: LoopBound[openai.AsyncOpenAI] | None = PrivateAttr(default=None)

    # ------------------------------------------------------------------ clients
    def _client_kwargs(self) -> dict[str, Any]:
        import httpx2

        assert self.api_key is not None  # checked at construction
        return {
            "api_key": self.api_key.get_secret_value(),
            "base_url": self.base_url,
            "organization": self.organization,
            "default_headers": self.default_headers,
            "default_query": self.default_query,
            # Requests carry their own limits; this bounds anything sent without them (probes).
            "timeout": httpx2.Timeout(self.timeout, connect=self.connect_timeout),
            "max_retries": 0,  # one retry policy rules: ours
        }

    def _sdk(self, *, asynchronous: bool) -> Any:
        """An SDK client on the caller's own http client as is, else on one with the SDK's defaults
        (timeouts, pool limits, redirects followed) that sends credential headers only to the base
        URL's origin, and is closed with the SDK client (sync) or its event loop (async, LoopBound)."""
        import openai

        sdk = openai.AsyncOpenAI if asynchronous else openai.OpenAI
        given = self.http_async_client if asynchronous else self.http_client
        if given is not None:
            return sdk(**self._client_kwargs(), http_client=given)
        http: Any = openai.DefaultAsyncHttpxClient() if asynchronous else openai.DefaultHttpxClient()
        client = sdk(**self._client_kwargs(), http_client=http)
        home = str(client.base_url)  # as the SDK resolved it (argument, OPENAI_BASE_URL, its default)
        guard_redirects(http, home, asynchronous=asynchronous)
        if not asynchronous:
            close_when_collected(client, http)
        return client

    @property
    def client(self) -> openai.OpenAI:
        """The sync openai client (created on first use)."""
        if self._client is None:
            with CLIENTS_LOCK:
                if self._client is None:
                    self._client = self._sdk(asynchronous=False)
        return self._client

    @property
    def async_client(self) -> openai.AsyncOpenAI:
        """The async openai client of the running event loop (made on first use there and
        closed when that loop shuts down; ``http_async_client``, if given, is used as is)."""
        if self._async_clients is None:

            def make() -> openai.AsyncOpenAI:
                sdk: openai.AsyncOpenAI = self._sdk(asynchronous=True)
                return sdk

            with CLIENTS_LOCK:
                if self._async_clients is None:
                    self._async_clients = LoopBound(make, _close_unless_shared(self.http_async_client))
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
            "seed": self.seed,
            "frequency_penalty": self.frequency_penalty,
            "presence_penalty": self.presence_penalty,
            "stop": stop or self.stop,
            **self.model_kwargs,
        }
        params.update(kwargs)
        params = {k: v for k, v in params.items() if v is not None}
        if not params.get("previous_response_id", True):  # "" (an id looked up and not found): no stored conversation
            del params["previous_response_id"]
        if self.parallel_tool_calls is not None and params.get("tools"):
            params.setdefault("parallel_tool_calls", self.parallel_tool_calls)
        if self._responses_mode(params):
            if self.use_previous_response_id and "previous_response_id" not in params:
                params["previous_response_id"] = _last_response_id(messages)
            return responses_body(params, messages, stream=stream)
        params["messages"] = messages_to_openai(messages)
        if stream:
            params["stream"] = True
            if self.stream_usage and "stream_options" not in params:
                params["stream_options"] = {"include_usage": True}
        return params

    @property
    def responses_api(self) -> bool:
        """Whether this model's calls go to the Responses API (``use_responses_api``, resolved
        for its model name); a call passing ``previous_response_id`` goes there too."""
        return self._responses_mode({})

    def _responses_mode(self, params: Mapping[str, Any]) -> bool:
        """Whether this call goes to ``/responses`` (see ``use_responses_api``)."""
        if self.use_responses_api is not None:
            return self.use_responses_api or bool(params.get("previous_response_id"))
        return needs_responses_api(str(params.get("model") or self.model)) or bool(params.get("previous_response_id"))

    def _translate(self, exc: BaseException, model: str | None = None) -> GatewayError:
        return translate_openai_error(exc, provider=self.provider_name, model=model or self.model)

    def _endpoint(self) -> str | None:
        return self.base_url or "https://api.openai.com/v1"

    # ------------------------------------------------------------------ transport
    # Both kinds of call, to either API, go through the SDK client's own ``post`` (auth,
    # base URL, headers and typed HTTP errors as with ``client.chat.completions.create``
    # or ``client.responses.create``) with the body we built and the raw response back:
    # no per-request TypedDict transform, no typed response or event objects, and one
    # transport (time limits, retries, SSE reading) for both APIs.
    def _options(self, exchange: Exchange) -> Any:  # the SDK's RequestOptions
        import httpx2

        timeouts, exchange.waiting_for = exchange.clock.http_timeouts()
        return {"timeout": httpx2.Timeout(**timeouts)}

    def _send(self, exchange: Exchange) -> Any:
        raw = self.client.post(
            _path(exchange.payload),
            cast_to=_raw_response_type(),
            body=exchange.payload,
            options=self._options(exchange),
        )
        exchange.request_id = raw.headers.get("x-request-id")
        exchange.note_headers(raw.headers)
        exchange.answered = True
        return json.loads(raw.content)

    async def _asend(self, exchange: Exchange) -> Any:
        raw = await self.async_client.post(
            _path(exchange.payload),
            cast_to=_raw_response_type(),
            body=exchange.payload,
            options=self._options(exchange),
        )
        exchange.request_id = raw.headers.get("x-request-id")
        exchange.note_headers(raw.headers)
        exchange.answered = True
        return json.loads(raw.content)

    @contextmanager
    def _send_stream(self, exchange: Exchange) -> Iterator[Iterator[Any]]:
        options = self._options(exchange)
        response = self.client.post(
            _path(exchange.payload), cast_to=_raw_response_type(), body=exchange.payload, options=options, stream=True
        )
        try:
            exchange.request_id = response.headers.get("x-request-id")
            exchange.note_headers(response.headers)
            exchange.waiting_for = set_body_read_timeout(response.request, exchange.clock)
            yield iter_sse(response.iter_lines())
        finally:
            response.close()

    @asynccontextmanager
    async def _asend_stream(self, exchange: Exchange) -> AsyncIterator[AsyncIterator[Any]]:
        options = self._options(exchange)
        response = await self.async_client.post(
            _path(exchange.payload), cast_to=_raw_response_type(), body=exchange.payload, options=options, stream=True
        )
        try:
            exchange.request_id = response.headers.get("x-request-id")
            exchange.note_headers(response.headers)
            set_body_read_timeout(response.request, None)  # the template times each read itself
            yield aiter_sse(response.aiter_lines())
        finally:
            await response.aclose()

    def _parse_response(self, data: Any, exchange: Exchange) -> ChatResult:
        request_id = exchange.request_id
        if not isinstance(data, Mapping):
            msg = f"expected a JSON object from the server, got {type(data).__name__}"
            raise ProviderError(msg, provider=self.provider_name, model=exchange.model, request_id=request_id)
        if data.get("error"):
            raise ProviderError(str(data["error"]), provider=self.provider_name, model=exchange.model)
        if "output" in data or data.get("object") == "response":
            return self._parse_responses(data, exchange)
        choices = data.get("choices") or []
        if not choices:
            msg = "The server answered with no choices"
            raise ProviderError(msg, provider=self.provider_name, model=data.get("model") or exchange.model)
        choice = choices[0]
        message = choice.get("message") or {}
        tool_calls, invalid = parse_tool_calls(message.get("tool_calls"))
        additional: dict[str, Any] = {}
        if message.get("refusal"):
            additional["refusal"] = message["refusal"]
        reasoning = message.get("reasoning_content") or message.get("reasoning")
        if reasoning and isinstance(reasoning, str):
            additional["reasoning_content"] = reasoning
        ai = AIMessage(
            content=content_with_reasoning(message.get("content") or "", reasoning, tool_calls),
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

    def _parse_responses(self, data: Mapping[str, Any], exchange: Exchange) -> ChatResult:
        """A ``/responses`` answer as a ChatResult (content blocks, tool calls, usage)."""
        if data.get("status") == "failed" or data.get("error"):
            msg = f"the response failed: {data.get('error') or data.get('status')}"
            raise ProviderError(msg, provider=self.provider_name, model=exchange.model, request_id=exchange.request_id)
        output = data.get("output")
        if not isinstance(output, list):
            msg = f"a response without an output list: {str(data)[:200]}"
            raise ProviderError(msg, provider=self.provider_name, model=exchange.model, request_id=exchange.request_id)
        content, tool_calls, invalid = output_to_message_parts(output)
        incomplete = (data.get("incomplete_details") or {}).get("reason")
        finish = "length" if incomplete == "max_output_tokens" else incomplete
        ai = AIMessage(
            content=content,  # type: ignore[arg-type]
            tool_calls=tool_calls,
            invalid_tool_calls=invalid,
            usage_metadata=usage_from_responses(data.get("usage")),
            response_metadata=self._response_metadata(
                data.get("model"),
                id=data.get("id"),
                status=data.get("status"),
                finish_reason=finish or ("tool_calls" if tool_calls or invalid else "stop"),
                service_tier=data.get("service_tier"),
                request_id=exchange.request_id,
            ),
            id=data.get("id"),
        )
        return ChatResult(generations=[ChatGeneration(message=ai)], llm_output={"model_name": data.get("model")})

    def _stream_assembler(self, exchange: Exchange) -> ChatCompletionsAssembler | ResponsesAssembler:
        if _path(exchange.payload) == _RESPONSES_PATH:
            return ResponsesAssembler(self, exchange)
        return ChatCompletionsAssembler(self, exchange, reasoning_blocks=True)

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
        names = [t["function"]["name"] for t in formatted if "function" in t]  # built-in tools have no name
        choice = tool_choice_to_openai(tool_choice, names)
        if choice is not None:
            kwargs["tool_choice"] = choice
        if parallel_tool_calls is not None:
            kwargs["parallel_tool_calls"] = parallel_tool_calls
        return super().bind(tools=formatted, **kwargs)

    # ------------------------------------------------------------------ health
    def _probe(self) -> None:
        try:
            self.client.models.list()
        except Exception as exc:
            raise self._locate(self._translate(exc)) from exc

    async def _aprobe(self) -> None:
        try:
            await self.async_client.models.list()
        except Exception as exc:
            raise self._locate(self._translate(exc)) from exc


def _last_response_id(messages: Sequence[BaseMessage]) -> str | None:
    """The Responses id of the last AI message, if it came from that API."""
    for message in reversed(messages):
        if isinstance(message, AIMessage):
            return response_id_of(message)
    return None


def _close_unless_shared(shared: Any) -> Callable[[openai.AsyncOpenAI], Awaitable[None]]:
    """How to close a per-loop client: not at all when it wraps the caller's own http client."""

    async def close(client: openai.AsyncOpenAI) -> None:
        if shared is None:
            await client.close()

    return close


def translate_openai_error(exc: BaseException, *, provider: str, model: str | None) -> GatewayError:
    """Map an openai SDK (or its httpx2 transport) exception onto the gateway hierarchy."""
    import httpx2
    import openai

    if isinstance(exc, GatewayError):
        return exc
    if isinstance(exc, (openai.APITimeoutError, httpx2.TimeoutException)):
        return GatewayTimeoutError(f"request timed out: {exc}", provider=provider, model=model)
    if isinstance(exc, (openai.APIConnectionError, httpx2.TransportError)):
        # A reset mid-stream arrives as the transport's own ReadError / RemoteProtocolError.
        what = "the connection failed" if isinstance(exc, httpx2.TransportError) else "could not reach the server"
        return GatewayConnectionError(f"{what}: {type(exc).__name__}: {exc}", provider=provider, model=model)
    if isinstance(exc, openai.APIStatusError):
        return error_from_status(
            exc.status_code,
            error_message_of(exc.body) or exc.message,
            provider=provider,
            model=model,
            request_id=exc.request_id,
            headers=dict(exc.response.headers),
            body=exc.body,
        )
    if isinstance(exc, (openai.APIResponseValidationError, json.JSONDecodeError, ValueError)):
        return ProviderError(f"malformed response from the server: {exc}", provider=provider, model=model)
    return ProviderError(f"{type(exc).__name__}: {exc}", provider=provider, model=model, retryable=False)
