"""``multigateway keys``: create, list, revoke virtual keys, and show their usage.

    multigateway keys create --name team-a [--models fast,main] [--rpm 60] [--tpm 100000]
                             [--budget 10 --period 30d] [--expires 90d | 2026-12-31]
    multigateway keys list
    multigateway keys revoke KEY_ID_OR_NAME
    multigateway keys usage KEY_ID_OR_NAME

``create`` prints the key once: the store keeps only its SHA-256 hash. The store is
a SQLite file (--keys, $MULTIGATEWAY_KEYS, or ~/.multigateway/keys.sqlite3); a running
server sees new and revoked keys within a second. ``usage`` reads the usage ledger
the server writes (--ledger, $MULTIGATEWAY_LEDGER, or ~/.multigateway/usage.sqlite3).
Over HTTP, the master key does the same at /admin/keys.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime
from typing import Any

from langchain_multigateway.cli._common import add_ledger_option, ledger_path, table
from langchain_multigateway.cli._errors import EXIT_OK, UsageError

__all__ = ["register", "run"]


def _when(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%d %H:%M")


def format_cost(usd: float | None) -> str:
    return "-" if usd is None else f"${usd:.4f}"


def _store(args: argparse.Namespace) -> Any:
    from langchain_multigateway.server.keys import KeyStore

    return KeyStore(args.keys)


def _create(args: argparse.Namespace) -> int:
    models = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else None
    store = _store(args)
    try:
        secret, key = store.create(
            args.name,
            models=models,
            rpm=args.rpm,
            tpm=args.tpm,
            budget_usd=args.budget,
            period=args.period,
            expires=args.expires,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    finally:
        store.close()
    if args.json:
        print(json.dumps({"key": secret, **key.to_public()}))
        return EXIT_OK
    print(secret)
    print(f"\ncreated {key.id} ({key.name}); the key above is shown once, copy it now", flush=True)
    return EXIT_OK


def _list(args: argparse.Namespace) -> int:
    store = _store(args)
    try:
        keys = store.list()
    finally:
        store.close()
    if args.json:
        print(json.dumps([k.to_public() for k in keys]))
        return EXIT_OK
    rows = [
        (
            k.id,
            k.name,
            k.prefix + "…",
            ",".join(k.models) if k.models is not None else "all",
            k.rpm or "-",
            k.tpm or "-",
            f"${k.budget_usd:g}" + (f"/{k.period_seconds / 86400:g}d" if k.period_seconds else "")
            if k.budget_usd is not None
            else "-",
            _when(k.expires_at),
            k.state(),
        )
        for k in keys
    ]
    print(table(("id", "name", "key", "models", "rpm", "tpm", "budget", "expires", "state"), rows))
    return EXIT_OK


def _find(args: argparse.Namespace, store: Any) -> Any:
    key = store.get(args.key)
    if key is None:
        raise UsageError(f"no key with id or name {args.key!r} (multigateway keys list)")
    return key


def _revoke(args: argparse.Namespace) -> int:
    store = _store(args)
    try:
        key = store.revoke(_find(args, store).id)
    finally:
        store.close()
    print(f"revoked {key.id} ({key.name})")
    return EXIT_OK


def _usage(args: argparse.Namespace) -> int:
    from langchain_multigateway.server.admin import key_usage
    from langchain_multigateway.usage import Ledger

    store = _store(args)
    try:
        key = _find(args, store)
    finally:
        store.close()
    since = key.period_start(time.time()) if key.period_seconds else None
    with Ledger(ledger_path(args)) as ledger:
        report = key_usage(ledger, key, since)
    if args.json:
        print(json.dumps(report))
        return EXIT_OK
    rows = [
        (r["key"], r["requests"], r["errors"], r["input_tokens"], r["output_tokens"], format_cost(r["cost_usd"]))
        for r in report["by_model"]
    ]
    total = report["total"]
    rows.append(
        (
            "total",
            total["requests"],
            total["errors"],
            total["input_tokens"],
            total["output_tokens"],
            format_cost(total["cost_usd"]),
        )
    )
    period = f" since {_when(since)} UTC" if since is not None else ""
    budget = f" of ${key.budget_usd:g}" if key.budget_usd is not None else ""
    print(f"{key.id} ({key.name}){period}: {format_cost(total['cost_usd'])}{budget}")
    print(table(("model", "requests", "errors", "input", "output", "cost"), rows, right=(1, 2, 3, 4, 5)))
    return EXIT_OK


def run(args: argparse.Namespace) -> int:
    actions = {"create": _create, "list": _list, "revoke": _revoke, "usage": _usage}
    return int(actions[args.action](args))


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "keys",
        parents=[common],
        help="create, list, revoke virtual keys for `multigateway serve`; show their usage",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    store = argparse.ArgumentParser(add_help=False)
    store.add_argument(
        "--keys", metavar="PATH", help="key store; default $MULTIGATEWAY_KEYS or ~/.multigateway/keys.sqlite3"
    )
    store.add_argument("--json", action="store_true", help="print JSON")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = actions.add_parser("create", parents=[common, store], help="create a key (printed once)")
    create.add_argument("--name", required=True, help="who the key is for (shown in lists, metrics, the ledger)")
    create.add_argument("--models", metavar="A,B", help="routers/models it may use (default: all)")
    create.add_argument("--rpm", type=int, help="requests per minute")
    create.add_argument("--tpm", type=int, help="tokens per minute")
    create.add_argument("--budget", type=float, metavar="USD", help="spending limit in USD")
    create.add_argument("--period", metavar="DURATION", help="budget period such as 30d or 1w (default: lifetime)")
    create.add_argument("--expires", metavar="WHEN", help="a duration from now (90d) or a date (2026-12-31)")
    actions.add_parser("list", parents=[common, store], help="list keys (never the keys themselves)")
    revoke = actions.add_parser("revoke", parents=[common, store], help="revoke a key")
    revoke.add_argument("key", metavar="KEY_ID_OR_NAME")
    usage = actions.add_parser("usage", parents=[common, store], help="requests, tokens and cost of a key")
    usage.add_argument("key", metavar="KEY_ID_OR_NAME")
    add_ledger_option(usage, optional=False)
    parser.set_defaults(handler=run)
