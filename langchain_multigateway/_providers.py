"""Provider registry machinery behind :mod:`langchain_multigateway.registry`.

:class:`ProviderRegistry` and :class:`ProviderInfo`, the built-in providers, import-target
loading, and parameter checking with validation-problem formatting. Importing this module
never imports a provider SDK; :mod:`langchain_multigateway.registry` is the public API.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import importlib.util
import re
import threading
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from langchain_core.language_models import BaseChatModel
from pydantic import BaseModel, ValidationError

from langchain_multigateway._redact import add_credential_names, credential_header_names, credential_query_names
from langchain_multigateway.errors import ConfigurationError, GatewayError, MissingAPIKeyError

__all__ = [
    "ENTRY_POINT_GROUP",
    "ModelFactory",
    "Problem",
    "ProviderInfo",
    "ProviderRegistry",
    "format_key_path",
    "is_secret_key",
    "unknown_parameters",
    "validation_problems",
]

ENTRY_POINT_GROUP = "langchain_multigateway.providers"
"""Entry-point group third-party providers register under."""

ModelFactory = type[BaseChatModel] | Callable[..., BaseChatModel]
"""A chat model class, or any callable taking ``model=`` and parameters and returning one."""

Problem = tuple[tuple[str | int, ...], str]
"""A parameter path (relative to the model's parameters) and what is wrong there."""

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
_IMPORT_PATH_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
_SECRET_KEY_RE = re.compile(r"(^|[_-])(api[_-]?key|key|secret|password|token|authorization)$", re.IGNORECASE)


def is_secret_key(key: object) -> bool:
    """Whether a parameter name looks like it holds a credential (never shown in messages)."""
    return isinstance(key, str) and bool(_SECRET_KEY_RE.search(key))


@dataclass(frozen=True)
class ProviderInfo:
    """One registered provider.

    Attributes:
        name: Provider id, the part before ``:`` in ``"provider:model"``.
        target: ``"package.module:ClassName"`` (imported on first use), a chat model
            class, or a factory callable.
        default_model: Model used when only the provider is named.
        prefixes: Bare model names starting with one of these resolve to this provider.
        origin: ``"builtin"``, ``"registered"`` or ``"entry point '<name>' (<dist>)"``.
        credential_headers: Request headers that carry this provider's credentials
            (``authorization``, ``x-api-key``, ``api-key``, ``x-goog-api-key``, ...).
        credential_query: Query parameters that carry them (``key``, ``api-key``, ...).

    The credential names join the process-wide redaction rule when the provider is
    registered: they are masked in errors, logs and traces and scrubbed from cassettes.
    Common names (``authorization``, ``x-api-key``, ``api-key``, ``key``, ...) are
    always covered, so a provider only adds its unusual ones.
    """

    name: str
    target: str | ModelFactory
    default_model: str | None = None
    prefixes: tuple[str, ...] = ()
    origin: str = "registered"
    credential_headers: tuple[str, ...] = ()
    credential_query: tuple[str, ...] = ()

    @property
    def import_path(self) -> str | None:
        """The import path when the provider is registered lazily, else None."""
        return self.target if isinstance(self.target, str) else None


_BUILTINS: tuple[ProviderInfo, ...] = (
    ProviderInfo(
        "openai",
        "langchain_multigateway.chat_models.openai:OpenAIChatModel",
        "gpt-4o-mini",
        ("gpt-", "o1", "o3", "o4", "chatgpt-"),
        "builtin",
        ("authorization", "api-key"),  # api-key: Azure-style endpoints
        ("api-key",),  # Azure-style gateways taking the key as ?api-key=
    ),
    ProviderInfo(
        "mistral",
        "langchain_multigateway.chat_models.mistral:MistralChatModel",
        "mistral-small-latest",
        (
            "mistral-",
            "open-mistral",
            "open-mixtral",
            "codestral",
            "ministral",
            "pixtral",
            "magistral",
            "devstral",
        ),
        "builtin",
        ("authorization",),
    ),
    ProviderInfo(
        "ollama",
        "langchain_multigateway.chat_models.ollama:OllamaChatModel",
        "llama3.2",
        (),
        "builtin",
        ("authorization",),  # a bearer token for ollama.com or an authenticating proxy
    ),
    ProviderInfo(
        "anthropic",
        "langchain_multigateway.chat_models.anthropic:AnthropicChatModel",
        "claude-haiku-4-5",
        ("claude-",),
        "builtin",
        ("x-api-key", "authorization"),
    ),
    ProviderInfo(
        "scripted",
        "langchain_multigateway.testing.scripted:ScriptedChatModel",
        "scripted-model",
        (),
        "builtin",
    ),
)


@dataclass
class ProviderRegistry:
    """Provider name → how to build its chat models. Thread-safe.

    The module-level functions (:func:`register_provider`, :func:`init_gateway_model`,
    ...) use one shared instance; build your own for an isolated set of providers.
    """

    providers: dict[str, ProviderInfo] = field(default_factory=dict)
    entry_point_group: str | None = ENTRY_POINT_GROUP
    _entry_points_loaded: bool = field(default=False, repr=False)
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    _classes: dict[str, ModelFactory] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        for info in self.providers.values():
            _declare_credentials(info)

    @classmethod
    def with_builtins(cls, *, entry_point_group: str | None = ENTRY_POINT_GROUP) -> ProviderRegistry:
        """A registry holding the built-in providers (and, on first use, the entry points)."""
        return cls({info.name: info for info in _BUILTINS}, entry_point_group)

    # ------------------------------------------------------------------ registration
    def register(
        self,
        name: str,
        target: str | ModelFactory,
        *,
        default_model: str | None = None,
        prefixes: Iterable[str] = (),
        origin: str = "registered",
        credential_headers: Iterable[str] = (),
        credential_query: Iterable[str] = (),
    ) -> ProviderInfo:
        """Add or replace a provider; see :func:`register_provider`."""
        key = _normalize_provider(name)
        if not _NAME_RE.match(key):
            msg = (
                f"invalid provider name {name!r}: use lowercase letters, digits, '_', '-' or '.', "
                "starting with a letter or digit (and no ':')"
            )
            raise ConfigurationError(msg, key_path="name")
        if isinstance(target, str):
            if not _IMPORT_PATH_RE.match(target):
                msg = f"invalid import path {target!r} for provider {key!r}: expected 'package.module:ClassName'"
                raise ConfigurationError(msg, key_path="target")
        elif not callable(target):
            msg = (
                f"provider {key!r} must be a chat model class, a factory callable or an import path "
                f"'package.module:ClassName', got {type(target).__name__}"
            )
            raise ConfigurationError(msg, key_path="target")
        clean_prefixes = tuple(p.lower() for p in prefixes)
        if any(not p for p in clean_prefixes) or isinstance(prefixes, str):
            msg = f"prefixes of provider {key!r} must be non-empty strings, given as a list or tuple"
            raise ConfigurationError(msg, key_path="prefixes")
        info = ProviderInfo(
            key,
            target,
            default_model,
            clean_prefixes,
            origin,
            tuple(h.lower() for h in credential_headers),
            tuple(q.lower() for q in credential_query),
        )
        _declare_credentials(info)
        with self._lock:
            self.providers[key] = info
            self._classes.pop(key, None)
        return info

    def unregister(self, name: str) -> None:
        """Remove a provider (a no-op when it is not registered)."""
        key = _normalize_provider(name)
        with self._lock:
            self.providers.pop(key, None)
            self._classes.pop(key, None)

    def load_entry_points(self) -> None:
        """Discover entry-point providers once; broken ones warn and are skipped."""
        with self._lock:
            if self._entry_points_loaded or self.entry_point_group is None:
                return
            self._entry_points_loaded = True
            try:
                found = list(importlib.metadata.entry_points(group=self.entry_point_group))
            except Exception as exc:
                warnings.warn(
                    f"could not read the {self.entry_point_group!r} entry points: {type(exc).__name__}: {exc}",
                    RuntimeWarning,
                    stacklevel=3,
                )
                return
            for ep in found:
                self._add_entry_point(ep)

    def _add_entry_point(self, ep: importlib.metadata.EntryPoint) -> None:
        dist = getattr(ep, "dist", None)
        dist_name = getattr(dist, "name", None) or "unknown distribution"
        label = f"entry point {ep.name!r} = {ep.value!r} ({dist_name})"
        key = _normalize_provider(ep.name)

        def skip(reason: str) -> None:
            warnings.warn(
                f"ignoring provider {label} in group {self.entry_point_group!r}: {reason}",
                RuntimeWarning,
                stacklevel=4,
            )

        if key in self.providers:
            skip(f"provider {key!r} is already registered ({self.providers[key].origin})")
            return
        if not _NAME_RE.match(key) or not _IMPORT_PATH_RE.match(ep.value.replace(" ", "")):
            skip("expected 'name = package.module:ClassName'")
            return
        top_module = ep.value.split(":", 1)[0].split(".", 1)[0]
        try:
            found = importlib.util.find_spec(top_module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            skip(f"module {top_module!r} is not installed")
            return
        self.providers[key] = ProviderInfo(
            key, ep.value.replace(" ", ""), None, (), f"entry point {ep.name!r} ({dist_name})"
        )

    # ------------------------------------------------------------------ lookup
    def names(self) -> list[str]:
        """Registered provider names, sorted."""
        self.load_entry_points()
        return sorted(self.providers)

    def get(self, name: str) -> ProviderInfo:
        """The provider called ``name``; ConfigurationError listing the others if none."""
        self.load_entry_points()
        key = _normalize_provider(name)
        info = self.providers.get(key)
        if info is None:
            raise ConfigurationError(self.unknown_provider_message(name), key_path="provider")
        return info

    def unknown_provider_message(self, name: object) -> str:
        return (
            f"unknown provider {name!r}; registered providers: {', '.join(self.names())} "
            f"(name a model as 'provider:model', e.g. 'openai:gpt-4o-mini'; add providers with "
            f"register_provider() or the {ENTRY_POINT_GROUP!r} entry-point group)"
        )

    def provider_for_model(self, model: str) -> str | None:
        """The provider whose longest registered prefix starts ``model``, if any."""
        self.load_entry_points()
        lowered = model.lower()
        best: tuple[int, str] | None = None
        for info in self.providers.values():
            for prefix in info.prefixes:
                if lowered.startswith(prefix) and (best is None or len(prefix) > best[0]):
                    best = (len(prefix), info.name)
        return None if best is None else best[1]

    def parse(self, model: str | None, provider: str | None = None) -> tuple[str, str]:
        """``(provider, model)`` for a ``"provider:model"`` string, a bare name, or a provider alone."""
        if provider is not None:
            info = self.get(provider)
            if model is not None:
                head, sep, tail = model.partition(":")
                if sep and _normalize_provider(head) == info.name:
                    model = tail
            if not model:
                model = self.default_model(info.name)
            return info.name, model
        if model is None or not model.strip():
            msg = (
                f"no model given: name one as 'provider:model' (e.g. 'openai:gpt-4o-mini'); "
                f"registered providers: {', '.join(self.names())}"
            )
            raise ConfigurationError(msg, key_path="model")
        model = model.strip()
        head, sep, tail = model.partition(":")
        if sep and _normalize_provider(head) in self.names():
            key = _normalize_provider(head)
            return key, tail or self.default_model(key)
        inferred = self.provider_for_model(model)
        if inferred is not None:
            return inferred, model
        if sep and _NAME_RE.match(head.lower()) and "." not in head:
            first = f"unknown provider {head!r} in {model!r}"
            example = f"openai:{tail}"
        else:
            first = f"cannot tell the provider of model {model!r}"
            example = f"ollama:{model}"
        known = {info.name: info.prefixes for info in self.providers.values() if info.prefixes}
        hints = "; ".join(f"{name}: {', '.join(p + '…' for p in prefixes)}" for name, prefixes in sorted(known.items()))
        msg = (
            f"{first}: write it as 'provider:model', e.g. '{example}'. "
            f"Registered providers: {', '.join(self.names())}. Bare names resolve by prefix ({hints})."
        )
        raise ConfigurationError(msg, key_path="model")

    def default_model(self, provider: str) -> str:
        """The model used when only ``provider`` is named."""
        info = self.get(provider)
        if info.default_model:
            return info.default_model
        factory = self.load(info.name)
        fields = getattr(factory, "model_fields", None)
        if isinstance(fields, Mapping):
            for name in ("model", "model_name"):
                spec = fields.get(name)
                default = getattr(spec, "default", None)
                if isinstance(default, str) and default:
                    return default
        msg = (
            f"provider {info.name!r} has no default model: name one, e.g. '{info.name}:<model>' "
            "(or register the provider with default_model=...)"
        )
        raise ConfigurationError(msg, key_path="model")

    def load(self, provider: str) -> ModelFactory:
        """Import (once) and return the chat model class or factory of ``provider``."""
        info = self.get(provider)
        with self._lock:
            cached = self._classes.get(info.name)
            if cached is not None:
                return cached
            factory = _import_target(info)
            # A provider class may declare its own credential names (entry-point providers do so).
            headers, query = getattr(factory, "credential_headers", ()), getattr(factory, "credential_query", ())
            if isinstance(headers, tuple) and isinstance(query, tuple):
                add_credential_names(headers=map(str, headers), query=map(str, query))
            self._classes[info.name] = factory
            return factory

    def credential_names(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """Every credential header and query name providers declared, with the common ones."""
        self.load_entry_points()
        return credential_header_names(), credential_query_names()

    # ------------------------------------------------------------------ building
    def build(self, provider: str, model: str, params: Mapping[str, Any]) -> BaseChatModel:
        """Instantiate; wrong parameters raise ConfigurationError naming each one."""
        factory = self.load(provider)
        problems = unknown_parameters(factory, params)
        if problems:
            raise _BuildError(provider, model, problems)
        try:
            instance = factory(model=model, **params)
        except ValidationError as exc:
            raise _BuildError(provider, model, validation_problems(exc)) from exc
        except ConfigurationError:
            raise
        except MissingAPIKeyError as exc:
            # Still a MissingAPIKeyError for callers that catch it, located like any build problem.
            raise MissingAPIKeyConfigError(provider, model, [((), exc.message)]) from exc
        except (TypeError, ValueError) as exc:
            raise _BuildError(provider, model, [((), f"{type(exc).__name__}: {exc}")]) from exc
        if not isinstance(instance, BaseChatModel):
            what = f"the {provider!r} factory returned {type(instance).__name__}, not a chat model"
            raise _BuildError(provider, model, [((), what)])
        return instance


class _BuildError(ConfigurationError):
    """ConfigurationError that keeps parameter-relative problems for config.py to re-anchor."""

    def __init__(self, provider: str, model: str, details: list[Problem]) -> None:
        self.details = details
        self.provider_name = provider
        self.model_name = model
        lines = [f"{format_key_path(path) or '(model)'}: {what}" for path, what in details]
        super().__init__(
            f"cannot build {provider}:{model}: " + "; ".join(lines),
            key_path=format_key_path(details[0][0]) if details else None,
            problems=lines,
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.provider_name, self.model_name, self.details))


class MissingAPIKeyConfigError(_BuildError, MissingAPIKeyError):
    """No API key for a model being built: a MissingAPIKeyError and a ConfigurationError.

    The message is the provider's own (it names the environment variable to set),
    prefixed with the model: ``openai:gpt-4o-mini: No API key for openai: pass
    api_key=... or set the OPENAI_API_KEY environment variable.``
    """

    def __init__(self, provider: str, model: str, details: list[Problem]) -> None:
        super().__init__(provider, model, details)
        self.message = f"{provider}:{model}: " + "; ".join(what for _, what in details)


MissingAPIKeyConfigError.__module__ = "langchain_multigateway.registry"  # its public home


# ---------------------------------------------------------------------- helpers
def _declare_credentials(info: ProviderInfo) -> None:
    add_credential_names(headers=info.credential_headers, query=info.credential_query)


_LANGCHAIN_PROVIDER_KEYS = {"mistralai": "mistral"}
"""``init_chat_model``'s provider keys that name a provider here by another name (``"mistralai:..."``)."""


def _normalize_provider(name: str) -> str:
    if not isinstance(name, str):
        return name
    key = name.strip().lower()
    return _LANGCHAIN_PROVIDER_KEYS.get(key, key)


def _import_target(info: ProviderInfo) -> ModelFactory:
    target = info.target
    if not isinstance(target, str):
        return target
    module_name, _, attr = target.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except Exception as exc:
        msg = f"provider {info.name!r} ({info.origin}) could not be loaded from {target!r}: {type(exc).__name__}: {exc}"
        raise ConfigurationError(msg, key_path="provider") from exc
    if isinstance(obj, type) and not issubclass(obj, BaseChatModel):
        msg = f"provider {info.name!r} ({info.origin}): {target!r} is {obj.__name__}, not a BaseChatModel subclass"
        raise ConfigurationError(msg, key_path="provider")
    if not callable(obj):
        msg = f"provider {info.name!r} ({info.origin}): {target!r} is not a chat model class or factory"
        raise ConfigurationError(msg, key_path="provider")
    return obj  # type: ignore[no-any-return]


def _accepted_names(factory: type[BaseModel]) -> set[str]:
    names: set[str] = set()
    for name, spec in factory.model_fields.items():
        names.add(name)
        for alias in (spec.alias, spec.validation_alias):
            if isinstance(alias, str):
                names.add(alias)
    return names


def unknown_parameters(factory: ModelFactory, params: Mapping[str, Any]) -> list[Problem]:
    """Parameters a gateway chat model would silently ignore (typos such as ``temprature``)."""
    from langchain_multigateway.chat_models._base import GatewayChatModel

    if not isinstance(factory, type) or not issubclass(factory, BaseModel):
        return []
    ours = issubclass(factory, GatewayChatModel) or factory.__module__.startswith("langchain_multigateway.")
    if not ours or factory.model_config.get("extra") in ("allow", "forbid"):
        return []
    accepted = sorted(_accepted_names(factory))
    problems: list[Problem] = []
    for key in params:
        if key not in accepted:
            close = difflib.get_close_matches(key, accepted, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            problems.append(
                ((key,), f"unknown parameter for {factory.__name__}; {hint}expected one of: {', '.join(accepted)}")
            )
    return problems


def validation_problems(exc: ValidationError) -> list[Problem]:
    """Each error of a pydantic ValidationError as (path, message), secrets left out."""
    problems: list[Problem] = []
    for error in exc.errors(include_url=False):
        path = tuple(error.get("loc", ()))
        message = str(error.get("msg", "invalid value"))
        ctx_error = (error.get("ctx") or {}).get("error")
        if isinstance(ctx_error, GatewayError):
            message = ctx_error.message
        elif message.startswith(("Value error, ", "Assertion failed, ")):
            message = message.split(", ", 1)[1]
        elif message.startswith("Input should be "):
            message = "expected " + message[len("Input should be ") :]
        if path and not any(is_secret_key(part) for part in path) and error.get("type") != "missing":
            message = f"{message} (got {_short_repr(error.get('input'))})"
        problems.append((path, message))
    return problems


def _short_repr(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def format_key_path(path: Iterable[str | int]) -> str:
    """``("models", "fast", "temperature")`` → ``models.fast.temperature``; indices as ``[0]``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif re.fullmatch(r"[\w-]+", part):
            out += f".{part}" if out else part
        else:
            out += f"[{part!r}]"
    return out
