"""The config file's ``state:`` section (and a router's ``breaker:``) -> the router's RouterState.

.. code-block:: yaml

    state:
      backend: redis            # or memory (the default)
      url: ${REDIS_URL}         # redis://[user:password@]host:port/db
      namespace: shop           # separates gateways sharing one Redis
      timeout: 0.05             # longest wait per Redis operation, seconds
      fallback: share           # Redis unreachable: each process keeps to its share of a limit (or: closed)

Each router gets a state of its own (a Redis one keyed by the router's name), with the
router's ``breaker:`` settings, and may have a ``budget:``:

.. code-block:: yaml

    routers:
      main:
        budget: {max_cost_usd: 5, period: 1d, provider: openai, on_exceeded: cheaper}

A budget with a ``period`` keeps its spend in the same Redis (``state: {backend: redis}``),
shared by every process and host, else in the usage ledger's SQLite file. Its ``name``
(default: the router's) is what processes share.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import SecretStr

from langchain_multigateway.state.base import RouterState, StateHealth
from langchain_multigateway.state.memory import MemoryState

__all__ = ["BACKENDS", "StateSettingsError", "budget_from_settings", "check_state", "state_from_settings"]

BACKENDS = ("memory", "redis")
_REDIS_KEYS = (
    "backend",
    "url",
    "namespace",
    "timeout",
    "reconnect_interval",
    "ttl",
    "inflight_lease",
    "fallback",
    "down_after",
)
_BUDGET_KEYS = ("max_cost_usd", "max_tokens", "period", "name", "provider", "model", "scope", "key", "on_exceeded")


class StateSettingsError(ValueError):
    """A ``state:`` or ``breaker:`` setting is wrong; ``key`` names it."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


def state_from_settings(
    settings: Mapping[str, Any] | None, *, router: str, breaker: Mapping[str, Any] | None = None
) -> RouterState:
    """The state for router ``router`` from the ``state:`` section and its ``breaker:`` settings.

    Raises:
        StateSettingsError: an unknown backend or key, a missing ``url``, or a value the
            state rejects; ``key`` is the offending key (``"breaker"`` for breaker values).
    """
    settings = dict(settings or {})
    backend = settings.get("backend", "memory")
    if backend not in BACKENDS:
        raise StateSettingsError("backend", f"expected one of: {', '.join(BACKENDS)} (got {backend!r})")
    allowed = ("backend",) if backend == "memory" else _REDIS_KEYS
    for key in settings:
        if key not in allowed:
            expected = ", ".join(allowed)
            raise StateSettingsError(str(key), f"unknown key for backend {backend}; expected one of: {expected}")
    breaker_options = dict(breaker or {})
    if backend == "memory":
        return _built("breaker", MemoryState, breaker_options)
    url = settings.pop("url", None)
    if isinstance(url, SecretStr):  # the config file keeps it secret (it may hold a password)
        url = url.get_secret_value()
    if not isinstance(url, str) or not url:
        raise StateSettingsError("url", "expected a redis:// URL, e.g. url: ${REDIS_URL}")
    settings.pop("backend")
    namespace = settings.get("namespace", "multigateway")
    if not isinstance(namespace, str) or not namespace:
        raise StateSettingsError("namespace", "expected a non-empty string")
    from langchain_multigateway.state.redis import RedisState  # the redis extra is optional

    _built("breaker", MemoryState, dict(breaker_options))  # report breaker mistakes as such
    for key, value in breaker_options.items():
        if key in settings:
            raise StateSettingsError("breaker", f"{key} is a state: setting, not a breaker: one")
        settings[key] = value
    return _built("state", RedisState, {"url": url, "router": router, **settings})


def _built(key: str, cls: Any, options: dict[str, Any]) -> RouterState:
    try:
        state: RouterState = cls(**options)
    except TypeError as exc:
        raise StateSettingsError(key, f"unknown setting: {exc}") from None
    except (ValueError, ImportError) as exc:
        raise StateSettingsError(key, str(exc)) from None
    return state


def budget_from_settings(settings: Any, *, router: str, state: RouterState | None) -> tuple[Any, str]:
    """A router's ``budget:`` mapping -> ``(Budget, on_budget_exceeded)``.

    Raises:
        StateSettingsError: not a mapping, an unknown key, or a value ``Budget`` rejects
            (``key`` names it; ``""`` for the whole section).
    """
    from langchain_multigateway.usage.budgets import Budget

    if not isinstance(settings, Mapping):
        raise StateSettingsError("", "expected a mapping such as {max_cost_usd: 5, period: 1d}")
    options = dict(settings)
    for key in options:
        if key not in _BUDGET_KEYS:
            raise StateSettingsError(str(key), f"unknown key; expected one of: {', '.join(_BUDGET_KEYS)}")
    mode = options.pop("on_exceeded", "raise")
    if mode not in ("raise", "cheaper"):
        raise StateSettingsError("on_exceeded", f"expected raise or cheaper (got {mode!r})")
    options.setdefault("name", router)
    spend_store = getattr(state, "spend_store", None)
    if options.get("period") is not None and callable(spend_store):
        options["store"] = spend_store()  # shared with every process on this Redis
    try:
        return Budget(**options), str(mode)
    except (TypeError, ValueError) as exc:
        raise StateSettingsError("", str(exc)) from None


def check_state(settings: Mapping[str, Any] | None) -> StateHealth:
    """Build the ``state:`` section's backend and ask it now (one round trip for Redis)."""
    state = state_from_settings(settings, router="health")
    ping = getattr(state, "ping", None)
    try:
        if callable(ping):
            ping()
        return state.health()
    finally:
        close = getattr(state, "close", None)
        if callable(close):
            close()
