"""The ``multigateway`` command: demo, chat, batch, health, providers, usage, serve, keys, dashboard.

Each command lives in its own module here (``demo.py``, ``chat.py``, ...) with a
``register(commands, common)`` that adds its parser and a ``run(args)`` that does
the work. Heavy imports (provider SDKs, LangChain) happen inside ``run`` only, so
``multigateway --help`` answers at once.

Exit codes (the same for every command):

    0    ok
    1    runtime failure (a call failed, every deployment failed for another reason)
    2    usage or configuration error (bad arguments, bad input file, bad config file,
         unknown provider or model, missing API key: the message names the variable)
    3    provider unreachable or credentials rejected (connection refused, timeout,
         HTTP 401/403)
    130  interrupted (Ctrl-C); ``batch`` resumes where it stopped when run again

Errors are one line a user can act on; ``--debug`` adds the traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Sequence

from langchain_multigateway.cli import batch, chat, dashboard, demo, health, keys, providers, serve, usage
from langchain_multigateway.cli._errors import EXIT_CODES_HELP, EXIT_INTERRUPTED, EXIT_OK, report

__all__ = ["build_parser", "main"]

_COMMANDS = (demo, chat, batch, health, providers, usage, serve, keys, dashboard)


def build_parser() -> argparse.ArgumentParser:
    """The ``multigateway`` argument parser with every command."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="show the full traceback on errors"
    )
    parser = argparse.ArgumentParser(
        prog="multigateway",
        description="Many LLM providers behind one gateway: routing, failover, usage and cost.",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in _COMMANDS:
        module.register(commands, common)
    return parser


def _stdout_gone() -> bool:
    """Whether stdout is a pipe whose reader has closed it (not some other broken socket)."""
    try:
        import select

        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no poll() (Windows), or stdout is no file
        return True


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``multigateway`` with ``argv`` (``sys.argv[1:]`` when None); returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        if not _stdout_gone():
            if args.debug:
                raise
            return report(BrokenPipeError("broken pipe"))
        # The reader left (`multigateway usage --csv | head -3`): it had what it wanted.
        # Point stdout at /dev/null so the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except Exception as exc:
        if args.debug:  # the traceback too, with the same exit code (scripts test it)
            traceback.print_exc()
        return report(exc)
