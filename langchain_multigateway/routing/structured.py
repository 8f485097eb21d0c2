"""Structured output that works whatever the model answered with: a tool call or JSON text.

The router serves one structured-output request from deployments that may each
use their own mechanism (a forced tool call, a JSON-schema response format, JSON
mode), so the parser at the end reads either shape.
"""

from __future__ import annotations

import json
from operator import itemgetter
from typing import Any, Literal, TypeGuard

from langchain_core.exceptions import OutputParserException
from langchain_core.language_models import LanguageModelInput
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.output_parsers import BaseOutputParser
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult, Generation
from langchain_core.runnables import Runnable, RunnableMap, RunnablePassthrough
from langchain_core.utils.function_calling import convert_to_json_schema, convert_to_openai_tool
from langchain_core.utils.json import parse_json_markdown
from langchain_core.utils.pydantic import is_basemodel_subclass
from pydantic import BaseModel

from langchain_multigateway.chat_models._refusal import raise_if_refused, refusal_of

__all__ = [
    "RefusalWatch",
    "StructuredMethod",
    "StructuredOutputParser",
    "check_refusal",
    "refusal_watch",
    "StructuredSpec",
    "schema_name",
    "with_raw",
]

StructuredMethod = Literal["json_schema", "function_calling", "json_mode"]
STRUCTURED_METHODS: tuple[StructuredMethod, ...] = ("json_schema", "function_calling", "json_mode")


class StructuredSpec(dict[str, Any]):
    """What a structured-output binding asks for: ``schema``, ``method`` and ``strict``.

    A dict subclass, so it travels as a call kwarg (and prints in cache keys).
    """

    @property
    def schema(self) -> Any:
        return self.get("schema")

    @property
    def method(self) -> StructuredMethod:
        method: StructuredMethod = self.get("method", "json_schema")
        return method

    @property
    def strict(self) -> bool | None:
        strict: bool | None = self.get("strict")
        return strict


def schema_name(schema: Any) -> str:
    """The function / schema name a provider sees for ``schema``."""
    if schema is None:
        return "response"
    try:
        return str(convert_to_openai_tool(schema)["function"]["name"])
    except Exception:
        return str(convert_to_json_schema(schema).get("title") or "response")


def json_schema_of(schema: Any) -> dict[str, Any]:
    """JSON schema of ``schema`` without its title (the title names it instead)."""
    converted = convert_to_json_schema(schema)
    return {k: v for k, v in converted.items() if k != "title"}


class StructuredOutputParser(BaseOutputParser[Any]):
    """Parse the first tool call's arguments, or else the JSON in the text.

    With a pydantic schema the result is validated into an instance of it.
    """

    target_schema: Any = None

    @property
    def _type(self) -> str:
        return "multigateway_structured"

    def parse_result(self, result: list[Generation], *, partial: bool = False) -> Any:
        generation = result[0]
        message = generation.message if isinstance(generation, ChatGeneration) else None
        raise_if_refused(message)  # the model declined: ModelRefusalError with the raw message, not a parse error
        data: Any
        if isinstance(message, AIMessage) and message.tool_calls:
            data = message.tool_calls[0]["args"]
        else:
            text = message.text if isinstance(message, BaseMessage) else generation.text
            data = self._parse_text(text)
        return self._validate(data)

    def parse(self, text: str) -> Any:
        return self._validate(self._parse_text(text))

    def _parse_text(self, text: str) -> Any:
        try:
            return parse_json_markdown(text)
        except (json.JSONDecodeError, ValueError) as exc:
            msg = f"Expected JSON or a tool call in the model's answer, got: {text[:200]!r}"
            raise OutputParserException(msg, llm_output=text) from exc

    def _validate(self, data: Any) -> Any:
        schema = self.target_schema
        if is_pydantic_schema(schema):
            try:
                return schema.model_validate(data)
            except Exception as exc:
                msg = f"Answer does not match {schema.__name__}: {exc}"
                raise OutputParserException(msg, llm_output=json.dumps(data, default=str)) from exc
        return data


def check_refusal(structured: StructuredSpec | None, result: ChatResult) -> None:
    """Raise ``ModelRefusalError`` when a deployment declined the structured output it was asked for.

    Called on each served try, so the failover policy sees the refusal (``content_policy``:
    ``"raise"`` stops there, ``"next"`` asks another deployment).
    """
    if structured is not None and result.generations:
        raise_if_refused(result.generations[0].message)


class RefusalWatch:
    """A structured-output stream's chunks, held while they carry nothing of the answer.

    A refusal comes first (OpenAI's ``delta.refusal`` pieces, a Responses ``refusal``
    block) or as the only thing (Anthropic's ``stop_reason: "refusal"`` on an empty
    answer), so holding the chunks until the first text or tool-call piece lets the try
    raise ``ModelRefusalError`` before anything reached the caller: the failover policy
    then decides it as for a non-streamed try. A refusal after some of the answer was
    passed on cannot be routed around (the caller has it); the parser raises it at the end.
    """

    __slots__ = ("held", "opened")

    def __init__(self) -> None:
        self.held: list[ChatGenerationChunk] = []
        self.opened = False

    def take(self, chunk: ChatGenerationChunk) -> list[ChatGenerationChunk]:
        """The chunks to pass on now (none while only non-answer pieces have come)."""
        if self.opened:
            return [chunk]
        self.held.append(chunk)
        message = chunk.message
        if not chunk.text and not getattr(message, "tool_call_chunks", None):
            return []
        self._check()
        self.opened = True
        return self._release()

    def end(self) -> list[ChatGenerationChunk]:
        """The stream ended: raise a refusal it held, else pass on what is left."""
        if not self.opened:
            self._check()
        return self._release()

    def _check(self) -> None:
        # Merged only when some chunk says refusal: a long reasoning preamble is not added up for nothing.
        if any(refusal_of(chunk.message) is not None for chunk in self.held):
            merged = self.held[0]
            for chunk in self.held[1:]:
                merged = merged + chunk
            raise_if_refused(merged.message)

    def _release(self) -> list[ChatGenerationChunk]:
        out, self.held = self.held, []
        return out


def refusal_watch(structured: StructuredSpec | None) -> RefusalWatch | None:
    """A watch for a structured-output stream's refusal; None for any other stream (passed on as it comes)."""
    return None if structured is None else RefusalWatch()


def with_raw(
    llm: Runnable[LanguageModelInput, BaseMessage], parser: Runnable[Any, Any], include_raw: bool
) -> Runnable[LanguageModelInput, Any]:
    """``llm | parser``, or the ``{"raw", "parsed", "parsing_error"}`` shape when ``include_raw``."""
    if not include_raw:
        return llm | parser
    parse = RunnablePassthrough.assign(parsed=itemgetter("raw") | parser, parsing_error=lambda _: None)
    fallback = RunnablePassthrough.assign(parsed=lambda _: None)
    return RunnableMap(raw=llm) | parse.with_fallbacks([fallback], exception_key="parsing_error")


def output_format(schema: Any, method: str, strict: bool | None) -> dict[str, Any] | None:
    """The ``ls_structured_output_format`` LangChain traces carry."""
    if schema is None:
        return None
    return {"kwargs": {"method": method, "strict": strict}, "schema": schema}


def is_pydantic_schema(schema: Any) -> TypeGuard[type[BaseModel]]:
    """Whether ``schema`` is a pydantic v2 model class."""
    return isinstance(schema, type) and is_basemodel_subclass(schema) and issubclass(schema, BaseModel)
