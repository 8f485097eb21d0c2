"""Name a model as ``"provider:model"`` and get a chat model instance.

.. code-block:: python

    from langchain_multigateway.registry import init_gateway_model

    llm = init_gateway_model("openai:gpt-4o-mini", temperature=0)
    llm = init_gateway_model("claude-3-5-haiku-latest")          # provider from the name
    llm = init_gateway_model(model="llama3.2:1b", provider="ollama")
    llm = default_gateway_model()    # DEFAULT_LLM_MODEL / DEFAULT_LLM_TEMPERATURE

Providers are registered by import path, so importing this module never imports a
provider SDK; a provider's module is imported the first time a model of it is built.
Third-party packages join through the ``langchain_multigateway.providers`` entry-point
group (``name = "package.module:ChatModelClass"``), discovered once, on first use.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from typing import Any

from langchain_core.language_models import BaseChatModel

from langchain_multigateway._providers import (
    ENTRY_POINT_GROUP,
    ModelFactory,
    ProviderInfo,
    ProviderRegistry,
)
from langchain_multigateway._providers import MissingAPIKeyConfigError as MissingAPIKeyConfigError
from langchain_multigateway._providers import Problem as Problem
from langchain_multigateway._providers import _BuildError as _BuildError
from langchain_multigateway._providers import format_key_path as format_key_path
from langchain_multigateway._providers import is_secret_key as is_secret_key
from langchain_multigateway._providers import unknown_parameters as unknown_parameters
from langchain_multigateway._providers import validation_problems as validation_problems
from langchain_multigateway.errors import ConfigurationError

__all__ = [
    "ENTRY_POINT_GROUP",
    "ModelFactory",
    "ProviderInfo",
    "ProviderRegistry",
    "default_gateway_model",
    "credential_names",
    "get_default_model",
    "get_provider",
    "init_gateway_model",
    "list_providers",
    "load_provider_class",
    "parse_model_string",
    "register_provider",
    "unregister_provider",
]

DEFAULT_MODEL_ENV = "DEFAULT_LLM_MODEL"
DEFAULT_TEMPERATURE_ENV = "DEFAULT_LLM_TEMPERATURE"


# ---------------------------------------------------------------------- the shared registry
_REGISTRY = ProviderRegistry.with_builtins()


def _registry() -> ProviderRegistry:
    return _REGISTRY


def register_provider(
    name: str,
    cls_or_import_path: str | ModelFactory,
    *,
    default_model: str | None = None,
    prefixes: Iterable[str] = (),
    credential_headers: Iterable[str] = (),
    credential_query: Iterable[str] = (),
) -> ProviderInfo:
    """Register (or replace) a provider.

    Args:
        name: The provider id used in ``"name:model"`` strings (lowercase).
        cls_or_import_path: A BaseChatModel subclass, a factory ``(model=..., **params)``
            returning one, or ``"package.module:ClassName"`` imported on first use.
        default_model: Model built when only the provider is named.
        prefixes: Bare model names starting with one of these resolve to this provider.
        credential_headers: Request headers carrying the provider's credentials, beyond the
            common ones (``authorization``, ``x-api-key``, ``api-key``, ``x-goog-api-key``).
        credential_query: Query parameters carrying them, beyond ``key``, ``api_key``, ``api-key``.
            Both are masked in errors, logs and traces, and scrubbed from cassettes.

    Example:
        .. code-block:: python

            register_provider("acme", "acme_llm.chat:AcmeChat", default_model="acme-1", prefixes=("acme-",))
            init_gateway_model("acme-1-mini")
    """
    return _registry().register(
        name,
        cls_or_import_path,
        default_model=default_model,
        prefixes=prefixes,
        credential_headers=credential_headers,
        credential_query=credential_query,
    )


def unregister_provider(name: str) -> None:
    """Remove a provider from the shared registry (a no-op when absent)."""
    _registry().unregister(name)


def credential_names() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``(header names, query names)`` that carry credentials, over every registered provider.

    The pytest plugin scrubs these from cassettes, so a new provider cannot be forgotten.
    """
    return _registry().credential_names()


def list_providers() -> list[str]:
    """Registered provider names, built-in, registered and entry-point ones, sorted."""
    return _registry().names()


def get_provider(name: str) -> ProviderInfo:
    """How provider ``name`` is registered."""
    return _registry().get(name)


def get_default_model(provider: str) -> str:
    """The model used when only ``provider`` is named (e.g. ``"gpt-4o-mini"`` for openai)."""
    return _registry().default_model(provider)


def load_provider_class(provider: str) -> ModelFactory:
    """Import and return the chat model class (or factory) of ``provider``."""
    return _registry().load(provider)


def parse_model_string(model: str | None, provider: str | None = None) -> tuple[str, str]:
    """``(provider, model)`` from ``"provider:model"``, a bare model name, or ``provider=`` alone.

    A bare name resolves by registered prefixes (``gpt-…`` → openai, ``claude-…`` →
    anthropic, ``mistral-…`` → mistral, ...). Model names may themselves contain ``:``
    (``"ollama:llama3.2:1b"``): only the first segment is read as a provider, and only
    when it is a registered one.
    """
    return _registry().parse(model, provider)


def init_gateway_model(model: str | None = None, *, provider: str | None = None, **kwargs: Any) -> BaseChatModel:
    """A chat model instance from a model name, in the spirit of LangChain's ``init_chat_model``.

    Args:
        model: ``"provider:model"`` (``"openai:gpt-4o-mini"``), or a bare name whose
            prefix tells the provider (``"claude-3-5-haiku-latest"``). With ``provider``
            given, the plain model name (or None for the provider's default).
            With neither, ``DEFAULT_LLM_MODEL`` from the environment.
        provider: Provider name; ``model_provider`` is accepted as in LangChain.
        **kwargs: Parameters of the provider's chat model (``temperature``,
            ``max_tokens``, ``base_url``, ``api_key``, ...).

    Raises:
        ConfigurationError: unknown provider (the message lists the registered ones),
            a bare name no prefix matches, or parameters the provider class rejects.
    """
    if provider is None and "model_provider" in kwargs:
        provider = kwargs.pop("model_provider")
    if model is None and provider is None:
        return default_gateway_model(**kwargs)
    registry = _registry()
    name, model_name = registry.parse(model, provider)
    return registry.build(name, model_name, kwargs)


def default_temperature(env: Mapping[str, str] | None = None) -> float | None:
    """``DEFAULT_LLM_TEMPERATURE`` as a float (None when unset); a bad value is a ConfigurationError."""
    environ = os.environ if env is None else env
    raw = environ.get(DEFAULT_TEMPERATURE_ENV, "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        msg = (
            f"environment variable {DEFAULT_TEMPERATURE_ENV}={raw!r} is not a valid temperature: "
            "expected a non-negative number such as 0 or 0.7"
        )
        raise ConfigurationError(msg, source=DEFAULT_TEMPERATURE_ENV, key_path=DEFAULT_TEMPERATURE_ENV)
    return value


def default_gateway_model(
    *, default: str | None = None, env: Mapping[str, str] | None = None, **kwargs: Any
) -> BaseChatModel:
    """The model named by ``DEFAULT_LLM_MODEL`` (else ``default``), at ``DEFAULT_LLM_TEMPERATURE``.

    Explicit ``kwargs`` win over the environment (``temperature=`` skips the variable).
    """
    environ = os.environ if env is None else env
    from_env = environ.get(DEFAULT_MODEL_ENV, "").strip()
    spec = from_env or default
    if not spec:
        msg = (
            f"no default model: set {DEFAULT_MODEL_ENV} to 'provider:model' (e.g. 'openai:gpt-4o-mini') "
            f"or pass a model name; registered providers: {', '.join(list_providers())}"
        )
        raise ConfigurationError(msg, source=DEFAULT_MODEL_ENV, key_path=DEFAULT_MODEL_ENV)
    if "temperature" not in kwargs:
        temperature = default_temperature(environ)
        if temperature is not None:
            kwargs["temperature"] = temperature
    try:
        name, model_name = _registry().parse(spec)
    except ConfigurationError as exc:
        where = f"environment variable {DEFAULT_MODEL_ENV}={spec!r}" if from_env else f"default model {spec!r}"
        msg = f"{where}: {exc.message}"
        raise ConfigurationError(msg, source=DEFAULT_MODEL_ENV, key_path=DEFAULT_MODEL_ENV) from exc
    return _registry().build(name, model_name, kwargs)
