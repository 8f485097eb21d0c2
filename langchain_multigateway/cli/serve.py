"""``multigateway serve``: the gateway as an OpenAI- and Anthropic-compatible HTTP server.

    multigateway serve --config gateway.yaml [--host 127.0.0.1] [--port 4000] [--workers N]

Every router and model of the config is served under its name. Calls need a virtual
key (``multigateway keys create``) or the master key ($MULTIGATEWAY_MASTER_KEY), sent
as ``Authorization: Bearer <key>`` or ``x-api-key``. Each call is recorded in the
usage ledger with its key. On SIGTERM / Ctrl-C the server stops taking connections
and lets calls in flight (streams too) finish for up to --graceful-timeout seconds.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from langchain_multigateway.cli._common import LEDGER_ENV, default_ledger_path
from langchain_multigateway.cli._errors import EXIT_OK, UsageError

__all__ = ["register", "run"]


def run(args: argparse.Namespace) -> int:
    try:
        import uvicorn
    except ImportError as exc:
        msg = "multigateway serve needs the server extra: pip install 'langchain-multigateway[server]'"
        raise UsageError(msg) from exc
    from langchain_multigateway.config import load_config
    from langchain_multigateway.server.runtime import ENV

    if args.workers < 1:
        raise UsageError(f"--workers must be at least 1 (got {args.workers})")
    for flag, value in (("--header-timeout", args.header_timeout), ("--body-timeout", args.body_timeout)):
        if not value > 0:
            raise UsageError(f"{flag} must be a positive number of seconds (got {value})")
    http: Any = "auto"
    try:
        from langchain_multigateway.server.protocol import BoundedHttpToolsProtocol

        http = BoundedHttpToolsProtocol  # each request's headers within --header-timeout
    except ImportError:  # no httptools: uvicorn's h11 protocol, whose headers have no deadline
        print("warning: httptools is not installed: request headers have no deadline", file=sys.stderr)
    config = load_config(args.config)  # fail here, once, with the file's line, not in every worker
    if not config.models and not config.routers:
        raise UsageError(f"{args.config} declares no models and no routers: nothing to serve")
    env = {
        ENV["config"]: os.path.abspath(args.config),
        ENV["keys"]: os.path.abspath(os.path.expanduser(args.keys)) if args.keys else "",
        ENV["ledger"]: "" if args.no_ledger else str(args.ledger or default_ledger_path()),
        ENV["no_auth"]: "1" if args.no_auth else "0",
        ENV["max_body_bytes"]: str(args.max_body_bytes),
        ENV["metrics"]: "0" if args.no_metrics else "1",
        ENV["body_timeout"]: str(args.body_timeout),
        ENV["header_timeout"]: str(args.header_timeout),
    }
    os.environ.update(env)
    if args.workers > 1:
        if str(config.state.get("backend", "memory")) == "redis":
            warning = None  # breakers, each key's rpm/tpm and each key's budget are shared in Redis
        else:
            warning = (
                f"{args.workers} workers: breakers, rate windows and key limits are kept per worker (no shared "
                f"state backend: configure state: {{backend: redis}}), so a key's --rpm 60 lets up to "
                f"{60 * args.workers} requests a minute through"
            )
        if warning:
            print(f"warning: {warning}", file=sys.stderr)
    if args.no_auth:
        print("warning: --no-auth: anyone who can reach this port can call every model", file=sys.stderr)
    print(
        f"multigateway serving {', '.join(sorted({*config.routers, *config.models}))} on "
        f"http://{args.host}:{args.port}/v1",
        file=sys.stderr,
        flush=True,
    )
    uvicorn.run(
        "langchain_multigateway.server.runtime:app_from_env",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        timeout_graceful_shutdown=args.graceful_timeout,
        # Longer than clients' idle-connection expiry (httpx and the openai SDK: 5 s), so the client
        # closes an idle connection first; equal timeouts race and drop a request sent as the server closes.
        timeout_keep_alive=args.keep_alive,
        http=http,
        # With --workers, uvicorn pings each worker and kills one that does not answer in time; its
        # default of 5 s killed workers still importing on a busy machine, over and over (none came up).
        timeout_worker_healthcheck=30,
        access_log=args.access_log,
        log_level=args.log_level,
        server_header=False,
    )
    return EXIT_OK


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "serve",
        parents=[common],
        help="serve the config's routers over OpenAI- and Anthropic-compatible HTTP",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", required=True, metavar="FILE", help="the gateway YAML file (models: and routers:)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine)")
    parser.add_argument("--port", type=int, default=4000, help="port (default 4000)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument(
        "--keys", metavar="PATH", help="virtual-key store; default $MULTIGATEWAY_KEYS or ~/.multigateway/keys.sqlite3"
    )
    parser.add_argument(
        "--ledger", metavar="PATH", help=f"usage ledger; default ${LEDGER_ENV} or ~/.multigateway/usage.sqlite3"
    )
    parser.add_argument(
        "--no-ledger",
        action="store_true",
        help="do not record calls (per-key budgets then count from the server's start)",
    )
    parser.add_argument(
        "--no-auth", action="store_true", help="serve without keys (only where nobody else can reach the port)"
    )
    parser.add_argument("--no-metrics", action="store_true", help="do not serve /metrics")
    parser.add_argument(
        "--max-body-bytes",
        type=int,
        default=4 * 1024 * 1024,
        metavar="N",
        help="larger request bodies get 413 (default 4 MiB)",
    )
    parser.add_argument(
        "--body-timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="a request body not received within this gets 408 (default 30: slow-sending clients are cut off)",
    )
    parser.add_argument(
        "--header-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="a request whose line and headers take longer gets 408 and its connection closed (default 10)",
    )
    parser.add_argument(
        "--graceful-timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="on shutdown, how long calls in flight may take to finish (default 30)",
    )
    parser.add_argument(
        "--access-log", action="store_true", help="log every request line (off by default: it costs throughput)"
    )
    parser.add_argument(
        "--keep-alive",
        type=float,
        default=65.0,
        metavar="SECONDS",
        help="how long an idle client connection is kept open (default 65)",
    )
    parser.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    parser.set_defaults(handler=run)
