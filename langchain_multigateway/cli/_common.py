"""What several commands share: choosing the model or router, the ledger, tables."""

from __future__ import annotations

import argparse
import os
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from langchain_multigateway.cli._errors import UsageError

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

    from langchain_multigateway.config import GatewayConfig
    from langchain_multigateway.usage import Ledger, UsageCallbackHandler

__all__ = [
    "API_KEY_ENV",
    "LEDGER_ENV",
    "add_generation_options",
    "add_ledger_option",
    "add_model_options",
    "build_target",
    "call_config",
    "default_ledger_path",
    "format_cost",
    "generation_kwargs",
    "named_models",
    "open_ledger",
    "quiet_price_warnings",
    "table",
]

LEDGER_ENV = "MULTIGATEWAY_LEDGER"
API_KEY_ENV = "MULTIGATEWAY_API_KEY"
MODEL_HELP = "a 'provider:model' (e.g. openai:gpt-4o-mini), or a model name from --config; repeat to route"


def add_model_options(parser: argparse.ArgumentParser, *, strategy: bool = True) -> None:
    """``--config``, ``--model`` (repeatable), ``--router`` and ``--strategy``."""
    group = parser.add_argument_group(
        "which model", "With neither --config nor --model, the DEFAULT_LLM_MODEL environment variable names it."
    )
    group.add_argument("--config", metavar="FILE", help="a gateway YAML file (models: and routers:)")
    group.add_argument("--model", action="append", default=[], metavar="SPEC", help=MODEL_HELP)
    group.add_argument("--router", metavar="NAME", help="the router of --config to use (default: its first one)")
    group.add_argument(
        "--base-url",
        metavar="URL",
        help="server for the --model specs, e.g. http://127.0.0.1:8088/v1 for a local OpenAI-compatible server",
    )
    group.add_argument(
        "--api-key",
        metavar="KEY",
        default=argparse.SUPPRESS,
        help=f"API key for the --model specs (default: ${API_KEY_ENV}, else the provider's own variable such as "
        "OPENAI_API_KEY); prefer the variable: a key on the command line shows in the process list",
    )
    if strategy:
        group.add_argument(
            "--strategy",
            metavar="NAME",
            help="routing strategy: ordered, round_robin, weighted, least_latency, least_busy, cheapest, "
            "quality, balanced",
        )


def add_generation_options(parser: argparse.ArgumentParser) -> None:
    """``--max-tokens`` and ``--temperature``, sent with every call."""
    parser.add_argument("--max-tokens", type=int, metavar="N", help="cap on generated tokens per answer")
    parser.add_argument("--temperature", type=float, metavar="T", help="sampling temperature")


def generation_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The call parameters ``--max-tokens`` / ``--temperature`` ask for."""
    found = {"max_tokens": getattr(args, "max_tokens", None), "temperature": getattr(args, "temperature", None)}
    if found["max_tokens"] is not None and found["max_tokens"] < 1:
        msg = f"--max-tokens must be at least 1 (got {found['max_tokens']})"
        raise UsageError(msg)
    return {k: v for k, v in found.items() if v is not None}


def add_ledger_option(parser: argparse.ArgumentParser, *, optional: bool = True) -> None:
    """``--ledger PATH`` (and ``--no-ledger`` for commands that write one)."""
    parser.add_argument(
        "--ledger",
        metavar="PATH",
        help=f"usage ledger (SQLite); default ${LEDGER_ENV} or ~/.multigateway/usage.sqlite3",
    )
    if optional:
        parser.add_argument("--no-ledger", action="store_true", help="do not record calls in the ledger")


def default_ledger_path() -> Path:
    """``$MULTIGATEWAY_LEDGER``, else ``~/.multigateway/usage.sqlite3``."""
    env = os.environ.get(LEDGER_ENV, "").strip()
    return Path(env).expanduser() if env else Path.home() / ".multigateway" / "usage.sqlite3"


def ledger_path(args: argparse.Namespace) -> Path:
    return Path(args.ledger).expanduser() if getattr(args, "ledger", None) else default_ledger_path()


def open_ledger(args: argparse.Namespace) -> Ledger | None:
    """The ledger chat and batch write to, or None with ``--no-ledger``."""
    if getattr(args, "no_ledger", False):
        return None
    from langchain_multigateway.usage import Ledger

    path = ledger_path(args)
    try:
        return Ledger(path)
    except Exception as exc:
        msg = f"cannot open the usage ledger at {path}: {exc} (use --ledger PATH or --no-ledger)"
        raise UsageError(msg) from exc


def _check_strategy(name: str) -> None:
    from langchain_multigateway.routing.strategies import STRATEGIES

    if name not in STRATEGIES:
        msg = f"unknown strategy {name!r}; expected one of: {', '.join(sorted(STRATEGIES))}"
        raise UsageError(msg)


def _load(args: argparse.Namespace) -> GatewayConfig | None:
    if not args.config:
        if args.router:
            msg = "--router names a router of a configuration file: give --config FILE too"
            raise UsageError(msg)
        return None
    from langchain_multigateway.config import load_config

    return load_config(args.config)


def _endpoint(args: argparse.Namespace) -> dict[str, Any]:
    """``base_url`` / ``api_key`` for ``provider:model`` specs (the key as a SecretStr, never echoed)."""
    from pydantic import SecretStr

    found: dict[str, Any] = {}
    if getattr(args, "base_url", None):
        found["base_url"] = args.base_url
    key = getattr(args, "api_key", None) or os.environ.get(API_KEY_ENV, "").strip()
    if key:
        found["api_key"] = SecretStr(key)
    if hasattr(args, "api_key"):
        found["explicit_key"] = True
    return found


def _sent(endpoint: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in endpoint.items() if k != "explicit_key"}


def _refuse_endpoint(config: GatewayConfig, spec: str, endpoint: dict[str, Any]) -> None:
    if endpoint.get("base_url") or endpoint.get("explicit_key"):
        msg = (
            f"--base-url and --api-key apply to 'provider:model' specs; {spec!r} is a model of "
            f"{config.source}: set its base_url / api_key there"
        )
        raise UsageError(msg)


def _model(config: GatewayConfig | None, spec: str, endpoint: dict[str, Any]) -> BaseChatModel:
    if config is not None and spec in config.models:
        _refuse_endpoint(config, spec, endpoint)
        return config.build_model(spec)
    endpoint = _sent(endpoint)
    from langchain_multigateway.registry import init_gateway_model

    return init_gateway_model(spec, **endpoint)


def _listed(args: argparse.Namespace, config: GatewayConfig | None) -> list[tuple[str, BaseChatModel]]:
    endpoint = _endpoint(args)
    if args.model:
        return [(spec, _model(config, spec, endpoint)) for spec in args.model]
    if config is None:
        from langchain_multigateway.registry import DEFAULT_MODEL_ENV, default_gateway_model

        return [(os.environ.get(DEFAULT_MODEL_ENV, "default"), default_gateway_model(**_sent(endpoint)))]
    if endpoint.get("base_url") or endpoint.get("explicit_key"):
        msg = f"--base-url and --api-key apply to --model specs; the models of {config.source} set their own"
        raise UsageError(msg)
    return list(config.build_models().items())


class Unbuilt:
    """A model that cannot be built for want of an API key: ``health`` lists it as down."""

    def __init__(self, provider: str, model: str, error: BaseException) -> None:
        self.provider_name = provider
        self.model = model
        self._llm_type = provider
        self.error = error

    async def ahealth_check(self) -> Any:
        from langchain_multigateway.chat_models._base import HealthStatus

        return HealthStatus(
            ok=False, latency_ms=0.0, error=str(self.error), provider=self.provider_name, model=self.model
        )


def _or_unbuilt(build: Any, provider: str, model: str) -> Any:
    from langchain_multigateway.errors import MissingAPIKeyError

    try:
        return build()
    except MissingAPIKeyError as exc:
        return Unbuilt(getattr(exc, "provider_name", None) or provider, getattr(exc, "model_name", None) or model, exc)


def _config_model_or_unbuilt(config: GatewayConfig, name: str) -> Any:
    """``models.<name>`` built; :class:`Unbuilt` when only its key is missing; else the located error."""
    from langchain_multigateway.errors import MissingAPIKeyError

    spec = config.models[name]
    try:
        return spec.build()
    except MissingAPIKeyError as exc:
        return Unbuilt(spec.provider, spec.model, exc)
    except Exception:
        return config.build_model(name)  # raises the error located at its file and line


def named_models(args: argparse.Namespace) -> list[tuple[str, Any]]:
    """Every model the options name, once each, by name (for ``health``).

    A config's routers add their deployments; a deployment that is a model of the
    config is that model's row (named ``model (router: deployment)`` when the names
    differ). A model with no API key is an :class:`Unbuilt` (health shows it down).
    """
    config = _load(args)
    endpoint = _endpoint(args)
    if args.model:
        seen: dict[str, Any] = {}
        for spec in args.model:
            if spec in seen:
                continue
            if config is not None and spec in config.models:
                _refuse_endpoint(config, spec, endpoint)
                seen[spec] = _config_model_or_unbuilt(config, spec)
            else:
                provider, _, name = spec.partition(":")
                seen[spec] = _or_unbuilt(lambda spec=spec: _model(config, spec, endpoint), provider, name)
        return list(seen.items())
    if config is None:
        from langchain_multigateway.registry import DEFAULT_MODEL_ENV, default_gateway_model

        spec = os.environ.get(DEFAULT_MODEL_ENV, "default")
        return [(spec, _or_unbuilt(lambda: default_gateway_model(**_sent(endpoint)), *spec.partition(":")[::2]))]
    routers = [args.router] if args.router else list(config.routers)
    for name in routers:
        if name not in config.routers:
            declared = ", ".join(config.routers) or "none"
            msg = f"{config.source}: no router named {name!r}; declared routers: {declared}"
            raise UsageError(msg)
    uses: dict[str, list[str]] = {}
    others: dict[str, Any] = {}
    for router in routers:
        for ref, dep_name, params in _deployment_refs(config, router):
            if ref in config.models:
                uses.setdefault(ref, [])
                if dep_name != ref:
                    uses[ref].append(f"{router}: {dep_name}")
            elif dep_name not in others:
                from langchain_multigateway.registry import init_gateway_model

                provider, _, model = ref.partition(":")
                others[dep_name] = _or_unbuilt(
                    lambda ref=ref, params=params: init_gateway_model(ref, **params), provider, model
                )
    names = list(uses) if args.router else list(config.models)
    found: list[tuple[str, Any]] = []
    for name in names:
        model = _config_model_or_unbuilt(config, name)
        also = uses.get(name)
        found.append((f"{name} ({', '.join(also)})" if also else name, model))
    found.extend(others.items())
    if not found:
        msg = f"{args.config} declares no models and no routers"
        raise UsageError(msg)
    return found


def _deployment_refs(config: GatewayConfig, router: str) -> list[tuple[str, str, dict[str, Any]]]:
    """``(model reference, deployment name, params)`` of each deployment of ``routers.<router>``."""
    raw = config.routers.get(router)
    entries = raw.get("deployments") if isinstance(raw, dict) else None
    if not isinstance(entries, list):
        raise config.error((("routers", router, "deployments"), "expected a non-empty list of deployments"))
    found: list[tuple[str, str, dict[str, Any]]] = []
    for index, entry in enumerate(entries):
        item = {"model": entry} if isinstance(entry, str) else entry
        if not isinstance(item, dict) or not isinstance(item.get("model"), str):
            where = ("routers", router, "deployments", index)
            raise config.error((where, "expected a model reference string or a mapping with 'model'"))
        found.append((item["model"], str(item.get("name") or item["model"]), dict(item.get("params") or {})))
    return found


def _config_router(config: GatewayConfig, name: str) -> Any:
    from langchain_multigateway.routing import router_from_config

    if name not in config.routers:
        declared = ", ".join(config.routers) or "none"
        msg = f"{config.source}: no router named {name!r}; declared routers: {declared}"
        raise UsageError(msg)
    return router_from_config(config, name)


def build_target(args: argparse.Namespace) -> BaseChatModel:
    """The model to call: one model, a router over several ``--model``, or a config's router."""
    strategy = getattr(args, "strategy", None)
    if strategy:
        _check_strategy(strategy)
    config = _load(args)
    if config is not None and not args.model and config.routers:
        return _config_router(config, args.router or next(iter(config.routers)))  # type: ignore[no-any-return]
    models = _listed(args, config)
    if not models:
        msg = f"{args.config} declares no models and no routers"
        raise UsageError(msg)
    if len(models) == 1 and not strategy:
        return models[0][1]
    from langchain_multigateway.routing import Deployment, RoutingChatModel

    return RoutingChatModel(
        deployments=[Deployment(model=m, name=name) for name, m in models], strategy=strategy or "ordered"
    )


def call_config(args: argparse.Namespace, callbacks: Sequence[Any], **metadata: Any) -> dict[str, Any]:
    """A RunnableConfig: callbacks, and ``routing_strategy`` for a config's router."""
    meta = dict(metadata)
    strategy = getattr(args, "strategy", None)
    if strategy:
        meta["routing_strategy"] = strategy
    return {"callbacks": list(callbacks), "metadata": meta}


@contextmanager
def quiet_price_warnings() -> Iterator[None]:
    """Unknown prices show as ``n/a`` in our tables; their one-time warnings add nothing."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="No price known", category=RuntimeWarning)
        warnings.filterwarnings("ignore", message=".*tiktoken.*", category=UserWarning)
        warnings.filterwarnings("ignore", message=".*cl100k_base.*")
        yield


def format_cost(usage: UsageCallbackHandler) -> str:
    """``$0.000123``, or ``n/a`` (and why) when a model has no known price."""
    totals = usage.totals
    if totals.unpriced and not totals.cost_usd:
        return "cost n/a (no price known for this model; add one with set_price)"
    cost = f"cost ${totals.cost_usd:.6f}"
    return cost + (" + unpriced calls" if totals.unpriced else "")


def table(header: Sequence[str], rows: Sequence[Sequence[Any]], *, right: Sequence[int] = ()) -> str:
    """A plain text table; columns in ``right`` are right-aligned."""
    cells = [[("-" if v is None else str(v)) for v in row] for row in [header, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = []
    for index, row in enumerate(cells):
        line = "  ".join(v.rjust(widths[i]) if i in right else v.ljust(widths[i]) for i, v in enumerate(row))
        lines.append(line.rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)
