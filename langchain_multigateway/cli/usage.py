"""``multigateway usage``: what the ledger recorded, grouped, or as CSV.

``chat`` and ``batch`` record every call (and failed attempt) in a SQLite ledger:
``--ledger PATH``, else ``$MULTIGATEWAY_LEDGER``, else ``~/.multigateway/usage.sqlite3``.

Examples:
    multigateway usage                       # totals per model
    multigateway usage --by day --since 2025-06-01
    multigateway usage --csv > calls.csv     # every record
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from typing import Any

from langchain_multigateway.cli._common import add_ledger_option, ledger_path, table
from langchain_multigateway.cli._errors import UsageError

__all__ = ["register", "run"]

GROUPS = ("model", "day", "tag", "deployment", "provider", "outcome")


def since(value: str | None) -> datetime | None:
    """``--since`` as a datetime (UTC when no zone is given)."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        msg = f"--since expects an ISO date or time such as 2025-06-01 or 2025-06-01T12:00 (got {value!r})"
        raise UsageError(msg) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _cost(row: dict[str, Any]) -> str:
    # As UsageCallbackHandler.summary() shows it: n/a when nothing was priced, never a made-up 0.
    cost = row.get("cost_usd")
    if cost is None:
        return "n/a"
    return f"{cost:.6f}" + ("+?" if row.get("unpriced") else "")


def run(args: argparse.Namespace) -> int:
    start = since(args.since)
    path = ledger_path(args)
    if not path.exists():
        print(f"no ledger at {path} yet: `multigateway chat` and `multigateway batch` write one", file=sys.stderr)
        return 0
    from langchain_multigateway.usage import Ledger

    try:
        ledger = Ledger(path)
    except Exception as exc:  # not a SQLite file, a directory, no permission
        msg = f"cannot read the usage ledger at {path}: {exc} (--ledger PATH names another)"
        raise UsageError(msg) from exc
    with ledger:
        if args.csv:
            ledger.export_csv(sys.stdout, since=start)
            return 0
        rows = ledger.totals(by=args.by, since=start)
    body = [
        (
            r["key"],
            r["requests"],
            r["errors"],
            r["input_tokens"],
            r["output_tokens"],
            r["total_tokens"],
            _cost(r),
            "-" if r["mean_latency_ms"] is None else f"{r['mean_latency_ms']:.0f}",
        )
        for r in rows
    ]
    header = (args.by, "requests", "errors", "input", "output", "total", "cost_usd", "mean_ms")
    print(table(header, body, right=range(1, 8)))
    if any(r.get("unpriced") for r in rows):
        print("n/a: no price known for that model (cost is never guessed); add one with set_price")
    return 0


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "usage",
        parents=[common],
        help="totals from the usage ledger by model, day, tag or deployment (or --csv)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_ledger_option(parser, optional=False)
    parser.add_argument("--by", choices=GROUPS, default="model", help="group by (default: model)")
    parser.add_argument("--since", metavar="ISO", help="only calls at or after this date/time (UTC unless given)")
    parser.add_argument("--csv", action="store_true", help="every matching record as CSV on stdout")
    parser.set_defaults(handler=run)
