"""``multigateway health``: ask each model's provider whether it is serving.

Every model the options name is probed with its own ``ahealth_check()`` (a cheap
call such as listing models), all at once: a router's deployments, a config's
models and routers, or each ``--model``. Prints ok / DOWN, latency and the error.
Exit code 3 when any is down; a model without a health check shows ``n/a``. With a
``state:`` section in the config, says whether the shared state (Redis) is live.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from langchain_multigateway.cli._common import _load, add_model_options, named_models, table
from langchain_multigateway.cli._errors import EXIT_OK, EXIT_UNREACHABLE

__all__ = ["check", "register", "run"]


async def _probe(name: str, model: Any) -> tuple[str, Any, Any]:
    probe = getattr(model, "ahealth_check", None)
    provider = getattr(model, "provider_name", None) or getattr(model, "model_provider", None) or model._llm_type
    label = f"{provider}:{getattr(model, 'model', None) or getattr(model, 'model_name', '?')}"
    if not callable(probe):
        return name, label, None
    return name, label, await probe()


async def check(models: list[tuple[str, Any]]) -> list[tuple[str, Any, Any]]:
    """``(name, provider:model, HealthStatus or None)`` for each model, probed concurrently."""
    return list(await asyncio.gather(*(_probe(name, model) for name, model in models)))


def run(args: argparse.Namespace) -> int:
    found = asyncio.run(check(named_models(args)))
    rows: list[tuple[Any, ...]] = []
    down = 0
    for name, label, status in found:
        if status is None:
            rows.append((name, label, "n/a", None, "no health check for this model class"))
            continue
        down += not status.ok
        rows.append((name, label, "ok" if status.ok else "DOWN", f"{status.latency_ms:.0f} ms", status.error))
    print(table(("name", "model", "status", "latency", "error"), rows, right=(3,)))
    shared = _shared_state(args)
    if shared is not None:  # the config's state: section (routers serve on local state when it is down)
        print(f"\nshared state: {shared.backend} {'live' if shared.live else 'DOWN'} ({shared.detail})")
        down += not shared.live
    if down:
        print(f"\n{down} of {len(found) + (shared is not None)} down")
        return EXIT_UNREACHABLE
    return EXIT_OK


def _shared_state(args: argparse.Namespace) -> Any:
    config = _load(args)
    if config is None or config.state.get("backend", "memory") == "memory":
        return None
    from langchain_multigateway.state.settings import StateSettingsError, check_state

    try:
        return check_state(config.state)
    except StateSettingsError as exc:
        raise config.error((("state", exc.key), str(exc))) from None


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "health",
        parents=[common],
        help="probe each model or deployment's provider (exit 3 if any is down)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_model_options(parser, strategy=False)
    parser.set_defaults(handler=run)
