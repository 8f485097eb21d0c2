"""ScriptedChatModel: a chat model whose replies are scripted, for tests and demos.

It talks to no provider. Each call takes the next step of its script: a text
reply, an ``AIMessage`` (tool calls included), an exception to raise, or a
:class:`Step` with latency, usage, explicit stream chunks or a failure part-way
through a stream. It records every call it received, so tests can assert on
what a router (or a chain) sent it.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LangSmithParams, LanguageModelInput
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.messages.tool import tool_call_chunk
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import ConfigDict, Field, PrivateAttr

from langchain_multigateway._ls_params import langsmith_params
from langchain_multigateway.routing.structured import (
    STRUCTURED_METHODS,
    StructuredMethod,
    StructuredOutputParser,
    json_schema_of,
    output_format,
    schema_name,
    with_raw,
)

__all__ = ["ScriptedCall", "ScriptedChatModel", "Step"]

_PIECES = re.compile(r"\S+\s*|\s+")


@dataclass(frozen=True)
class Step:
    """One scripted answer.

    Attributes:
        reply: The answer: text, or an ``AIMessage`` (e.g. with ``tool_calls``).
        error: Raised instead of answering; when streaming with ``fail_after``,
            raised after that many chunks were sent.
        latency: Seconds to wait before answering (before the first chunk).
        chunk_delay: Seconds to wait between streamed chunks.
        usage: Token usage to report; counted from the text when not given.
        chunks: Explicit stream pieces (their join should be the reply);
            ``[]`` streams no content at all (a valid, empty answer).
        fail_after: Stream this many chunks, then raise ``error``.
        model_name: The model name to report; the model's own when not given.
    """

    reply: str | AIMessage | None = None
    error: BaseException | None = None
    latency: float = 0.0
    chunk_delay: float = 0.0
    usage: UsageMetadata | None = None
    chunks: Sequence[str] | None = None
    fail_after: int | None = None
    model_name: str | None = None


@dataclass
class ScriptedCall:
    """What one call to the scripted model received."""

    messages: list[BaseMessage]
    kwargs: dict[str, Any]
    stream: bool
    step_index: int
    started_at: float = field(default_factory=time.monotonic)


def as_step(item: Any) -> Step:
    """A script entry as a :class:`Step`."""
    if isinstance(item, Step):
        return item
    if isinstance(item, (str, AIMessage)):
        return Step(reply=item)
    if isinstance(item, BaseException):
        return Step(error=item)
    msg = f"A script step must be a str, an AIMessage, an exception or a Step, not {type(item).__name__}"
    raise TypeError(msg)


def _estimate(text: str) -> int:
    return max(1, math.ceil(len(text) / 4)) if text else 0


class ScriptedChatModel(BaseChatModel):
    """A chat model that answers from a script, for tests and demos (no provider behind it).

    Setup:
        Nothing to install or configure: it is part of ``langchain-multigateway``.

    Key init args:
        steps: list
            The script: one entry per call, each a ``str`` reply, an ``AIMessage``,
            an exception instance to raise, or a :class:`Step`.
        exhausted: ``"default"`` | ``"cycle"`` | ``"raise"``
            What happens after the last step: answer ``default_reply``, start the
            script over, or raise ``IndexError``.
        default_reply: str
            The answer when there is no step to take.
        model: str
            The model name reported in ``response_metadata`` (alias ``model_name``).

    Instantiate:
        .. code-block:: python

            from langchain_multigateway.errors import RateLimitError
            from langchain_multigateway.testing import ScriptedChatModel, Step

            llm = ScriptedChatModel(steps=[
                RateLimitError("slow down", retry_after=1.0),
                Step(reply="Hello!", latency=0.05, usage={"input_tokens": 5, "output_tokens": 2, "total_tokens": 7}),
            ])

    Invoke:
        .. code-block:: python

            llm.invoke("hi")          # raises RateLimitError (step 1)
            llm.invoke("hi").content  # "Hello!" (step 2)
            llm.calls[-1].messages    # what it received

    Stream:
        .. code-block:: python

            llm = ScriptedChatModel(steps=[Step(reply="a b c", chunks=["a ", "b ", "c"])])
            [c.content for c in llm.stream("hi")]  # ["a ", "b ", "c", ""] (last carries usage)

    Async:
        .. code-block:: python

            await llm.ainvoke("hi")  # latency is an asyncio.sleep here

    Tool calling:
        .. code-block:: python

            llm = ScriptedChatModel(steps=[AIMessage("", tool_calls=[{"name": "add", "args": {"a": 1}, "id": "1"}])])
            llm.bind_tools([add]).invoke("1 + 2?").tool_calls

    Structured output:
        .. code-block:: python

            llm = ScriptedChatModel(steps=['{"setup": "...", "punchline": "..."}'])
            llm.with_structured_output(Joke).invoke("joke")  # Joke(...)
            # with method="function_calling" the JSON text becomes a call of the forced tool

    Token usage:
        .. code-block:: python

            llm.invoke("hi").usage_metadata  # the Step's usage, or counted from the text
    """

    model_config = ConfigDict(populate_by_name=True, arbitrary_types_allowed=True, protected_namespaces=())

    model: str = Field(default="scripted-model", alias="model_name")
    steps: list[Any] = Field(default_factory=list)
    exhausted: Literal["default", "cycle", "raise"] = "default"
    default_reply: str = "Hello from the scripted model."
    model_provider: str = "scripted"
    temperature: float | None = None
    max_tokens: int | None = None
    stop: list[str] | None = Field(default=None, alias="stop_sequences")
    timeout: float | None = None
    max_retries: int = 0
    streaming: bool = False

    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    _next: int = PrivateAttr(default=0)
    _calls: list[ScriptedCall] = PrivateAttr(default_factory=list)

    # ------------------------------------------------------------------ identity
    @property
    def _llm_type(self) -> str:
        return "scripted-chat-model"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model": self.model, "provider": self.model_provider}

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        return langsmith_params(
            self.model_provider,
            self.model,
            temperature=self.temperature,
            max_tokens=self.max_tokens,
            stop=stop or self.stop,
            call_kwargs=kwargs,
        )

    # ------------------------------------------------------------------ script
    @property
    def calls(self) -> list[ScriptedCall]:
        """Every call received so far, oldest first."""
        with self._lock:
            return list(self._calls)

    @property
    def call_count(self) -> int:
        with self._lock:
            return len(self._calls)

    def reset(self, steps: Sequence[Any] | None = None) -> None:
        """Start the script over (with new ``steps`` if given) and forget recorded calls."""
        with self._lock:
            if steps is not None:
                self.steps = list(steps)
            self._next = 0
            self._calls.clear()

    def _take(self, messages: list[BaseMessage], kwargs: dict[str, Any], stream: bool) -> tuple[Step, int]:
        with self._lock:
            index = self._next
            self._next += 1
            self._calls.append(ScriptedCall(list(messages), dict(kwargs), stream, index))
            count = len(self.steps)
        if index < count:
            return as_step(self.steps[index]), index
        if self.exhausted == "cycle" and count:
            return as_step(self.steps[index % count]), index
        if self.exhausted == "raise":
            msg = f"ScriptedChatModel {self.model!r} ran out of steps (call {index + 1}, {count} scripted)"
            raise IndexError(msg)
        return Step(reply=self.default_reply), index

    # ------------------------------------------------------------------ answers
    def _message(self, step: Step, messages: list[BaseMessage], kwargs: dict[str, Any], index: int) -> AIMessage:
        reply = step.reply if step.reply is not None else ""
        base = reply if isinstance(reply, AIMessage) else AIMessage(content=reply)
        tool_calls = list(base.tool_calls)
        forced = _forced_tool(kwargs)
        if forced and not tool_calls and base.text.strip():
            try:
                args = json.loads(base.text)
            except ValueError:
                args = None
            if isinstance(args, dict):
                tool_calls = [{"name": forced, "args": args, "id": f"call_scripted_{index}", "type": "tool_call"}]
                base = AIMessage(content="")
        usage = step.usage or self._usage(messages, base.text, tool_calls)
        meta = {
            **base.response_metadata,
            "model_name": step.model_name or self.model,
            "model_provider": self.model_provider,
            "finish_reason": "tool_calls" if tool_calls else "stop",
        }
        return AIMessage(
            content=base.content,
            tool_calls=tool_calls,
            additional_kwargs=base.additional_kwargs,
            usage_metadata=usage,
            response_metadata=meta,
            id=base.id or f"scripted-{index}",
        )

    def _usage(self, messages: list[BaseMessage], text: str, tool_calls: list[Any]) -> UsageMetadata:
        prompt = sum(_estimate(m.text) + 3 for m in messages) + 3
        output = _estimate(text) + sum(_estimate(json.dumps(c["args"])) + 1 for c in tool_calls)
        return UsageMetadata(input_tokens=prompt, output_tokens=output, total_tokens=prompt + output)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        step, index = self._take(messages, kwargs, stream=False)
        if step.latency:
            time.sleep(step.latency)
        if step.error is not None:
            raise step.error
        return ChatResult(generations=[ChatGeneration(message=self._message(step, messages, kwargs, index))])

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        step, index = self._take(messages, kwargs, stream=False)
        if step.latency:
            await asyncio.sleep(step.latency)
        if step.error is not None:
            raise step.error
        return ChatResult(generations=[ChatGeneration(message=self._message(step, messages, kwargs, index))])

    def _chunks(self, step: Step, messages: list[BaseMessage], kwargs: dict[str, Any], index: int) -> list[Any]:
        """The chunks of a streamed answer; an exception in the list is raised at that point."""
        message = self._message(step, messages, kwargs, index)
        pieces = list(step.chunks) if step.chunks is not None else _PIECES.findall(message.text)
        chunks: list[Any] = [ChatGenerationChunk(message=AIMessageChunk(content=p, id=message.id)) for p in pieces]
        if message.tool_calls:
            calls = [
                tool_call_chunk(name=c["name"], args=json.dumps(c["args"]), id=c["id"], index=i)
                for i, c in enumerate(message.tool_calls)
            ]
            chunks.append(
                ChatGenerationChunk(message=AIMessageChunk(content="", tool_call_chunks=calls, id=message.id))
            )
        last = AIMessageChunk(
            content="",
            usage_metadata=message.usage_metadata,
            response_metadata=message.response_metadata,
            id=message.id,
            chunk_position="last",
        )
        chunks.append(ChatGenerationChunk(message=last))
        if step.error is not None:
            chunks.insert(min(step.fail_after or 0, len(chunks)), step.error)
        return chunks

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        step, index = self._take(messages, kwargs, stream=True)
        if step.latency:
            time.sleep(step.latency)
        for position, item in enumerate(self._chunks(step, messages, kwargs, index)):
            if isinstance(item, BaseException):
                raise item
            if position and step.chunk_delay:
                time.sleep(step.chunk_delay)
            yield item

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        step, index = self._take(messages, kwargs, stream=True)
        if step.latency:
            await asyncio.sleep(step.latency)
        for position, item in enumerate(self._chunks(step, messages, kwargs, index)):
            if isinstance(item, BaseException):
                raise item
            if position and step.chunk_delay:
                await asyncio.sleep(step.chunk_delay)
            yield item

    # ------------------------------------------------------------------ tools & structured output
    def bind_tools(
        self,
        tools: Sequence[Any],
        *,
        tool_choice: str | bool | dict[str, Any] | None = None,
        strict: bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools; they are recorded with each call (the script decides the answer)."""
        formatted = [convert_to_openai_tool(t, strict=strict) for t in tools]
        if tool_choice is not None:
            if tool_choice is True and len(formatted) == 1:
                tool_choice = formatted[0]["function"]["name"]
            kwargs["tool_choice"] = tool_choice
        return self.bind(tools=formatted, **kwargs)

    def _json_schema_request(self, schema: dict[str, Any], name: str, strict: bool | None) -> dict[str, Any]:
        spec: dict[str, Any] = {"name": name, "schema": schema}
        if strict is not None:
            spec["strict"] = strict
        return {"response_format": {"type": "json_schema", "json_schema": spec}}

    def _json_mode_request(self) -> dict[str, Any]:
        return {"response_format": {"type": "json_object"}}

    def _forced_tool_choice(self, tool_name: str) -> Any:
        return tool_name

    # The public hooks a router reads (the same as GatewayChatModel's).
    def forced_tool_choice(self, tool_name: str) -> Any:
        """The ``tool_choice`` that forces the one bound tool ``tool_name``."""
        return self._forced_tool_choice(tool_name)

    def structured_output_request(
        self, method: StructuredMethod, json_schema: dict[str, Any] | None = None, *, strict: bool | None = None
    ) -> dict[str, Any]:
        """Call kwargs asking for JSON that follows ``json_schema`` (``"json_schema"``) or any object."""
        if method == "json_mode":
            return self._json_mode_request()
        if method != "json_schema" or json_schema is None:
            msg = f"structured_output_request takes 'json_schema' (with a schema) or 'json_mode', not {method!r}"
            raise ValueError(msg)
        name = str(json_schema.get("title") or "response")
        return self._json_schema_request({k: v for k, v in json_schema.items() if k != "title"}, name, strict)

    structured_output_methods: ClassVar[tuple[StructuredMethod, ...]] = STRUCTURED_METHODS

    def with_structured_output(
        self,
        schema: dict[str, Any] | type | None = None,
        *,
        method: StructuredMethod = "json_schema",
        include_raw: bool = False,
        strict: bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, Any]:
        """Structured output from the scripted content.

        ``json_schema`` / ``json_mode`` parse the scripted text as JSON;
        ``function_calling`` turns scripted JSON text into a call of the forced
        tool (or uses the scripted tool calls as they are).
        """
        if kwargs:
            msg = f"Unexpected keyword arguments to with_structured_output: {sorted(kwargs)}"
            raise ValueError(msg)
        if method not in STRUCTURED_METHODS:
            msg = f"method must be one of {list(STRUCTURED_METHODS)}, not {method!r}"
            raise ValueError(msg)
        if schema is None and method != "json_mode":
            msg = f"schema is required for method={method!r}"
            raise ValueError(msg)
        fmt = output_format(schema, method, strict)
        llm: Runnable[LanguageModelInput, BaseMessage]
        if method == "function_calling":
            name = schema_name(schema)
            llm = self.bind_tools([schema], tool_choice=name, strict=strict, ls_structured_output_format=fmt)
        elif method == "json_schema":
            params = self._json_schema_request(json_schema_of(schema), schema_name(schema), strict)
            llm = self.bind(ls_structured_output_format=fmt, **params)
        else:
            llm = self.bind(ls_structured_output_format=fmt, **self._json_mode_request())
        return with_raw(llm, StructuredOutputParser(target_schema=schema), include_raw)


def _forced_tool(kwargs: dict[str, Any]) -> str | None:
    """The name of the one tool ``tool_choice`` forces, if it forces one."""
    choice = kwargs.get("tool_choice")
    tools = kwargs.get("tools") or []
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name") or choice.get("name")
        return str(name) if name else None
    if isinstance(choice, str) and choice not in ("auto", "none", "any", "required"):
        return choice
    if choice in ("any", "required", True) and len(tools) == 1:
        return str(tools[0]["function"]["name"])
    return None
