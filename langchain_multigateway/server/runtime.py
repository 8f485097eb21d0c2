"""Build the served app from a config file: routers, key store, ledger, metrics, limits.

``multigateway serve`` passes its options through environment variables, so each
uvicorn worker process (``--workers N``) builds the same app with :func:`app_from_env`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from langchain_multigateway._redact import register_url
from langchain_multigateway.server.app import ServerSettings, create_app
from langchain_multigateway.server.gateway import Gateway
from langchain_multigateway.server.keys import KeyStore

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from langchain_multigateway.state.spend import SpendStore

__all__ = ["ENV", "app_from_env", "build_app"]

logger = logging.getLogger("langchain_multigateway.server")
_SETTLE_AT_SHUTDOWN_SECONDS = 5.0
"""How long the shutdown waits for the calls uvicorn cut (at its graceful timeout) to be recorded."""

ENV = {
    "config": "MULTIGATEWAY_SERVE_CONFIG",
    "keys": "MULTIGATEWAY_SERVE_KEYS",
    "ledger": "MULTIGATEWAY_SERVE_LEDGER",
    "no_auth": "MULTIGATEWAY_SERVE_NO_AUTH",
    "max_body_bytes": "MULTIGATEWAY_SERVE_MAX_BODY_BYTES",
    "metrics": "MULTIGATEWAY_SERVE_METRICS",
    "body_timeout": "MULTIGATEWAY_SERVE_BODY_TIMEOUT",
    "header_timeout": "MULTIGATEWAY_SERVE_HEADER_TIMEOUT",
}


def build_app(
    config_path: str | os.PathLike[str],
    *,
    keys_path: str | os.PathLike[str] | None = None,
    ledger_path: str | os.PathLike[str] | None = None,
    require_key: bool = True,
    max_body_bytes: int | None = None,
    metrics: bool = True,
    body_timeout: float | None = None,
) -> Starlette:
    """The app serving every router and model of ``config_path``.

    Args:
        keys_path: The virtual-key store (SQLite; ``$MULTIGATEWAY_KEYS`` or
            ``~/.multigateway/keys.sqlite3`` when None).
        ledger_path: Where each call is recorded with its key's tag; None: no ledger.
        require_key: Refuse calls without a valid key (default).
        metrics: Serve ``/metrics`` (needs prometheus-client).
        body_timeout: Seconds a request body may take to arrive (default 30; 408 after).
    """
    from langchain_multigateway.config import load_config
    from langchain_multigateway.server.admin import spent_since
    from langchain_multigateway.server.limits import KeyLimits

    config = load_config(config_path)
    state_url = config.state.get("url")
    # The state URL may hold Redis's password: masked wherever it could appear from now on.
    register_url(state_url.get_secret_value() if isinstance(state_url, SecretStr) else state_url)
    routers = Gateway.routers_of(config)
    ledger = None
    if ledger_path is not None:
        from langchain_multigateway.usage import Ledger

        ledger = Ledger(Path(ledger_path).expanduser())
    server_metrics = None
    if metrics:
        from langchain_multigateway.server.metrics import ServerMetrics

        server_metrics = ServerMetrics()
        server_metrics.watch(routers)
    shared = spend = None
    if str(config.state.get("backend", "memory")) == "redis":
        from langchain_multigateway.state.settings import state_from_settings

        # The keys' rpm/tpm windows, in the same Redis as the routers' state, under their own name.
        shared = state_from_settings(config.state, router="multigateway-virtual-keys")
        spend = _spend_store(config.state)
    limits = KeyLimits(spent_since(ledger) if ledger is not None else None, shared, spend)
    gateway = Gateway(routers, ledger=ledger, metrics=server_metrics, limits=limits)
    keys = KeyStore(keys_path)
    settings = ServerSettings(require_key=require_key)
    if max_body_bytes is not None:
        settings.max_body_bytes = max_body_bytes
    if body_timeout is not None:
        settings.body_timeout = body_timeout

    async def shutdown() -> None:
        if not await gateway.settled(_SETTLE_AT_SHUTDOWN_SECONDS):
            logger.warning("stopping with %d call(s) not yet recorded in the ledger", gateway.unsettled)
        keys.close()
        if ledger is not None:
            ledger.close()

    return create_app(gateway, keys=keys, settings=settings, on_shutdown=shutdown)


def _spend_store(state: dict[str, Any]) -> SpendStore:
    """The keys' budgets in the same Redis as the routers' state (its URL, namespace and timeout)."""
    from langchain_multigateway.state.spend_redis import RedisSpendStore

    url = state.get("url")
    timeout = state.get("timeout")
    return RedisSpendStore(
        url.get_secret_value() if isinstance(url, SecretStr) else str(url),
        namespace=str(state.get("namespace") or "multigateway"),
        timeout=float(timeout) if isinstance(timeout, (int, float)) else 0.5,
    )


def app_from_env() -> Starlette:
    """:func:`build_app` with the options ``multigateway serve`` put in the environment."""
    config = os.environ.get(ENV["config"])
    if not config:
        msg = f"{ENV['config']} is not set: start the server with `multigateway serve --config FILE`"
        raise RuntimeError(msg)
    body = os.environ.get(ENV["max_body_bytes"])
    return build_app(
        config,
        keys_path=os.environ.get(ENV["keys"]) or None,
        ledger_path=os.environ.get(ENV["ledger"]) or None,
        require_key=os.environ.get(ENV["no_auth"]) != "1",
        max_body_bytes=int(body) if body else None,
        metrics=os.environ.get(ENV["metrics"], "1") == "1",
        body_timeout=float(os.environ.get(ENV["body_timeout"]) or 30.0),
    )
