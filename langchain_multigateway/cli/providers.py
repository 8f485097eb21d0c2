"""``multigateway providers``: the registered providers, their default models and origin.

Built-in providers, those added with ``register_provider()`` and those installed
packages declare in the ``langchain_multigateway.providers`` entry-point group.
Nothing is imported to list them: a provider's SDK loads when a model is built.
"""

from __future__ import annotations

import argparse
from typing import Any

from langchain_multigateway.cli._common import table

__all__ = ["register", "run"]


def run(args: argparse.Namespace) -> int:
    from langchain_multigateway.registry import get_provider, list_providers

    rows = []
    for name in list_providers():
        info = get_provider(name)
        target = info.import_path or getattr(info.target, "__qualname__", repr(info.target))
        shown = [p + "..." for p in info.prefixes[:3]]
        more = len(info.prefixes) - len(shown)
        prefixes = ", ".join(shown) + (f" (+{more} more)" if more > 0 else "") if shown else "-"
        rows.append((name, info.default_model or "-", prefixes, info.origin, target))
    print(table(("provider", "default model", "bare names", "origin", "class"), rows))
    print("\nName a model as 'provider:model' (e.g. openai:gpt-4o-mini); bare names resolve by prefix.")
    return 0


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "providers",
        parents=[common],
        help="list the registered providers with their default models and origin",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(handler=run)
