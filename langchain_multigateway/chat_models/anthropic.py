"""AnthropicChatModel: Anthropic's Messages API over httpx, SSE streaming."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from langchain_core.language_models import LanguageModelInput
from langchain_core.language_models.model_profile import ModelProfile
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.tool import tool_call_chunk
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.utils import from_env, secret_from_env
from pydantic import BaseModel, Field, SecretStr

from langchain_multigateway.chat_models._anthropic_format import (
    ERROR_TYPE_STATUS,
    messages_to_anthropic,
    text_of,
    tool_choice_to_anthropic,
    tools_to_anthropic,
    usage_from_anthropic,
)
from langchain_multigateway.chat_models._base import StructuredOutputMethod
from langchain_multigateway.chat_models._exchange import Exchange
from langchain_multigateway.chat_models._http import HttpChatModel, SSEEvent
from langchain_multigateway.chat_models._openai_format import ToolChoice
from langchain_multigateway.errors import GatewayError, ProviderError, error_from_status

__all__ = ["AnthropicChatModel"]

DEFAULT_BASE_URL = "https://api.anthropic.com"
# json_mode without a schema: a forced tool whose input is any object.
_ANY_JSON_TOOL: dict[str, Any] = {
    "name": "json_output",
    "description": "Give the answer as a JSON object.",
    "parameters": {"type": "object", "additionalProperties": True},
}


class AnthropicChatModel(HttpChatModel):
    """Anthropic's Claude models through the Messages API (``POST /v1/messages``), no SDK needed.

    Setup:
        Set ``ANTHROPIC_API_KEY`` (and, for a proxy or gateway, ``ANTHROPIC_BASE_URL``):

        .. code-block:: bash

            export ANTHROPIC_API_KEY="sk-ant-..."

    Key init args — completion params:
        model: str
            Model name, e.g. ``"claude-haiku-4-5"`` (alias ``model_name``).
        max_tokens: int
            Cap on generated tokens; the API requires one, default 1024.
        temperature, top_p, top_k: optional sampling params (newer models take
            only one of temperature / top_p).
        stop: list[str] | None
            Stop sequences (sent as ``stop_sequences``).
        parallel_tool_calls: bool | None
            ``False`` allows one tool call per answer (``disable_parallel_tool_use``).
        thinking: dict | None
            Extended thinking, e.g. ``{"type": "enabled", "budget_tokens": 2048}``.
        model_kwargs: dict
            Any other request field (``metadata``, ``service_tier``...), sent as is.

    Key init args — client params:
        api_key: SecretStr | None
            Read from ``ANTHROPIC_API_KEY``; sent as ``x-api-key``, never logged.
        base_url: str
            ``ANTHROPIC_BASE_URL`` or ``https://api.anthropic.com``.
        anthropic_version: str
            The ``anthropic-version`` header, ``2023-06-01``.
        betas: list[str] | None
            Sent as ``anthropic-beta``.
        default_headers, timeout, max_retries, http_client, http_async_client:
            as for every HTTP provider of the gateway (one retry policy: ours). A client
            you pass is used as given; the ones created follow redirects and send
            ``x-api-key`` and other credential headers to the base URL's origin only.

    Instantiate:
        .. code-block:: python

            from langchain_multigateway.chat_models.anthropic import AnthropicChatModel

            llm = AnthropicChatModel(model="claude-haiku-4-5", temperature=0, max_tokens=1024)

    Invoke:
        .. code-block:: python

            llm.invoke([("system", "Answer in French."), ("human", "I love programming.")])
            # AIMessage(content="J'adore la programmation.", response_metadata={"model_name": "claude-...",
            #           "model_provider": "anthropic", "stop_reason": "end_turn", "id": "msg_..."})

        System messages, wherever they are, go to the top-level ``system``; tool
        results go as ``tool_result`` blocks in user turns; consecutive turns of one
        role are merged, as the API requires.

    Stream:
        .. code-block:: python

            for chunk in llm.stream("Tell me a joke"):
                print(chunk.content, end="")
            # text as it comes (server-sent events); the last chunk carries usage_metadata,
            # stop_reason and chunk_position="last". An ``error`` event mid-stream
            # (e.g. overloaded_error) raises the matching gateway error.

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

            llm_with_tools = llm.bind_tools([GetWeather], tool_choice="any", parallel_tool_calls=False)
            llm_with_tools.invoke("What's the weather in Paris?").tool_calls
            # [{"name": "GetWeather", "args": {"location": "Paris"}, "id": "toolu_01...", "type": "tool_call"}]

        ``tool_choice``: ``"auto"``, ``"any"`` (or ``"required"``), ``"none"``, a tool's
        name, or Anthropic's dict. Streamed tool arguments arrive as ``input_json_delta``
        fragments in ``tool_call_chunks``.

    Structured output:
        .. code-block:: python

            class Joke(BaseModel):
                setup: str
                punchline: str

            llm.with_structured_output(Joke).invoke("Tell me a joke about cats")
            llm.with_structured_output(Joke, include_raw=True)

        Always through a forced tool call (the Messages API's dependable route):
        ``method="function_calling"`` is the default; ``"json_schema"`` is served the
        same way, and ``"json_mode"`` without a schema forces a tool that takes any
        JSON object. (A forced tool is not allowed together with extended thinking.)

    Token usage:
        .. code-block:: python

            llm.invoke("Hello").usage_metadata
            # {"input_tokens": 2095, "output_tokens": 503, "total_tokens": 2598,
            #  "input_token_details": {"cache_read": 1800, "cache_creation": 0}}

        ``input_tokens`` is the total input: uncached + cache reads + cache writes
        (as langchain-anthropic reports it). ``get_num_tokens_from_messages`` is an
        offline approximation (tiktoken ``cl100k_base``; Claude's tokenizer is not
        public), good for budgeting, not for billing.

    Response metadata:
        ``model_name``, ``model_provider`` (``"anthropic"``), ``id``, ``stop_reason``
        (also as ``finish_reason``), ``stop_sequence``.
    """

    provider_name = "anthropic"
    chat_path = "/v1/messages"
    stream_framing = "sse"
    api_key_env = "ANTHROPIC_API_KEY"
    # Natively, only a forced tool call: the Messages API takes no response_format, so a router
    # must not send it one. with_structured_output still takes every method (see there).
    structured_output_methods = ("function_calling",)

    model: str = Field(default="claude-haiku-4-5", alias="model_name")
    api_key: SecretStr | None = Field(
        alias="anthropic_api_key", default_factory=secret_from_env("ANTHROPIC_API_KEY", default=None)
    )
    base_url: str = Field(
        alias="anthropic_api_url", default_factory=from_env("ANTHROPIC_BASE_URL", default=DEFAULT_BASE_URL)
    )
    anthropic_version: str = "2023-06-01"
    betas: list[str] | None = None
    max_tokens: int = Field(default=1024, alias="max_tokens_to_sample")
    top_p: float | None = None
    top_k: int | None = None
    thinking: dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    """``False``: at most one tool call per answer (sent as ``tool_choice.disable_parallel_tool_use``
    whenever tools are sent), as OpenAIChatModel's field of the same name. ``None`` leaves the API's default."""
    model_kwargs: dict[str, Any] = Field(default_factory=dict)

    def _resolve_model_profile(self) -> ModelProfile | None:
        # A shared profile table (if the base has one for this model) wins; else Claude's common limits.
        return super()._resolve_model_profile() or ModelProfile(
            max_input_tokens=200_000,
            tool_calling=True,
            tool_choice=True,
            structured_output=True,
            image_inputs=True,
            image_url_inputs=True,
        )

    # ------------------------------------------------------------------ http hooks
    def _api_base(self) -> str:
        base = (self.base_url or DEFAULT_BASE_URL).rstrip("/")
        return base.removesuffix("/v1")

    def _auth_headers(self) -> dict[str, str]:
        assert self.api_key is not None  # checked at construction
        headers = {"x-api-key": self.api_key.get_secret_value(), "anthropic-version": self.anthropic_version}
        if self.betas:
            headers["anthropic-beta"] = ",".join(self.betas)
        return headers

    # ------------------------------------------------------------------ requests
    def _build_request(
        self, messages: Sequence[BaseMessage], stop: list[str] | None, *, stream: bool, **kwargs: Any
    ) -> dict[str, Any]:
        system, turns = messages_to_anthropic(messages)
        payload: dict[str, Any] = {
            "model": self.model,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "top_k": self.top_k,
            "stop_sequences": stop or self.stop,
            "thinking": self.thinking,
            **self.model_kwargs,
        }
        if "stop" in kwargs:
            payload["stop_sequences"] = kwargs.pop("stop")
        kwargs.pop("ls_structured_output_format", None)
        parallel = kwargs.pop("parallel_tool_calls", self.parallel_tool_calls)  # not a Messages API field
        payload.update(kwargs)
        if parallel is False and payload.get("tools"):
            choice = dict(payload.get("tool_choice") or {"type": "auto"})
            if choice.get("type") != "none":
                choice.setdefault("disable_parallel_tool_use", True)
            payload["tool_choice"] = choice
        payload["messages"] = turns
        if system is not None:
            payload["system"] = system
        if stream:
            payload["stream"] = True
        return {k: v for k, v in payload.items() if v is not None}

    def _stream_assembler(self, exchange: Exchange) -> _SSEAssembler:
        thinking = exchange.payload.get("thinking")
        asked = isinstance(thinking, Mapping) and thinking.get("type") not in (None, "disabled")
        # With tools the answer may hold tool_use blocks: content goes out as blocks from the start,
        # so text and calls keep their order and LangChain's translator sees the calls.
        return _SSEAssembler(self, exchange.model, thinking=asked or bool(exchange.payload.get("tools")))

    def _parse_response(self, data: Any, exchange: Exchange) -> ChatResult:
        model = exchange.model
        if not isinstance(data, Mapping) or not isinstance(data.get("content"), list):
            msg = f"expected a message object with content blocks, got {str(data)[:200]!r}"
            raise ProviderError(msg, provider=self.provider_name, model=model, request_id=exchange.request_id)
        if data.get("type") == "error":
            raise self._event_error(data, model)
        blocks = data["content"]
        if not all(isinstance(b, Mapping) for b in blocks):
            msg = f"a content block is not an object: {str(blocks)[:200]!r}"
            raise TypeError(msg)
        tool_calls = [
            {"name": b.get("name"), "args": b.get("input") or {}, "id": b.get("id"), "type": "tool_call"}
            for b in blocks
            if b.get("type") == "tool_use"
        ]
        # Plain text unless the answer holds more than text (tool calls, thinking, citations...) or
        # standard blocks are asked for: then every block, tool_use included, as Anthropic sent it
        # (LangChain's Anthropic translator reads tool calls for content_blocks from those blocks).
        as_blocks = self.output_version == "v1" or any(b.get("type") != "text" for b in blocks)
        content: str | list[Any] = [dict(b) for b in blocks] if as_blocks else text_of(blocks)
        ai = AIMessage(
            content=content,
            tool_calls=tool_calls,
            usage_metadata=usage_from_anthropic(data.get("usage")),
            response_metadata=self._response_metadata(
                data.get("model") or model,
                id=data.get("id"),
                stop_reason=data.get("stop_reason"),
                finish_reason=data.get("stop_reason"),
                stop_sequence=data.get("stop_sequence"),
            ),
            id=data.get("id"),
        )
        return ChatResult(
            generations=[ChatGeneration(message=ai)], llm_output={"model_name": data.get("model") or model}
        )

    def _event_error(self, data: Mapping[str, Any], model: str | None) -> GatewayError:
        """An ``{"type": "error", "error": {...}}`` payload as a gateway error."""
        error = data.get("error") if isinstance(data.get("error"), Mapping) else {}
        assert isinstance(error, Mapping)
        kind = str(error.get("type") or "api_error")
        return error_from_status(
            ERROR_TYPE_STATUS.get(kind, 500),
            f"{kind}: {error.get('message') or 'stream error'}",
            provider=self.provider_name,
            model=model or self.model,
            request_id=data.get("request_id") if isinstance(data.get("request_id"), str) else None,
            body=dict(data),
        )

    # ------------------------------------------------------------------ tools & structured output
    def bind_tools(
        self,
        tools: Sequence[Any],
        *,
        tool_choice: ToolChoice = None,
        parallel_tool_calls: bool | None = None,
        strict: bool | None = None,
        **kwargs: Any,
    ) -> Runnable[Any, AIMessage]:
        """Bind tools (BaseTool, pydantic classes, functions, OpenAI or Anthropic dicts).

        Args:
            tools: The tools the model may call.
            tool_choice: ``"auto"``, ``"any"`` / ``"required"``, ``"none"``, a tool's name,
                ``True`` (the single tool), or an Anthropic tool_choice dict.
            parallel_tool_calls: ``False`` sends ``disable_parallel_tool_use``.
            strict: Accepted for interface parity; not sent.
        """
        formatted = tools_to_anthropic(tools)
        names = [str(t["name"]) for t in formatted if "name" in t]
        choice = tool_choice_to_anthropic(tool_choice, names, parallel_tool_calls=parallel_tool_calls)
        if choice is not None:
            kwargs["tool_choice"] = choice
        return super().bind(tools=formatted, **kwargs)

    def with_structured_output(
        self,
        schema: dict[str, Any] | type | None = None,
        *,
        method: StructuredOutputMethod = "function_calling",
        include_raw: bool = False,
        strict: bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, dict[str, Any] | BaseModel]:
        """Structured output through a forced tool call (see the class docstring).

        ``"json_schema"`` and ``"json_mode"`` are served by the same forced tool;
        ``"json_mode"`` without a schema forces a tool that takes any JSON object.
        """
        if method == "json_mode" and schema is None:
            schema = _ANY_JSON_TOOL
        if method in ("json_schema", "json_mode"):
            method = "function_calling"
        return super().with_structured_output(schema, method=method, include_raw=include_raw, strict=strict, **kwargs)

    # ------------------------------------------------------------------ health
    def _probe(self) -> None:
        """GET /v1/models: the key is valid and the API serves."""
        self._request_json("GET", "/v1/models?limit=1")

    async def _aprobe(self) -> None:
        await self._arequest_json("GET", "/v1/models?limit=1")


class _SSEAssembler:
    """Turns Messages API stream events into LangChain chunks.

    Text deltas and tool-call fragments (``input_json_delta``) go out as they
    arrive; one closing chunk carries usage (``message_start``'s input counts,
    ``message_delta``'s cumulative output), the model name and the stop reason.

    Extended thinking: ``thinking_delta`` and ``signature_delta`` (and whole
    ``redacted_thinking`` blocks) go out as content blocks carrying the event's block
    ``index``, and so do the text and ``tool_use`` blocks of such an answer (and of every
    answer under ``output_version="v1"``); adding the chunks up merges each
    block by its index (LangChain's chunk addition), so the aggregated message holds the
    signed thinking block exactly as a non-streamed answer does, ready to be sent back
    on the next turn of a tool loop as Anthropic requires.
    """

    end_marker = "message_stop"

    def __init__(self, owner: AnthropicChatModel, model: str, *, thinking: bool = False) -> None:
        self.owner = owner
        self.model = model
        self.message_id: str | None = None
        self.model_name: str | None = None
        self.usage: dict[str, Any] = {}
        self.stop_reason: str | None = None
        self.stop_sequence: str | None = None
        self.stopped = False
        # Content as indexed blocks (not plain text) when thinking or standard blocks
        # (output_version="v1") are asked for, or once thinking is seen.
        self.blocks = thinking or owner.output_version == "v1"

    @property
    def answered(self) -> bool:
        # message_delta's stop_reason ends the answer; message_stop only closes the stream.
        return self.stopped or self.stop_reason is not None

    @property
    def complete(self) -> bool:
        return self.stopped

    def feed(self, event: SSEEvent) -> Iterator[ChatGenerationChunk]:
        if not event.data:
            return
        data = json.loads(event.data)
        if not isinstance(data, Mapping):
            msg = f"expected a JSON object in the event, got {event.data[:100]!r}"
            raise TypeError(msg)
        kind = data.get("type") or event.event
        if kind == "error":
            raise self.owner._event_error(data, self.model)
        if kind == "message_start":
            message = data.get("message") or {}
            self.message_id = message.get("id")
            self.model_name = message.get("model")
            self.usage.update(message.get("usage") or {})
        elif kind == "content_block_start":
            yield from self._block_start(data.get("content_block") or {}, data.get("index"))
        elif kind == "content_block_delta":
            yield from self._block_delta(data.get("delta") or {}, data.get("index"))
        elif kind == "message_delta":
            delta = data.get("delta") or {}
            self.stop_reason = delta.get("stop_reason") or self.stop_reason
            self.stop_sequence = delta.get("stop_sequence") or self.stop_sequence
            # message_delta usage is cumulative; where it has a field it wins.
            self.usage.update({k: v for k, v in (data.get("usage") or {}).items() if v is not None})
        elif kind == "message_stop":
            self.stopped = True
        # ping, content_block_stop and unknown events carry nothing to emit.

    def _block_start(self, block: Mapping[str, Any], index: Any) -> Iterator[ChatGenerationChunk]:
        kind = block.get("type")
        if kind == "tool_use":
            start_args = block.get("input")
            args = json.dumps(start_args) if start_args else ""
            yield self._chunk(
                content=[{**block, "index": index}] if self.blocks else "",
                tool_call_chunks=[tool_call_chunk(name=block.get("name"), args=args, id=block.get("id"), index=index)],
            )
        elif kind in ("thinking", "redacted_thinking"):
            self.blocks = True
            yield self._chunk(content=[{**block, "index": index}])
        elif kind == "text" and block.get("text"):
            yield self._text(block["text"], index)

    def _block_delta(self, delta: Mapping[str, Any], index: Any) -> Iterator[ChatGenerationChunk]:
        kind = delta.get("type")
        if kind == "text_delta" and delta.get("text"):
            yield self._text(delta["text"], index)
        elif kind == "input_json_delta" and delta.get("partial_json"):
            yield self._chunk(
                content=[{**delta, "index": index}] if self.blocks else "",
                tool_call_chunks=[tool_call_chunk(args=delta["partial_json"], index=index)],
            )
        elif kind == "thinking_delta" and delta.get("thinking"):
            yield self._chunk(content=[{"type": "thinking", "thinking": delta["thinking"], "index": index}])
        elif kind == "signature_delta" and delta.get("signature"):
            yield self._chunk(content=[{"type": "thinking", "signature": delta["signature"], "index": index}])

    def _text(self, text: str, index: Any) -> ChatGenerationChunk:
        if self.blocks:
            return self._chunk(content=[{"type": "text", "text": text, "index": index}])
        return self._chunk(content=text)

    def _chunk(self, content: str | list[Any] = "", **kwargs: Any) -> ChatGenerationChunk:
        # Every chunk names its provider: LangChain picks the content-block translator per
        # chunk (output_version="v1" converts each one), and equal values merge as one.
        meta = {"model_provider": self.owner.provider_name}
        return ChatGenerationChunk(
            message=AIMessageChunk(content=content, id=self.message_id, response_metadata=meta, **kwargs)
        )

    def finish(self) -> ChatGenerationChunk:
        meta = self.owner._response_metadata(
            self.model_name or self.model,
            id=self.message_id,
            stop_reason=self.stop_reason,
            finish_reason=self.stop_reason,
            stop_sequence=self.stop_sequence,
        )
        return ChatGenerationChunk(
            message=AIMessageChunk(
                content=[] if self.blocks else "",
                usage_metadata=usage_from_anthropic(self.usage),
                response_metadata=meta,
                id=self.message_id,
                chunk_position="last",
            ),
            generation_info={"finish_reason": self.stop_reason},
        )
