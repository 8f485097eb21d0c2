"""The request in one deployment's terms: its tools and structured output bound the deployment's own way.

Anything that goes wrong here is the input's fault (a schema no provider can
describe, a tool_choice naming no tool, a message type it cannot send): a
:class:`RequestPreparationError`, raised before the deployment is admitted, so it
never counts against a breaker.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol, runtime_checkable

from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import Runnable, RunnableBinding

from langchain_multigateway.chat_models._base import GatewayChatModel
from langchain_multigateway.chat_models._params import fit_params
from langchain_multigateway.routing.deployment import Deployment
from langchain_multigateway.routing.policy import RequestPreparationError, UnsupportedParameterError
from langchain_multigateway.routing.request import Request
from langchain_multigateway.routing.structured import json_schema_of, schema_name

__all__ = [
    "Prepared",
    "PreparedCache",
    "Preparations",
    "StructuredHooks",
    "input_error",
    "prepare",
    "refuse_unfit",
]

PreparedCache = dict[tuple[str, int], tuple[Any, dict[str, Any], "Prepared"]]
"""Bindings kept per (deployment, tools or schema object): binding tools is slow, calls repeat them."""

_NOTHING_DROPPED: Mapping[str, str] = MappingProxyType({})


class Preparations(PreparedCache):
    """A router's binding cache, with how it fits call parameters to each deployment."""

    def __init__(self, *, strict_params: bool = False) -> None:
        super().__init__()
        self.strict_params = strict_params
        """Refuse (``UnsupportedParameterError``) a parameter a deployment does not take, instead of dropping it."""


_CACHE_LIMIT = 256


@runtime_checkable
class StructuredHooks(Protocol):
    """The public hooks a model offers the router for structured output (``GatewayChatModel`` has them).

    A model without them is asked through its own ``with_structured_output`` / ``bind_tools``.
    """

    def forced_tool_choice(self, tool_name: str) -> Any: ...

    def structured_output_request(
        self, method: Any, json_schema: dict[str, Any] | None = None, *, strict: bool | None = None
    ) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class Prepared:
    """How to call one deployment for a request: its model and call kwargs,
    or a runnable when the model's binding is not a plain ``RunnableBinding``."""

    model: BaseChatModel
    kwargs: dict[str, Any]
    runnable: Runnable[Any, Any] | None = None
    raw_key: str | None = None
    dropped: Mapping[str, str] = field(default_factory=lambda: _NOTHING_DROPPED)
    """Call parameters this deployment's API does not take, left out (name → why)."""


def _refuse(dep: Deployment, exc: BaseException | str) -> RequestPreparationError:
    msg = f"could not build the request for deployment {dep.name!r}: {exc}"
    return RequestPreparationError(msg, provider=dep.provider, model=dep.model_name)


def input_error(dep: Deployment, exc: BaseException) -> RequestPreparationError | None:
    """``exc`` as the input error it is, when one of our providers raised it building the request.

    Our providers turn every failure of the provider (HTTP, malformed answers) into a
    ``GatewayError``; a plain ValueError/TypeError/UnicodeError escaping them comes from
    encoding the input. Another model's plain exception may be its transport failing,
    so it is left to the failover policy.
    """
    if isinstance(dep.model, GatewayChatModel) and type(exc) in (ValueError, TypeError, UnicodeEncodeError):
        error = _refuse(dep, exc)
        error.__cause__ = exc
        return error
    return None


def prepare(cache: PreparedCache, dep: Deployment, request: Request) -> Prepared:
    """``dep``'s model and kwargs for ``request`` (raises :class:`RequestPreparationError`)."""
    if request.unsendable is not None and isinstance(dep.model, GatewayChatModel):
        raise _refuse(dep, request.unsendable)
    kwargs, dropped = _fit(cache, dep, request.kwargs)
    if request.tools is None and request.structured is None:
        return Prepared(dep.model, kwargs, dropped=dropped)
    anchor: Any = request.structured if request.structured is not None else request.tools
    key = (dep.name, id(anchor))
    hit = cache.get(key)
    if hit is None or hit[0] is not anchor or hit[1] != request.tool_kwargs:
        if len(cache) > _CACHE_LIMIT:
            cache.clear()
        try:
            built = _bind(dep, request)
        except (ValueError, TypeError) as exc:
            # The input cannot be expressed: every deployment would fail alike.
            raise _refuse(dep, exc) from exc
        hit = cache[key] = (anchor, dict(request.tool_kwargs), built)
    bound = hit[2]
    return Prepared(bound.model, {**bound.kwargs, **kwargs}, bound.runnable, bound.raw_key, dropped)


def _fit(cache: PreparedCache, dep: Deployment, kwargs: dict[str, Any]) -> tuple[dict[str, Any], Mapping[str, str]]:
    """The call's kwargs in ``dep``'s terms (``chat_models._params``): translated, or dropped with the reason."""
    if not kwargs:
        return kwargs, _NOTHING_DROPPED
    if "model" in kwargs:  # a model= override chose this deployment (see eligibility): it serves its own model
        kwargs = {k: v for k, v in kwargs.items() if k != "model"}
    try:
        fitted, dropped = fit_params(dep.model, kwargs)
    except ValueError as exc:  # contradicting or unknown common values: the same at every deployment
        raise _refuse(dep, exc) from exc
    if not dropped:
        return fitted, _NOTHING_DROPPED
    if getattr(cache, "strict_params", False):
        raise UnsupportedParameterError(dep.name, dropped, provider=dep.provider, model=dep.model_name)
    return fitted, MappingProxyType(dropped)


def refuse_unfit(cache: PreparedCache, deployments: Sequence[Deployment], request: Request) -> None:
    """Under ``strict_params``: refuse the call before its first try when any deployment that may serve it
    would drop a parameter (not when the failover reaches that one, after others were tried)."""
    if not getattr(cache, "strict_params", False) or not request.kwargs:
        return
    for dep in deployments:
        _fit(cache, dep, request.kwargs)  # raises UnsupportedParameterError (each model's fit is remembered)


def _bind(dep: Deployment, request: Request) -> Prepared:
    """Bind the request's tools / structured output the deployment's own way."""
    model = dep.model
    kwargs: dict[str, Any] = {}
    spec = request.structured
    if spec is not None:
        schema, method, strict = spec.schema, spec.method, spec.strict
        hooks = _hooks(model)
        if method == "function_calling":
            name = schema_name(schema)
            extra: dict[str, Any] = {"tool_choice": hooks.forced_tool_choice(name) if hooks else name}
            if strict is not None:
                extra["strict"] = strict
            return _from_binding(model, model.bind_tools([schema], **extra), kwargs)
        if hooks is not None:
            described = {**json_schema_of(schema), "title": schema_name(schema)} if method == "json_schema" else None
            kwargs.update(hooks.structured_output_request(method, described, strict=strict))
            return Prepared(model, kwargs)
        runnable = model.with_structured_output(schema, method=method, include_raw=True, strict=strict)
        return Prepared(model, kwargs, runnable=runnable, raw_key="raw")
    if request.tools:
        return _from_binding(model, model.bind_tools(request.tools, **request.tool_kwargs), kwargs)
    return Prepared(model, kwargs)


def _hooks(model: BaseChatModel) -> StructuredHooks | None:
    """``model``'s structured-output hooks, if it offers them (a subclass may switch them off with None)."""
    if isinstance(model, StructuredHooks) and callable(model.structured_output_request):
        return model
    return None


def _from_binding(model: BaseChatModel, bound: Runnable[Any, Any], kwargs: dict[str, Any]) -> Prepared:
    if isinstance(bound, RunnableBinding) and bound.bound is model:
        return Prepared(model, {**bound.kwargs, **kwargs})
    return Prepared(model, kwargs, runnable=bound)
