"""OllamaChatModel: Ollama's native ``/api/chat`` over httpx, NDJSON streaming."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from langchain_core.language_models.model_profile import ModelProfile
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.tool import tool_call_chunk
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.utils import from_env, secret_from_env
from pydantic import Field, SecretStr

from langchain_multigateway.chat_models._base import StructuredOutputMethod
from langchain_multigateway.chat_models._exchange import Exchange
from langchain_multigateway.chat_models._http import HttpChatModel
from langchain_multigateway.chat_models._ollama_format import (
    OPTION_FIELDS,
    messages_to_ollama,
    normalize_host,
    ollama_metadata,
    parse_ollama_tool_calls,
    usage_from_ollama,
)
from langchain_multigateway.chat_models._openai_format import ToolChoice, tools_to_openai
from langchain_multigateway.errors import ModelNotFoundGatewayError, ProviderError

__all__ = ["OllamaChatModel"]


class OllamaChatModel(HttpChatModel):
    """Ollama chat models through Ollama's native API (``/api/chat``), no SDK needed.

    Setup:
        Install Ollama, pull a model and (optionally) point ``OLLAMA_HOST`` at the server:

        .. code-block:: bash

            ollama pull llama3.2
            export OLLAMA_HOST=127.0.0.1:11434   # the default; "host", "host:port" or a URL

    Key init args — completion params:
        model: str
            Model tag, e.g. ``"llama3.2"`` or ``"qwen2.5:7b"`` (alias ``model_name``).
        temperature: float | None
            Sampling temperature (sent in ``options``).
        max_tokens: int | None
            Cap on generated tokens (sent as ``options.num_predict``).
        stop: list[str] | None
            Stop sequences (``options.stop``).
        num_ctx, seed, top_p, top_k, min_p, repeat_penalty, repeat_last_n, ...:
            Ollama options, sent when set; ``options`` takes any other.
        keep_alive: str | int | None
            How long the model stays loaded after the call (``"5m"``, ``0``, ``-1``).
        format: "json" | dict | None
            Default output format: ``"json"`` or a JSON schema.
        reasoning: bool | None
            Ask thinking models to think (Ollama's ``think``); the thinking goes
            to ``additional_kwargs["reasoning_content"]``.

    Key init args — client params:
        base_url: str | None
            Server address; ``OLLAMA_HOST`` by default, else ``http://localhost:11434``.
        api_key: SecretStr | None
            Optional bearer token (``OLLAMA_API_KEY``), for a server behind an
            authenticating proxy or ollama.com; no key is needed locally.
        default_headers: dict | None
            Headers added to every request.
        timeout: float | None
            Seconds per HTTP request (alias ``request_timeout``); a cold model load
            can take long, raise it for big models.
        max_retries: int
            Retries of retryable failures under the gateway's retry policy.
        http_client / http_async_client: httpx clients to use instead of the
            ones created lazily (proxies, TLS, tests), used as given. The ones created
            follow redirects and send credential headers to the base URL's origin only.

    Instantiate:
        .. code-block:: python

            from langchain_multigateway.chat_models.ollama import OllamaChatModel

            llm = OllamaChatModel(model="llama3.2", temperature=0, num_ctx=8192, keep_alive="10m")

    Invoke:
        .. code-block:: python

            llm.invoke([("system", "Answer in French."), ("human", "I love programming.")])
            # AIMessage(content="J'adore la programmation.",
            #           response_metadata={"model_name": "llama3.2", "model_provider": "ollama",
            #                              "done_reason": "stop", "total_duration": 5191566416, ...})

    Stream:
        .. code-block:: python

            for chunk in llm.stream("Tell me a joke"):
                print(chunk.content, end="")
            # content chunks as Ollama sends them; the last chunk carries usage_metadata,
            # the durations and chunk_position="last"

    Async:
        .. code-block:: python

            await llm.ainvoke("Hello")
            async for chunk in llm.astream("Hello"):
                ...

    Tool calling:
        .. code-block:: python

            from pydantic import BaseModel, Field

            class GetWeather(BaseModel):
                '''Get the current weather in a given location.'''
                location: str = Field(..., description="City, e.g. Paris")

            llm.bind_tools([GetWeather]).invoke("What's the weather in Paris?").tool_calls
            # [{"name": "GetWeather", "args": {"location": "Paris"}, "id": "call_3f…", "type": "tool_call"}]

        Ollama sends arguments as objects and no call ids: ids are generated so
        tool results can be paired with their calls. Ollama has no ``tool_choice``:
        naming one tool sends only that tool, ``"none"`` sends none, and
        ``"any"``/``"required"`` cannot force a call (the model may still answer in text).

    Structured output:
        .. code-block:: python

            class Joke(BaseModel):
                setup: str
                punchline: str

            llm.with_structured_output(Joke).invoke("Tell me a joke about cats")  # format=<JSON schema>
            llm.with_structured_output(None, method="json_mode")                  # format="json"
            llm.with_structured_output(Joke, method="function_calling")           # a tool call

    Token usage:
        .. code-block:: python

            llm.invoke("Hello").usage_metadata
            # {"input_tokens": 26, "output_tokens": 298, "total_tokens": 324}
            # from prompt_eval_count / eval_count

            llm.get_num_tokens_from_messages([HumanMessage("Hello")])
            # an approximation: cl100k_base, not the model's own tokenizer

    Response metadata:
        ``model_name``, ``model_provider`` (``"ollama"``), ``done_reason`` (also as
        ``finish_reason``), ``created_at`` and Ollama's durations in nanoseconds:
        ``total_duration``, ``load_duration``, ``prompt_eval_duration``, ``eval_duration``.
    """

    provider_name = "ollama"
    secret_env = "OLLAMA_API_KEY"
    chat_path = "/api/chat"
    stream_framing = "ndjson"
    api_key_env = None
    supports_tool_choice = False  # Ollama cannot force a tool call

    base_url: str | None = Field(default_factory=from_env("OLLAMA_HOST", default=None))
    api_key: SecretStr | None = Field(default_factory=secret_from_env("OLLAMA_API_KEY", default=None))
    keep_alive: str | int | None = None
    format: str | dict[str, Any] | None = None
    reasoning: bool | None = None
    num_ctx: int | None = None
    seed: int | None = None
    top_p: float | None = None
    top_k: int | None = None
    min_p: float | None = None
    repeat_penalty: float | None = None
    repeat_last_n: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    mirostat: int | None = None
    mirostat_eta: float | None = None
    mirostat_tau: float | None = None
    num_gpu: int | None = None
    num_thread: int | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    """Any other Ollama option (sent in ``options``; overrides the named fields)."""

    def _resolve_model_profile(self) -> ModelProfile | None:
        base = super()._resolve_model_profile()  # a shared profile table's entry, if any
        profile = ModelProfile(**base) if base else ModelProfile(tool_calling=True, structured_output=True)
        if self.num_ctx:
            profile["max_input_tokens"] = self.num_ctx
        return profile

    # ------------------------------------------------------------------ http hooks
    @property
    def host(self) -> str:
        """The resolved server URL (``base_url`` / ``OLLAMA_HOST`` normalised)."""
        return normalize_host(self.base_url)

    def _api_base(self) -> str:
        return self.host

    def _auth_headers(self) -> dict[str, str]:
        if self.api_key is not None and self.api_key.get_secret_value():
            return {"authorization": f"Bearer {self.api_key.get_secret_value()}"}
        return {}

    # ------------------------------------------------------------------ requests
    def _build_request(
        self, messages: Sequence[BaseMessage], stop: list[str] | None, *, stream: bool, **kwargs: Any
    ) -> dict[str, Any]:
        options: dict[str, Any] = {"temperature": self.temperature, "num_predict": self.max_tokens}
        options.update({name: getattr(self, name) for name in OPTION_FIELDS})
        options["stop"] = stop or self.stop
        options.update(self.options)
        call_options = kwargs.pop("options", None) or {}
        for name in ("temperature", *OPTION_FIELDS):
            if name in kwargs:
                options[name] = kwargs.pop(name)
        if "max_tokens" in kwargs:
            options["num_predict"] = kwargs.pop("max_tokens")
        options.update(call_options)
        payload: dict[str, Any] = {
            "model": kwargs.pop("model", self.model),
            "messages": messages_to_ollama(messages),
            "stream": stream,
            "options": {k: v for k, v in options.items() if v is not None},
            "keep_alive": kwargs.pop("keep_alive", self.keep_alive),
            "format": kwargs.pop("format", self.format),
            "think": kwargs.pop("reasoning", kwargs.pop("think", self.reasoning)),
        }
        kwargs.pop("ls_structured_output_format", None)
        payload.update(kwargs)  # tools, and any other native field
        if not payload["options"]:
            del payload["options"]
        return {k: v for k, v in payload.items() if v is not None}

    def _stream_assembler(self, exchange: Exchange) -> _NDJSONAssembler:
        return _NDJSONAssembler(self, exchange.model)

    def _parse_response(self, data: Any, exchange: Exchange) -> ChatResult:
        model = exchange.model
        if not isinstance(data, Mapping):
            raise ProviderError(f"expected a JSON object, got {data!r:.100}", provider=self.provider_name, model=model)
        if data.get("error"):
            raise ProviderError(str(data["error"]), provider=self.provider_name, model=model)
        message = data.get("message")
        if not isinstance(message, Mapping):
            msg = "the server answered without a message"
            raise ProviderError(msg, provider=self.provider_name, model=data.get("model") or model)
        tool_calls, invalid = parse_ollama_tool_calls(message.get("tool_calls"))
        additional: dict[str, Any] = {}
        if message.get("thinking"):
            additional["reasoning_content"] = message["thinking"]
        ai = AIMessage(
            content=message.get("content") or "",
            tool_calls=tool_calls,
            invalid_tool_calls=invalid,
            additional_kwargs=additional,
            usage_metadata=usage_from_ollama(data),
            response_metadata=self._response_metadata(data.get("model") or model, **ollama_metadata(data)),
        )
        return ChatResult(
            generations=[ChatGeneration(message=ai)], llm_output={"model_name": data.get("model") or model}
        )

    # ------------------------------------------------------------------ tools & structured output
    def bind_tools(
        self,
        tools: Sequence[Any],
        *,
        tool_choice: ToolChoice = None,
        **kwargs: Any,
    ) -> Runnable[Any, AIMessage]:
        """Bind tools (BaseTool, pydantic classes, functions or OpenAI-format dicts).

        Args:
            tools: The tools the model may call.
            tool_choice: Ollama has no tool_choice. A tool's name (or ``True`` with a
                single tool) sends only that tool; ``"none"`` sends no tools;
                ``"auto"``, ``"any"`` and ``"required"`` send them all (a call
                cannot be forced).
        """
        formatted = tools_to_openai(tools)
        kwargs.pop("strict", None)
        kwargs.pop("parallel_tool_calls", None)
        names = [t["function"]["name"] for t in formatted]
        if tool_choice == "none":
            formatted = []
        elif isinstance(tool_choice, dict):
            wanted = (tool_choice.get("function") or {}).get("name") or tool_choice.get("name")
            if wanted:
                formatted = [t for t in formatted if t["function"]["name"] == wanted]
        elif isinstance(tool_choice, str) and tool_choice not in ("auto", "any", "required"):
            if tool_choice not in names:
                msg = f"tool_choice={tool_choice!r} names no bound tool; bound: {names}"
                raise ValueError(msg)
            formatted = [t for t in formatted if t["function"]["name"] == tool_choice]
        return super().bind(tools=formatted, **kwargs)

    def structured_output_request(
        self, method: StructuredOutputMethod, json_schema: dict[str, Any] | None = None, *, strict: bool | None = None
    ) -> dict[str, Any]:
        """Ollama's ``format``: a JSON schema, or ``"json"`` for any object."""
        if method == "json_schema" and json_schema is not None:
            return {"format": {k: v for k, v in json_schema.items() if k != "title"}}
        return {"format": "json"} if method == "json_mode" else super().structured_output_request(method, json_schema)

    # ------------------------------------------------------------------ health
    def _check_tags(self, data: Any) -> None:
        models = data.get("models") if isinstance(data, Mapping) else None
        if not isinstance(models, list):
            msg = "GET /api/tags answered without a model list"
            raise ProviderError(msg, provider=self.provider_name, model=self.model)
        names = {str(m.get("name") or m.get("model")) for m in models if isinstance(m, Mapping)}
        wanted = {self.model, f"{self.model}:latest"}
        if not names & wanted:
            msg = f"model {self.model!r} is not pulled on {self.host} (has: {sorted(names)[:10]})"
            raise ModelNotFoundGatewayError(msg, provider=self.provider_name, model=self.model, retryable=False)

    def _probe(self) -> None:
        """GET /api/tags; the server must answer and have the model pulled."""
        self._check_tags(self._request_json("GET", "/api/tags"))

    async def _aprobe(self) -> None:
        self._check_tags(await self._arequest_json("GET", "/api/tags"))


class _NDJSONAssembler:
    """Turns Ollama's NDJSON lines into LangChain chunks.

    Content (and thinking, and tool calls, which Ollama sends whole) go out as
    they arrive; the ``done`` line's counts and durations go into one closing
    chunk with ``chunk_position="last"``.
    """

    end_marker = "Ollama's final line (done: true)"

    def __init__(self, owner: OllamaChatModel, model: str) -> None:
        self.owner = owner
        self.model = model
        self.final: Mapping[str, Any] | None = None
        self.tool_index = 0

    @property
    def answered(self) -> bool:
        return self.final is not None

    @property
    def complete(self) -> bool:
        return self.final is not None

    def feed(self, line: str) -> Iterator[ChatGenerationChunk]:
        if not line.strip():
            return
        data = json.loads(line)
        if not isinstance(data, Mapping):
            msg = f"expected a JSON object per line, got {line[:100]!r}"
            raise TypeError(msg)
        if data.get("error"):
            raise ProviderError(f"stream error: {data['error']}", provider=self.owner.provider_name, model=self.model)
        message = data.get("message") or {}
        content = message.get("content") or ""
        additional: dict[str, Any] = {}
        if message.get("thinking"):
            additional["reasoning_content"] = message["thinking"]
        calls, invalid = parse_ollama_tool_calls(message.get("tool_calls"))
        chunks = []
        for call in calls:
            chunks.append(
                tool_call_chunk(name=call["name"], args=json.dumps(call["args"]), id=call["id"], index=self.tool_index)
            )
            self.tool_index += 1
        for bad in invalid:
            chunks.append(tool_call_chunk(name=bad["name"], args=bad["args"], id=bad["id"], index=self.tool_index))
            self.tool_index += 1
        if content or chunks or additional:
            yield ChatGenerationChunk(
                message=AIMessageChunk(content=content, tool_call_chunks=chunks, additional_kwargs=additional)
            )
        if data.get("done"):
            self.final = data

    def finish(self) -> ChatGenerationChunk:
        final = self.final or {}
        meta = self.owner._response_metadata(final.get("model") or self.model, **ollama_metadata(final))
        return ChatGenerationChunk(
            message=AIMessageChunk(
                content="",
                usage_metadata=usage_from_ollama(final),
                response_metadata=meta,
                chunk_position="last",
            ),
            generation_info={"finish_reason": final.get("done_reason")},
        )
