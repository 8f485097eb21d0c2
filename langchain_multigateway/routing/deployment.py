"""Deployment: one chat model plus what the router knows of it."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Self, TypeVar

from langchain_core.language_models import BaseChatModel
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from langchain_multigateway._redact import register_model
from langchain_multigateway._retry import RetryPolicy

__all__ = ["DEFAULT_DEPLOYMENT_RETRY", "Capabilities", "Deployment", "deployments_from", "init_model"]

logger = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_DEPLOYMENT_RETRY = RetryPolicy(max_attempts=2, initial_delay=0.05, max_delay=1.0, deadline=30.0)
"""The router's retry of one deployment before it moves on: one retry, short backoff."""


class Capabilities(BaseModel):
    """What a deployment can do; ``None`` means unknown (and is not held against it)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tools: bool | None = None
    json_schema: bool | None = None
    json_mode: bool | None = None
    images: bool | None = None
    continue_prefix: bool | None = None
    """Continues a trailing assistant message instead of answering anew (Mistral's ``prefix: true``,
    llama.cpp, older Claude models). Only ``True`` counts: a stream cut mid-answer is resumed
    only on a deployment that declares it (recent Claude models and OpenAI's API reject a prefill)."""


def _profile(model: BaseChatModel) -> dict[str, Any]:
    profile = getattr(model, "profile", None)
    return dict(profile) if isinstance(profile, dict) else {}


def _overrides(model: BaseChatModel, method: str) -> bool:
    return getattr(type(model), method, None) is not getattr(BaseChatModel, method, None)


def infer_capabilities(model: BaseChatModel) -> Capabilities:
    """Capabilities read from the model's ``profile``, else from its class."""
    profile = _profile(model)
    tools = profile.get("tool_calling")
    if tools is None:
        tools = True if _overrides(model, "bind_tools") else None
    methods = getattr(model, "structured_output_methods", None)
    json_schema = profile.get("structured_output")
    json_mode: bool | None = None
    if isinstance(methods, (tuple, list)):
        json_schema = "json_schema" in methods if json_schema is None else json_schema
        json_mode = "json_mode" in methods
    return Capabilities(tools=tools, json_schema=json_schema, json_mode=json_mode, images=profile.get("image_inputs"))


class SingleShot(RetryPolicy):
    """A retry policy that just calls: one try, no retry machinery on the hot path."""

    def call(self, fn: Callable[[], T]) -> T:
        return fn()

    async def acall(self, fn: Callable[[], Awaitable[T]]) -> T:
        return await fn()


SINGLE_SHOT = SingleShot(max_attempts=1)


def single_shot(model: BaseChatModel) -> BaseChatModel:
    """A copy of ``model`` whose own retries are off, so the router's policy is the only loop."""
    fields = type(model).model_fields
    if "retry_policy" in fields and "max_retries" in fields:
        return model.model_copy(update={"max_retries": 0, "retry_policy": SINGLE_SHOT})
    if "max_retries" in fields and getattr(model, "max_retries", None):
        try:
            data = {name: getattr(model, name) for name in model.model_fields_set}
            data["max_retries"] = 0
            return type(model).model_validate(data)
        except Exception:  # pragma: no cover - depends on third-party validators
            logger.warning("Could not switch off %s's own retries; they will run inside the router's", model)
    return model


class Deployment(BaseModel):
    """One chat model the router may send a request to, and its routing facts.

    Any ``BaseChatModel`` works. Unstated capabilities and the context window are
    read from the model's ``profile`` (or its class) at construction.

    Example:
        .. code-block:: python

            Deployment(
                model=OpenAIChatModel(model="gpt-4o-mini"),
                name="openai-mini",
                rpm=500, tpm=200_000,
                input_price=0.15, output_price=0.60,   # USD per million tokens
                quality=0.7, tags=["cheap"],
            )
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid", protected_namespaces=())

    model: BaseChatModel
    name: str = ""
    """Unique name; ``"<provider>:<model>"`` when not given."""
    weight: float = Field(default=1.0, ge=0)
    priority: int = 0
    """Lower goes first for the ``ordered`` strategy (and breaks ties for others)."""
    rpm: int | None = Field(default=None, ge=0)
    tpm: int | None = Field(default=None, ge=0)
    input_price: float = Field(default=0.0, ge=0)
    """USD per million input tokens."""
    output_price: float = Field(default=0.0, ge=0)
    """USD per million output tokens."""
    quality: float = 0.5
    capabilities: Capabilities = Field(default_factory=Capabilities)
    context_window: int | None = Field(default=None, gt=0)
    max_output_tokens: int | None = Field(default=None, gt=0)
    tags: list[str] = Field(default_factory=list)
    max_concurrency: int | None = Field(default=None, ge=1)
    retry_policy: RetryPolicy = DEFAULT_DEPLOYMENT_RETRY
    own_retries: bool = False
    """Keep the model's own retry loop (by default the router switches it off)."""

    _provider: str = PrivateAttr(default="unknown")
    _model_name: str = PrivateAttr(default="unknown")
    _named: bool | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _resolve(self) -> Self:
        register_model(self.model)  # any BaseChatModel (a user's, another package's): its keys are masked too
        try:
            params = self.model._get_ls_params()
        except Exception:  # pragma: no cover - a model with a broken _get_ls_params
            params = {}
        self._provider = str(
            getattr(self.model, "provider_name", None) or params.get("ls_provider") or self.model._llm_type
        )
        self._model_name = str(
            params.get("ls_model_name") or getattr(self.model, "model", None) or getattr(self.model, "model_name", "")
        )
        if self._named is None:  # once: the router validates a deployment again after naming it
            self._named = bool(self.name)
        if not self.name:
            self.name = f"{self._provider}:{self._model_name}"
        inferred = infer_capabilities(self.model)
        stated = self.capabilities.model_dump(exclude_none=True)
        self.capabilities = inferred.model_copy(update=stated)
        profile = _profile(self.model)
        if self.context_window is None and isinstance(profile.get("max_input_tokens"), int):
            self.context_window = profile["max_input_tokens"]
        if self.max_output_tokens is None and isinstance(profile.get("max_output_tokens"), int):
            self.max_output_tokens = profile["max_output_tokens"]
        if not self.own_retries:
            self.model = single_shot(self.model)
        return self

    @property
    def named(self) -> bool:
        """Whether the name was given (a router numbers only the names it made up: ``"<provider>:<model>#2"``)."""
        return bool(self._named)

    @property
    def provider(self) -> str:
        """Provider id of the model (``openai``, ``scripted``, ...)."""
        return self.__pydantic_private__["_provider"]  # type: ignore[index,no-any-return]  # hot path: no __getattr__

    @property
    def model_name(self) -> str:
        """The model's configured name."""
        return self.__pydantic_private__["_model_name"]  # type: ignore[index,no-any-return]  # hot path

    def estimated_cost(self, input_tokens: int, output_tokens: int) -> float:
        """USD for a call of that size at this deployment's prices."""
        return (input_tokens * self.input_price + output_tokens * self.output_price) / 1_000_000


def init_model(spec: str, **params: Any) -> BaseChatModel:
    """A model from a ``"provider:model"`` string, through the registry (imported on first use)."""
    from langchain_multigateway.registry import init_gateway_model

    return init_gateway_model(spec, **params)


def deployments_from(models: Sequence[str | BaseChatModel | Deployment]) -> list[Deployment]:
    """Deployments from ``"provider:model"`` strings, chat models or deployments."""
    out: list[Deployment] = []
    for item in models:
        if isinstance(item, Deployment):
            out.append(item)
        elif isinstance(item, BaseChatModel):
            out.append(Deployment(model=item))
        else:
            out.append(Deployment(model=init_model(item), name=item))
    return out
