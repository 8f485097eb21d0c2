"""``multigateway dashboard``: the dashboard page over a ledger file, for library users.

    multigateway dashboard --ledger usage.sqlite3 [--config gateway.yaml] [--port 4100]

Serves the same read-only page ``multigateway serve`` has at ``/ui``, over the SQLite
ledger a ``LedgerCallbackHandler`` (or ``chat``/``batch``) writes. With ``--config``
the Deployments panel shows that config's routers: live figures when its state is
shared (``state: {backend: redis}``), otherwise this process's own (idle) view.
The page needs a key: ``$MULTIGATEWAY_MASTER_KEY`` when set, else a random one made
for this run and printed here once. It listens on 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from langchain_multigateway.cli._common import add_ledger_option, ledger_path
from langchain_multigateway.cli._errors import EXIT_OK, UsageError

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from langchain_multigateway.dashboard import DashboardSource

__all__ = ["build_dashboard_app", "register", "run"]

_MASTER_ENV = "MULTIGATEWAY_MASTER_KEY"


def build_dashboard_app(source: DashboardSource, master_key: str) -> Starlette:
    """The dashboard alone as an ASGI app (``/`` leads to ``/ui``)."""
    from starlette.applications import Starlette
    from starlette.responses import RedirectResponse
    from starlette.routing import Route

    from langchain_multigateway._redact import register_secret
    from langchain_multigateway.dashboard import Gatekeeper, dashboard_routes

    register_secret(master_key)  # masked in every log line from now on

    async def home(request: Any) -> RedirectResponse:
        return RedirectResponse("/ui", status_code=303)

    return Starlette(routes=[Route("/", home), *dashboard_routes(source, Gatekeeper(master_key))])


def _source(args: argparse.Namespace) -> DashboardSource:
    from langchain_multigateway.dashboard import DashboardSource

    path = ledger_path(args)
    if not path.is_file():
        msg = f"no ledger at {path}: pass the file your LedgerCallbackHandler or `multigateway serve` writes (--ledger)"
        raise UsageError(msg)
    routers: dict[str, Any] = {}
    if args.config:
        from langchain_multigateway.config import load_config
        from langchain_multigateway.server.gateway import Gateway

        routers = Gateway.routers_of(load_config(args.config))
    keys = None
    if args.keys:
        keys_path = Path(args.keys).expanduser()
        if not keys_path.is_file():
            raise UsageError(f"no key store at {keys_path} (--keys names the file `multigateway keys` uses)")
        from langchain_multigateway.server.keys import KeyStore

        keys = KeyStore(keys_path)
    return DashboardSource(routers=routers, ledger_path=path, keys=keys)


def run(args: argparse.Namespace) -> int:
    try:
        import jinja2  # noqa: F401
        import uvicorn
    except ImportError as exc:
        msg = "multigateway dashboard needs the server extra: pip install 'langchain-multigateway[server]'"
        raise UsageError(msg) from exc
    source = _source(args)
    master = os.environ.get(_MASTER_ENV, "").strip()
    url = f"http://{args.host}:{args.port}/ui"
    if master:
        print(f"multigateway dashboard on {url} (sign in with ${_MASTER_ENV})", file=sys.stderr, flush=True)
    else:
        master = "mg-dash-" + secrets.token_urlsafe(24)
        # Printed once, to this terminal only: the page's one way in for this run.
        print(f"multigateway dashboard on {url}\nsign in with this run's key: {master}", file=sys.stderr, flush=True)
    app = build_dashboard_app(source, master)
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, server_header=False)
    finally:
        if source.keys is not None:
            source.keys.close()
    return EXIT_OK


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "dashboard",
        parents=[common],
        help="open the dashboard page over a usage ledger (deployments, traffic, failovers, cost)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_ledger_option(parser, optional=False)
    parser.add_argument("--config", metavar="FILE", help="the gateway YAML file, for the Deployments panel")
    parser.add_argument("--keys", metavar="PATH", help="a virtual-key store, to name keys and show their budgets")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine)")
    parser.add_argument("--port", type=int, default=4100, help="port (default 4100)")
    parser.add_argument("--log-level", default="warning", choices=["critical", "error", "warning", "info", "debug"])
    parser.set_defaults(handler=run)
