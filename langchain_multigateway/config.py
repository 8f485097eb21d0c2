"""Declare models in YAML (or a dict) and build them.

.. code-block:: yaml

    # gateway.yaml
    models:
      fast:
        provider: openai
        model: gpt-4o-mini
        temperature: 0
        api_key: ${OPENAI_API_KEY}
      local:
        model: openai:gemma-3-270m          # "provider:model" shorthand
        base_url: ${LOCAL_LLM_URL:-http://127.0.0.1:8088/v1}
        api_key: none
      cheap: mistral:mistral-small-latest    # a bare string works too
    routers:                                 # kept raw; see langchain_multigateway.routing
      main: {...}
    state: {backend: redis, url: ${REDIS_URL}}   # shared limits; see langchain_multigateway.state.settings

.. code-block:: python

    from langchain_multigateway.config import load_config

    config = load_config("gateway.yaml")
    fast = config.build_model("fast")
    everything = config.build_models()

``${VAR}`` and ``${VAR:-default}`` are replaced from the environment in every string
of the file (``$${...}`` writes a literal ``${...}``). The file is read with
``yaml.safe_load``. Every mistake is a :class:`ConfigurationError` naming the file,
the line, the key path (``models.fast.temperature``) and what was expected; secrets
(``api_key`` and the like) never appear in messages or in ``repr``.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from langchain_core.language_models import BaseChatModel
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr, ValidationError

from langchain_multigateway import registry as _registry
from langchain_multigateway.errors import ConfigurationError

__all__ = ["ALLOWED_TOP_LEVEL_KEYS", "GatewayConfig", "ModelSpec", "interpolate_env", "load_config"]

ALLOWED_TOP_LEVEL_KEYS = ("models", "routers", "state", "version")
"""Keys a configuration may have at its top level."""

SUPPORTED_VERSIONS = (1,)

KeyPath = tuple[str | int, ...]
_Problem = tuple[KeyPath, str]

MAX_ALIAS_NODES = 10_000
"""Nodes that YAML aliases (``*name``) may add to a file when expanded: a real
configuration reuses a few blocks, while a few hundred bytes of nested aliases
("billion laughs") would expand to billions of nodes and exhaust memory."""

_VAR_RE = re.compile(r"\$(\$)?\{([^{}]*)\}")
_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_REDACTED = "**********"


# ---------------------------------------------------------------------- specs
class _CommonParams(BaseModel):
    """Parameters every chat model shares, type-checked when the file is loaded."""

    model_config = ConfigDict(extra="allow")

    temperature: float | None = Field(default=None, ge=0)
    max_tokens: int | None = Field(default=None, gt=0)
    timeout: float | None = Field(default=None, gt=0)
    max_retries: int | None = Field(default=None, ge=0)


class ModelSpec(BaseModel):
    """One named model of a configuration: provider, model name and parameters.

    Secret-looking parameters (``api_key``, ``*_token``, ``password``, ...) are held as
    ``SecretStr``; ``repr`` redacts those and secret-looking keys nested deeper (headers).
    """

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    name: str
    provider: str
    model: str
    params: dict[str, Any] = Field(default_factory=dict)

    def __repr__(self) -> str:
        return (
            f"ModelSpec(name={self.name!r}, provider={self.provider!r}, model={self.model!r}, "
            f"params={_redact(self.params)!r})"
        )

    __str__ = __repr__

    def build(self) -> BaseChatModel:
        """Build this model (errors name the parameters, not the file; prefer ``GatewayConfig.build_model``)."""
        return _build(self)


def _build(spec: ModelSpec) -> BaseChatModel:
    factory = _registry.load_provider_class(spec.provider)
    params = {key: _unwrap_secret(factory, key, value) for key, value in spec.params.items()}
    return _registry._registry().build(spec.provider, spec.model, params)


def _unwrap_secret(factory: Any, key: str, value: Any) -> Any:
    """Pass SecretStr to fields typed SecretStr, the plain string to others."""
    if not isinstance(value, SecretStr):
        return value
    fields = getattr(factory, "model_fields", None)
    if isinstance(fields, Mapping):
        for name, info in fields.items():
            if key in (name, info.alias) and "SecretStr" in str(info.annotation):
                return value
    return value.get_secret_value()


def _redact(value: Any, key: object = None) -> Any:
    if is_secret(key) and value is not None:
        return _REDACTED
    if isinstance(value, SecretStr):
        return _REDACTED
    if isinstance(value, Mapping):
        return {k: _redact(v, k) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact(v) for v in value]
    return value


def is_secret(key: object) -> bool:
    """Whether a key names a credential (``api_key``, ``x-api-key``, ``Authorization``, ``*_token``...)."""
    return _registry.is_secret_key(key)


# ---------------------------------------------------------------------- the loaded config
class GatewayConfig(BaseModel):
    """A validated configuration: named model specs, and the raw ``routers`` section.

    Attributes:
        source: The file it came from, or ``"<dict>"``.
        models: Model name → :class:`ModelSpec`.
        routers: The ``routers:`` section as written (after ``${VAR}`` interpolation),
            for ``langchain_multigateway.routing`` to build from.
        state: The ``state:`` section (``backend``, ``url`` kept as a SecretStr, ``namespace``...),
            built by ``langchain_multigateway.state.settings``.
        version: The format version (1).
    """

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    source: str = "<dict>"
    models: dict[str, ModelSpec] = Field(default_factory=dict)
    routers: dict[str, Any] = Field(default_factory=dict)
    state: dict[str, Any] = Field(default_factory=dict)
    version: int = 1
    _lines: dict[tuple[str, ...], int] = PrivateAttr(default_factory=dict)

    def __repr__(self) -> str:
        return (
            f"GatewayConfig(source={self.source!r}, models={list(self.models)!r}, "
            f"routers={_redact(self.routers)!r}, version={self.version})"
        )

    __str__ = __repr__

    def line_of(self, path: Sequence[str | int]) -> int | None:
        """1-based line of ``path`` (or its nearest written ancestor) in the YAML file."""
        return _line_for(self._lines, tuple(path))

    def error(self, *problems: tuple[Sequence[str | int], str]) -> ConfigurationError:
        """A ConfigurationError for ``(key path, what was expected)`` pairs, with file and lines.

        For code that interprets more of the file (the ``routers:`` section):
        ``raise config.error((("routers", "main", "strategy"), "expected one of: ordered, ..."))``.
        """
        return _error(self.source, [(tuple(path), what) for path, what in problems], self._lines)

    def build_model(self, name: str) -> BaseChatModel:
        """Build the model declared as ``models.<name>``.

        Raises:
            ConfigurationError: no such model (the message lists the declared ones), its
                provider cannot be loaded, or the provider class rejects a parameter
                (the message names ``models.<name>.<parameter>``).
        """
        model, problems = self._try_build(name)
        if model is None:
            raise _error(self.source, problems, self._lines)
        return model

    def build_models(self) -> dict[str, BaseChatModel]:
        """Build every declared model; all failures are reported together."""
        built: dict[str, BaseChatModel] = {}
        problems: list[_Problem] = []
        for name in self.models:
            model, found = self._try_build(name)
            if model is not None:
                built[name] = model
            problems.extend(found)
        if problems:
            raise _error(self.source, problems, self._lines)
        return built

    def try_build_model(self, name: str) -> tuple[BaseChatModel | None, list[_Problem]]:
        """Build ``models.<name>``, or return ``(None, problems)`` for code that reports many at once.

        Each problem is ``(key path, what was expected)``, for :meth:`error`.
        """
        return self._try_build(name)

    def _try_build(self, name: str) -> tuple[BaseChatModel | None, list[_Problem]]:
        spec = self.models.get(name)
        if spec is None:
            declared = ", ".join(self.models) or "none"
            return None, [(("models", name), f"no model named {name!r}; declared models: {declared}")]
        try:
            return _build(spec), []
        except _registry._BuildError as exc:
            return None, [(("models", name, *path), what) for path, what in exc.details]
        except ConfigurationError as exc:
            return None, [(("models", name, "provider"), exc.message)]


# ---------------------------------------------------------------------- loading
def load_config(
    source: str | os.PathLike[str] | Mapping[str, Any], *, env: Mapping[str, str] | None = None
) -> GatewayConfig:
    """Read, interpolate and validate a configuration.

    Args:
        source: A YAML file path, or an already-parsed mapping.
        env: Variables for ``${VAR}`` (``os.environ`` by default).

    Raises:
        ConfigurationError: the file is missing or not YAML, uses a non-safe tag, is not a
            mapping, has unknown keys, a missing variable, an unknown provider, a missing
            field or a wrongly typed value. The message names the file, line and key path.
    """
    environ = os.environ if env is None else env
    lines: dict[tuple[str, ...], int] = {}
    if source is None or isinstance(source, Mapping):
        name = "<dict>"
        data: Any = source
    else:
        path = Path(source)
        name = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            msg = f"{name}: cannot read the configuration file: {exc.strerror or exc}"
            raise ConfigurationError(msg, source=name) from exc
        except UnicodeDecodeError as exc:
            raw = path.read_bytes()
            line = raw[: exc.start].count(b"\n") + 1
            msg = f"{name}, line {line}: the file is not UTF-8 text (byte 0x{raw[exc.start]:02x}); save it as UTF-8"
            raise ConfigurationError(msg, source=name, line=line) from None
        data, lines = _parse_yaml(text, name)
    return _validate(data, name, environ, lines)


def _check_aliases(text: str, name: str) -> None:
    """Refuse a file whose aliases expand past :data:`MAX_ALIAS_NODES` (or refer to themselves).

    Reads parser events only (linear in the file): the expanded size of every
    anchored node is summed as its aliases are met, before anything is built.
    """
    sizes: dict[str, int] = {}
    open_nodes: list[list[Any]] = []  # [anchor, nodes so far] of each collection being read
    added = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.AliasEvent):
            anchor = str(event.anchor)
            size = sizes.get(anchor)
            mark = event.start_mark
            line = mark.line + 1 if mark is not None else None
            where = f"{name}, line {line}, column {mark.column + 1}" if mark is not None else name
            if size is None:
                msg = f"{where}: the alias *{anchor} refers to a node that contains it (a configuration cannot loop)"
                raise ConfigurationError(msg, source=name, line=line)
            added += size
            if added > MAX_ALIAS_NODES:
                msg = (
                    f"{where}: the alias *{anchor} takes the expanded file past {MAX_ALIAS_NODES:,} nodes added by "
                    "aliases (nested aliases that multiply, as in a YAML alias bomb); write the repeated values "
                    "out, or reuse fewer nested blocks"
                )
                raise ConfigurationError(msg, source=name, line=line)
            if open_nodes:
                open_nodes[-1][1] += size
        elif isinstance(event, yaml.ScalarEvent):
            if event.anchor is not None:
                sizes[str(event.anchor)] = 1
            if open_nodes:
                open_nodes[-1][1] += 1
        elif isinstance(event, yaml.CollectionStartEvent):
            open_nodes.append([event.anchor, 1])
        elif isinstance(event, yaml.CollectionEndEvent):
            anchor, size = open_nodes.pop()
            if anchor is not None:
                sizes[str(anchor)] = size
            if open_nodes:
                open_nodes[-1][1] += size


def _parse_yaml(text: str, name: str) -> tuple[Any, dict[tuple[str, ...], int]]:
    lines: dict[tuple[str, ...], int] = {}
    marks: dict[tuple[int, int], KeyPath] = {}
    duplicates: list[_Problem] = []
    try:
        _check_aliases(text, name)
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        if node is not None:
            _index(node, (), lines, marks, duplicates)
        if duplicates:
            raise _error(name, duplicates, lines)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise _yaml_error(exc, name, marks) from None
    except RecursionError:
        # PyYAML's composer recurses once per nesting level: a few KB of brackets exhaust the stack.
        msg = f"{name}: the YAML is nested too deeply to read (a configuration needs a few levels)"
        raise ConfigurationError(msg, source=name) from None
    return data, lines


def _index(
    node: yaml.Node,
    path: KeyPath,
    lines: dict[tuple[str, ...], int],
    marks: dict[tuple[int, int], KeyPath],
    duplicates: list[_Problem],
) -> None:
    marks[(node.start_mark.line, node.start_mark.column)] = path
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            child = (*path, str(key_node.value))
            located = tuple(map(str, child))
            if located in lines and key_node.value != "<<":
                # yaml.safe_load would keep the last silently: one model or router would vanish.
                first = lines[located]
                duplicates.append((child, f"the key is repeated (first at line {first}); a key may appear once"))
                lines[located] = key_node.start_mark.line + 1
                continue  # its own keys would all repeat too
            lines[located] = key_node.start_mark.line + 1
            _index(value_node, child, lines, marks, duplicates)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            child = (*path, i)
            lines[tuple(map(str, child))] = item.start_mark.line + 1
            _index(item, child, lines, marks, duplicates)


def _yaml_error(exc: yaml.YAMLError, name: str, marks: Mapping[tuple[int, int], KeyPath]) -> ConfigurationError:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    line = mark.line + 1 if mark is not None else None
    where = f"{name}, line {line}, column {mark.column + 1}" if mark is not None else name
    if isinstance(exc, yaml.constructor.ConstructorError):
        path = marks.get((mark.line, mark.column)) if mark is not None else None
        key_path = _registry.format_key_path(path) if path else None
        tag = str(problem).rsplit("tag ", 1)[-1].replace("tag:yaml.org,2002:", "!!")
        msg = (
            f"{where}: {key_path + ': ' if key_path else ''}the tag {tag} is not allowed: the file is read "
            "with yaml.safe_load, which accepts plain mappings, lists, strings, numbers, booleans and null only"
        )
        return ConfigurationError(msg, source=name, key_path=key_path, line=line)
    context_mark = getattr(exc, "context_mark", None)
    detail = str(problem)
    if context:
        at = f" at line {context_mark.line + 1}, column {context_mark.column + 1}" if context_mark is not None else ""
        detail = f"{context}{at}: {problem}"
    snippet = ""
    for candidate in (mark, context_mark):
        text_lines = str(getattr(candidate, "buffer", None) or "").rstrip("\0").splitlines()
        if candidate is not None and 0 <= candidate.line < len(text_lines) and text_lines[candidate.line].strip():
            snippet = f"\n    {text_lines[candidate.line].rstrip()}"
            break
    return ConfigurationError(f"{where}: invalid YAML: {detail}{snippet}", source=name, line=line)


def interpolate_env(value: Any, env: Mapping[str, str] | None = None) -> Any:
    """Replace ``${VAR}`` / ``${VAR:-default}`` in every string of ``value`` (``$${`` escapes)."""
    problems: list[_Problem] = []
    result = _interpolate(value, (), os.environ if env is None else env, problems)
    if problems:
        raise _error("<value>", problems, {})
    return result


def _interpolate(value: Any, path: KeyPath, env: Mapping[str, str], problems: list[_Problem]) -> Any:
    if isinstance(value, str):
        return _interpolate_str(value, path, env, problems) if "${" in value else value
    if isinstance(value, Mapping):
        return {k: _interpolate(v, (*path, k), env, problems) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_interpolate(v, (*path, i), env, problems) for i, v in enumerate(value)]
    return value


def _interpolate_str(text: str, path: KeyPath, env: Mapping[str, str], problems: list[_Problem]) -> str:
    def replace(match: re.Match[str]) -> str:
        inner = match.group(2)
        if match.group(1):
            return "${" + inner + "}"
        name, has_default, default = inner.partition(":-")
        if not _ENV_NAME_RE.fullmatch(name):
            problems.append(
                (path, f"invalid variable reference '${{{inner}}}': expected ${{NAME}} or ${{NAME:-default}}")
            )
            return ""
        found = env.get(name)
        if found is None or (has_default and found == ""):
            if has_default:
                return default
            problems.append(
                (path, f"environment variable {name} is not set (set it, or give a default: ${{{name}:-value}})")
            )
            return ""
        return found

    return _VAR_RE.sub(replace, text)


def _describe(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return f"{type(value).__name__} {value!r}"


def _validate(data: Any, name: str, env: Mapping[str, str], lines: dict[tuple[str, ...], int]) -> GatewayConfig:
    allowed = ", ".join(ALLOWED_TOP_LEVEL_KEYS)
    if data is None:
        raise _error(name, [((), f"the configuration is empty; expected a mapping with keys: {allowed}")], lines)
    if not isinstance(data, Mapping):
        msg = f"the top level must be a mapping with keys: {allowed} (got {_describe(data)})"
        raise _error(name, [((), msg)], lines)

    problems: list[_Problem] = []
    for key in data:
        if key not in ALLOWED_TOP_LEVEL_KEYS:
            close = difflib.get_close_matches(str(key), ALLOWED_TOP_LEVEL_KEYS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(((str(key),), f"unknown top-level key {key!r}{hint}; allowed keys: {allowed}"))

    data = _interpolate(dict(data), (), env, problems)

    version = data.get("version", 1)
    if version not in SUPPORTED_VERSIONS or isinstance(version, bool):
        expected = " or ".join(map(str, SUPPORTED_VERSIONS))
        problems.append((("version",), f"expected {expected} (got {_describe(version)})"))

    routers = data.get("routers") or {}
    if not isinstance(routers, Mapping):
        problems.append((("routers",), f"expected a mapping of router name → router spec (got {_describe(routers)})"))
        routers = {}

    state = data.get("state") or {}
    if not isinstance(state, Mapping):
        problems.append((("state",), f"expected a mapping like {{backend: redis, url: ...}} (got {_describe(state)})"))
        state = {}
    state = {k: SecretStr(v) if k == "url" and isinstance(v, str) else v for k, v in state.items()}

    raw_models = data.get("models")
    models: dict[str, ModelSpec] = {}
    if raw_models is None:
        raw_models = {}
    if not isinstance(raw_models, Mapping):
        problems.append((("models",), f"expected a mapping of model name → model spec (got {_describe(raw_models)})"))
        raw_models = {}
    for model_name, raw in raw_models.items():
        spec = _model_spec(model_name, raw, problems)
        if spec is not None:
            models[spec.name] = spec

    if problems:
        raise _error(name, problems, lines)
    config = GatewayConfig(source=name, models=models, routers=dict(routers), state=state, version=version)
    config._lines.update(lines)
    return config


def _model_spec(name: object, raw: Any, problems: list[_Problem]) -> ModelSpec | None:
    base: KeyPath = ("models", str(name))
    if not isinstance(name, str) or not name:
        problems.append((base, f"model names must be non-empty strings (got {_describe(name)})"))
        return None
    expected = "a mapping with 'provider' and 'model', or a 'provider:model' string"
    if isinstance(raw, str):
        raw = {"model": raw}
    if not isinstance(raw, Mapping):
        problems.append((base, f"expected {expected} (got {_describe(raw)})"))
        return None
    before = len(problems)
    provider = raw.get("provider")
    model = raw.get("model", raw.get("model_name"))
    model_key = "model" if "model" in raw or "model_name" not in raw else "model_name"
    if provider is not None and not isinstance(provider, str):
        problems.append(
            ((*base, "provider"), f"expected a provider name string such as 'openai' (got {_describe(provider)})")
        )
    if model is not None and not isinstance(model, str):
        problems.append(((*base, model_key), f"expected a model name string (got {_describe(model)})"))
    if provider is None and model is None:
        problems.append(
            (
                (*base, "model"),
                "missing field 'model': expected 'provider:model' (e.g. 'openai:gpt-4o-mini'), "
                "or 'provider' and 'model' fields",
            )
        )
    params = {k: v for k, v in raw.items() if k not in ("provider", "model", "model_name")}
    if any(not isinstance(k, str) for k in params):
        problems.append((base, "parameter names must be strings"))
        return None
    try:
        checked = _CommonParams.model_validate(params)
    except ValidationError as exc:
        problems.extend(((*base, *path), what) for path, what in _registry.validation_problems(exc))
    else:
        params = {**params, **checked.model_dump(exclude_unset=True)}
    if len(problems) > before:
        return None
    try:
        provider_name, model_name = _registry.parse_model_string(model, provider)
    except ConfigurationError as exc:
        where = "provider" if provider is not None else model_key
        problems.append(((*base, where), exc.message))
        return None
    params = {k: SecretStr(v) if is_secret(k) and isinstance(v, str) else v for k, v in params.items()}
    return ModelSpec(name=name, provider=provider_name, model=model_name, params=params)


# ---------------------------------------------------------------------- errors
def _line_for(lines: Mapping[tuple[str, ...], int], path: KeyPath) -> int | None:
    key = tuple(map(str, path))
    while key:
        if key in lines:
            return lines[key]
        key = key[:-1]
    return None


def _error(source: str, problems: Iterable[_Problem], lines: Mapping[tuple[str, ...], int]) -> ConfigurationError:
    items = list(problems)
    rendered: list[str] = []
    first_line: int | None = None
    for path, what in items:
        line = _line_for(lines, path)
        first_line = first_line if first_line is not None else line
        key_path = _registry.format_key_path(path) or "(top level)"
        rendered.append(f"{'line ' + str(line) + ', ' if line else ''}{key_path}: {what}")
    if len(rendered) == 1:
        message = f"{source}, {rendered[0]}"
    else:
        message = f"{source}: {len(rendered)} problems:\n" + "\n".join(f"  - {r}" for r in rendered)
    first_path = _registry.format_key_path(items[0][0]) if items else None
    return ConfigurationError(message, source=source, key_path=first_path or None, line=first_line, problems=rendered)
