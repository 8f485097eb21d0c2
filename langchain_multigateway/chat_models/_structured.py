"""Structured output for the gateway's provider models: the runnable ``with_structured_output`` returns.

The provider decides how it is asked for (its ``structured_output_request`` and
``forced_tool_choice``, read through ``GatewayChatModel.capabilities``); this module
binds that request and picks the parser.
"""

from __future__ import annotations

from dataclasses import dataclass
from operator import itemgetter
from typing import TYPE_CHECKING, Any, Literal

from langchain_core.language_models import LanguageModelInput
from langchain_core.messages import BaseMessage
from langchain_core.output_parsers import JsonOutputKeyToolsParser, JsonOutputParser, PydanticOutputParser
from langchain_core.output_parsers.base import OutputParserLike
from langchain_core.output_parsers.openai_tools import PydanticToolsParser
from langchain_core.runnables import Runnable, RunnableLambda, RunnableMap, RunnablePassthrough
from langchain_core.utils.function_calling import convert_to_json_schema, convert_to_openai_tool
from langchain_core.utils.pydantic import is_basemodel_subclass
from pydantic import BaseModel

from langchain_multigateway.chat_models._refusal import raise_if_refused

if TYPE_CHECKING:
    from langchain_multigateway.chat_models._base import GatewayChatModel

__all__ = ["ProviderCapabilities", "StructuredOutputMethod", "response_format_request", "structured_runnable"]

StructuredOutputMethod = Literal["function_calling", "json_schema", "json_mode"]


@dataclass(frozen=True)
class ProviderCapabilities:
    """What a provider model can be asked for, read by the router (and anyone else) without guessing.

    Attributes:
        structured_output_methods: The ``with_structured_output`` methods it serves natively.
        tool_choice: Whether a call can force a tool (``"any"`` or a tool's name).
    """

    structured_output_methods: tuple[StructuredOutputMethod, ...]
    tool_choice: bool


def structured_runnable(
    model: GatewayChatModel,
    schema: dict[str, Any] | type | None,
    *,
    method: StructuredOutputMethod,
    include_raw: bool,
    strict: bool | None,
) -> Runnable[LanguageModelInput, dict[str, Any] | BaseModel]:
    """``model`` bound to answer in ``schema``'s shape, with the matching parser."""
    methods = model.capabilities.structured_output_methods
    if method not in methods:
        msg = f"{type(model).__name__} does not support method={method!r}; choose one of {list(methods)}"
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
        llm = model.bind_tools(
            [tool_schema],
            tool_choice=model.forced_tool_choice(tool_name),
            strict=strict,
            ls_structured_output_format=output_format,
        )
        if is_pydantic:
            parser = PydanticToolsParser(tools=[tool_schema], first_tool_only=True)
        else:
            parser = JsonOutputKeyToolsParser(key_name=tool_name, first_tool_only=True)
    else:
        json_schema = convert_to_json_schema(tool_schema) if method == "json_schema" else None
        params = model.structured_output_request(method, json_schema, strict=strict)
        llm = model.bind(ls_structured_output_format=output_format if schema is not None else None, **params)
        parser = PydanticOutputParser(pydantic_object=tool_schema) if is_pydantic else JsonOutputParser()
    checked = RunnableLambda(raise_if_refused) | parser  # a refusal is ModelRefusalError, not a parsing error
    if not include_raw:
        return llm | checked
    parse = RunnablePassthrough.assign(parsed=itemgetter("raw") | checked, parsing_error=lambda _: None)
    fallback = RunnablePassthrough.assign(parsed=lambda _: None)
    with_fallback = parse.with_fallbacks([fallback], exception_key="parsing_error")
    return RunnableMap(raw=llm) | with_fallback


def response_format_request(
    method: StructuredOutputMethod, json_schema: dict[str, Any] | None, *, strict: bool | None
) -> dict[str, Any]:
    """OpenAI-style ``response_format`` call kwargs: a JSON schema, or any JSON object."""
    if method == "json_mode":
        return {"response_format": {"type": "json_object"}}
    if method != "json_schema" or json_schema is None:
        msg = f"structured_output_request takes 'json_schema' (with a schema) or 'json_mode', not {method!r}"
        raise ValueError(msg)
    name = str(json_schema.get("title") or "response")
    spec: dict[str, Any] = {"name": name, "schema": {k: v for k, v in json_schema.items() if k != "title"}}
    if strict is not None:
        spec["strict"] = strict
    return {"response_format": {"type": "json_schema", "json_schema": spec}}
