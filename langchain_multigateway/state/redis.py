"""Routing state in Redis, shared by every process and host that points at it, with a local fallback."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
import os
import secrets
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any

from langchain_multigateway._redact import register_url
from langchain_multigateway.state._redis_replies import (
    Local,
    Ticket,
    as_float,
    as_text,
    granted_locally,
    masked,
    refusal,
    reply_version,
)
from langchain_multigateway.state._redis_scripts import ADMIT, COOLDOWN, FORGET, RELEASE, STATS, deployment_keys
from langchain_multigateway.state.base import (
    Admission,
    BreakerPolicy,
    BreakerState,
    DeploymentStats,
    RouterState,
    StateHealth,
)
from langchain_multigateway.state.memory import MemoryState

__all__ = ["RedisState"]

_logger = logging.getLogger(__name__)
_BREAKERS = (BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN)


def _import_redis() -> Any:
    try:
        import redis  # the extra is optional
        import redis.asyncio
        import redis.backoff
        import redis.retry
    except ImportError as exc:  # pragma: no cover - depends on the environment
        msg = "RedisState needs the redis extra: pip install 'langchain-multigateway[redis]'"
        raise ImportError(msg) from exc
    return redis


class RedisState(RouterState):
    """Breakers, rate windows, latency stats and in-flight counts kept in Redis.

    Every process (and host) whose router uses a ``RedisState`` with the same URL,
    ``namespace`` and ``router`` shares one set of limits and breakers: four workers
    with ``rpm=100`` send at most 100 requests a minute together, and a breaker opened
    by failures one worker saw stops the others at their next admission.

    Each admission and each release is one atomic Lua script (one round trip), sync or
    async (:meth:`aadmit`, :meth:`arelease`). Keys are hash-tagged per deployment, so a
    Redis Cluster serves them; every key has a TTL; time is the Redis server's clock.

    When Redis is unreachable or slower than ``timeout`` (50 ms by default), the call goes
    on with this process's local :class:`MemoryState` (one warning, :meth:`health` says
    ``shared=False``) while a background thread reconnects. An admission or release whose
    answer was lost is given back in Redis once it answers.

    Approximate: :meth:`latency` and :meth:`in_flight` are the figures Redis sent at this
    process's last admission or release of the deployment (no extra round trip); while
    Redis is down, limits hold per process.

    Setup:
        .. code-block:: bash

            pip install "langchain-multigateway[redis]"

    Instantiate:
        .. code-block:: python

            from langchain_multigateway import RoutingChatModel
            from langchain_multigateway.state import RedisState

            state = RedisState("redis://localhost:6379/0", namespace="shop", router="support")
            router = RoutingChatModel(deployments=[...], state=state)

    Args:
        url: ``redis://[user:password@]host:port/db`` (or ``rediss://``, ``unix://``).
        namespace: Prefix separating gateways that share one Redis.
        router: The router's name, so two routers' deployments of the same name stay apart.
        timeout: Longest wait for Redis per operation (connect and reply), in seconds.
        reconnect_interval: Seconds between reconnection attempts while Redis is down.
        ttl: Seconds an idle deployment's keys live (refreshed at each admission and release).
        inflight_lease: Seconds after which an admission never released (a dead worker)
            stops counting in flight.
        failure_threshold, cooldown, max_cooldown, cooldown_growth, probe_timeout:
            The breaker, as in :class:`MemoryState` (see
            :class:`~langchain_multigateway.state.base.BreakerPolicy` for the defaults).
        alpha: Weight of the newest sample in the latency / error EWMAs.
        clock: Seconds for tests; by default the Redis server's clock.
        client: An existing ``redis.Redis`` (or ``RedisCluster``) to use instead of ``url``
            (its own timeouts then apply; the async methods use it through the sync path).
    """

    def __init__(
        self,
        url: str = "redis://localhost:6379/0",
        *,
        namespace: str = "multigateway",
        router: str = "default",
        timeout: float = 0.05,
        reconnect_interval: float = 1.0,
        ttl: float = 86400.0,
        inflight_lease: float = 600.0,
        failure_threshold: int = BreakerPolicy.failure_threshold,
        cooldown: float = BreakerPolicy.cooldown,
        max_cooldown: float = BreakerPolicy.max_cooldown,
        cooldown_growth: float = BreakerPolicy.cooldown_growth,
        probe_timeout: float = BreakerPolicy.probe_timeout,
        alpha: float = 0.2,
        clock: Callable[[], float] | None = None,
        client: Any = None,
    ) -> None:
        self.breaker = BreakerPolicy(failure_threshold, cooldown, max_cooldown, cooldown_growth, probe_timeout)
        if timeout <= 0 or reconnect_interval <= 0:
            raise ValueError("timeout and reconnect_interval must be positive (seconds)")
        if ttl < max(60.0, self.breaker.cap, probe_timeout, inflight_lease):
            msg = "ttl must outlast the rate window (60 s), the breaker's cap, probe_timeout and inflight_lease"
            raise ValueError(msg)
        redis = _import_redis()
        register_url(url)  # its password is masked wherever text leaves the gateway
        self.url, self.namespace, self.router = url, namespace, router
        self.timeout, self.reconnect_interval, self.alpha, self.clock = timeout, reconnect_interval, alpha, clock
        self.ttl, self.inflight_lease = ttl, inflight_lease
        self._ttl_ms = str(int(ttl * 1000))
        self._redis = redis
        self._client = client if client is not None else redis.Redis.from_url(url, **self._client_options())
        self._own_client = client is None
        self._scripts = {name: self._client.register_script(text) for name, text in _SCRIPTS.items()}
        self._shas = {name: hashlib.sha1(text.encode()).hexdigest() for name, text in _SCRIPTS.items()}
        self._threads = threading.local()
        self._connections: weakref.WeakSet[Any] = weakref.WeakSet()
        self._aclients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[Any, dict[str, Any]]] = (
            weakref.WeakKeyDictionary()
        )
        self.local = MemoryState(
            failure_threshold=failure_threshold,
            cooldown=cooldown,
            max_cooldown=max_cooldown,
            cooldown_growth=cooldown_growth,
            probe_timeout=probe_timeout,
            alpha=alpha,
        )
        self._lock = threading.Lock()
        self._down_since: float | None = None
        self._down_reason: str | None = None
        self._reconnector: threading.Thread | None = None
        self._closed = threading.Event()
        self._keys: dict[str, list[str]] = {}
        self._ids = itertools.count(1)
        self._id_prefix = ("", -1)
        self._lost: list[tuple[str, str, bool]] = []
        self._seen: dict[str, tuple[BreakerState, float | None, float | None, int, tuple[float, int]]] = {}

    def _client_options(self) -> dict[str, Any]:
        """One bounded try per operation: redis-py's own retries would multiply the wait."""
        retry = self._redis.retry.Retry(self._redis.backoff.NoBackoff(), 0)
        return {
            "socket_timeout": self.timeout,
            "socket_connect_timeout": self.timeout,
            "retry": retry,
            "health_check_interval": 0,
        }

    def __repr__(self) -> str:
        return f"RedisState(url={masked(self.url)!r}, namespace={self.namespace!r}, router={self.router!r})"

    # ------------------------------------------------------------------ plumbing
    def keys(self, name: str) -> list[str]:
        """The Redis keys holding deployment ``name`` (state, window, tokens, in-flight)."""
        found = self._keys.get(name)
        if found is None:
            found = self._keys[name] = deployment_keys(self.namespace, self.router, name)
        return found

    def _now(self) -> str:
        return "" if self.clock is None else repr(self.clock())

    @property
    def shared(self) -> bool:
        """Redis answered at the last try: limits and breakers are shared right now."""
        return self._down_since is None

    def _went_down(self, exc: BaseException) -> None:
        with self._lock:
            if self._down_since is not None:
                return
            self._down_since = time.monotonic()
            self._down_reason = f"{type(exc).__name__}: {exc}"
            _logger.warning(
                "Redis state at %s unreachable (%s); routing on this process's local state until it answers again",
                masked(self.url),
                self._down_reason,
            )
        self._still_down()  # starts the background reconnection

    def _reconnect(self) -> None:
        while not self._closed.wait(self.reconnect_interval):
            try:
                self._client.ping()
            except Exception:  # this thread only waits for Redis: any failure means "not yet"
                continue
            if not self._forget_lost():
                continue
            with self._lock:
                down_for = time.monotonic() - (self._down_since or time.monotonic())
                self._down_since = self._down_reason = None
            _logger.info("Redis state at %s back after %.1fs: limits shared again", masked(self.url), down_for)
            return

    def _failures(self) -> tuple[type[BaseException], ...]:
        return (self._redis.RedisError, OSError, asyncio.TimeoutError)

    def _still_down(self) -> bool:
        """Redis is known to be down (and a reconnection is under way: a forked child restarts it)."""
        if self._down_since is None:
            return False
        if self._reconnector is None or not self._reconnector.is_alive():
            with self._lock:
                if not self._closed.is_set() and (self._reconnector is None or not self._reconnector.is_alive()):
                    self._reconnector = threading.Thread(target=self._reconnect, name="multigateway-redis", daemon=True)
                    self._reconnector.start()
        return True

    def _run(self, script: str, name: str, args: Sequence[Any], lost: tuple[str, bool] | None = None) -> Any:
        """Run a script on the sync client; None when Redis is (or just went) unreachable.

        ``lost`` names the admission this script admits (``sent=False``) or releases
        (``sent=True``): if its outcome never reaches this process, the admission is
        forgotten in Redis once it answers again (see :meth:`_forget_lost`).
        """
        if self._still_down():
            self._gave_up(name, lost, only_sent=True)
            return None
        if self._lost and not self._forget_lost():
            self._gave_up(name, lost, only_sent=True)
            return None
        try:
            return self._call(script, name, args)
        except self._failures() as exc:
            self._gave_up(name, lost)
            self._went_down(exc)
            return None
        except BaseException:  # interrupted mid-reply: Redis may have run it
            self._gave_up(name, lost)
            raise

    def _call(self, script: str, name: str, args: Sequence[Any]) -> Any:
        if self._own_client:
            return self._evalsha(script, self.keys(name), args)
        return self._scripts[script](keys=self.keys(name), args=args)  # e.g. a RedisCluster's routing

    def _gave_up(self, name: str, lost: tuple[str, bool] | None, *, only_sent: bool = False) -> None:
        """Remember an admission whose script's outcome this process will never know."""
        if lost is not None and (lost[1] or not only_sent):
            with self._lock:
                self._lost.append((name, *lost))

    def _forget_args(self, ident: str, sent: bool) -> list[Any]:
        return [self._now(), ident, int(sent), repr(self.inflight_lease), self._ttl_ms]

    def _forget_lost(self) -> bool:
        """Give back, in Redis, what lost admissions and releases still hold (in-flight counts,
        a half-open probe's lease, unsent requests' window entries); False if Redis failed."""
        with self._lock:
            lost, self._lost = self._lost, []
        for done, (name, ident, sent) in enumerate(lost):
            try:
                self._call("forget", name, self._forget_args(ident, sent))
            except BaseException as exc:
                return self._forget_failed(lost[done:], exc)
        return True

    async def _aforget_lost(self) -> bool:
        """:meth:`_forget_lost` on this event loop's client."""
        with self._lock:
            lost, self._lost = self._lost, []
        for done, (name, ident, sent) in enumerate(lost):
            try:
                await self._async_scripts()["forget"](keys=self.keys(name), args=self._forget_args(ident, sent))
            except BaseException as exc:
                return self._forget_failed(lost[done:], exc)
        return True

    def _forget_failed(self, left: list[tuple[str, str, bool]], exc: BaseException) -> bool:
        """Keep what is left to forget for the next try; Redis failing means it is down."""
        with self._lock:
            self._lost[:0] = left
        if not isinstance(exc, self._failures()):
            raise exc  # cancelled or interrupted: not Redis' fault
        self._went_down(exc)
        return False

    def _new_id(self) -> str:
        """A new admission id, unique across processes (and across a Redis that lost its keys)."""
        prefix, pid = self._id_prefix
        if pid != os.getpid():  # a forked child gets a prefix of its own
            prefix, pid = secrets.token_hex(6), os.getpid()
            self._id_prefix = (prefix, pid)
        return f"{prefix}.{next(self._ids)}"

    def _evalsha(self, script: str, keys: list[str], args: Sequence[Any]) -> Any:
        """EVALSHA on this thread's own connection (why not the pool: checking one out and in
        per command more than doubled a loopback round trip's CPU and wall time)."""
        conn = self._thread_connection()
        try:
            try:
                conn.send_command("EVALSHA", self._shas[script], len(keys), *keys, *args)
                return conn.read_response()
            except self._redis.exceptions.NoScriptError:  # a restarted or flushed Redis forgot it
                conn.send_command("SCRIPT", "LOAD", _SCRIPTS[script])
                conn.read_response()
                conn.send_command("EVALSHA", self._shas[script], len(keys), *keys, *args)
                return conn.read_response()
        except BaseException:
            conn.disconnect()  # a reply may still be on its way: never reuse this socket as it is
            raise

    def _thread_connection(self) -> Any:
        local = self._threads
        conn = getattr(local, "conn", None)
        if conn is None or local.pid != os.getpid():  # a forked child must not share its parent's socket
            pool = self._client.connection_pool
            conn = pool.connection_class(**pool.connection_kwargs)
            local.conn, local.pid = conn, os.getpid()
            self._connections.add(conn)
        return conn

    async def _arun(self, script: str, name: str, args: Sequence[Any], lost: tuple[str, bool] | None = None) -> Any:
        """:meth:`_run` on this event loop's async client."""
        if not self._own_client:
            return self._run(script, name, args, lost)
        if self._still_down():
            self._gave_up(name, lost, only_sent=True)
            return None
        if self._lost and not await self._aforget_lost():
            self._gave_up(name, lost, only_sent=True)
            return None
        try:
            # the client's socket timeouts bound connect and reply (no wait_for: it costs a task per call)
            return await self._async_scripts()[script](keys=self.keys(name), args=args)
        except self._failures() as exc:
            self._gave_up(name, lost)
            self._went_down(exc)
            return None
        except BaseException:  # cancelled mid-reply: Redis may have run it
            self._gave_up(name, lost)
            raise

    def _async_scripts(self) -> dict[str, Any]:
        # An asyncio client belongs to the loop it was made on: one per running loop.
        loop = asyncio.get_running_loop()
        found = self._aclients.get(loop)
        if found is None:
            client = self._redis.asyncio.Redis.from_url(self.url, **self._client_options())
            found = (client, {name: client.register_script(text) for name, text in _SCRIPTS.items()})
            self._aclients[loop] = found
        return found[1]

    def spend_store(self) -> Any:
        """A budget spend store on the same Redis and namespace, for
        ``Budget(max_cost_usd=..., period="1d", store=state.spend_store())``."""
        from langchain_multigateway.state.spend_redis import RedisSpendStore

        return RedisSpendStore(self.url, namespace=self.namespace)

    def close(self) -> None:
        """Stop reconnecting and close the sync client's connections (async ones close with their loop)."""
        self._closed.set()
        if self._own_client:
            for conn in list(self._connections):
                conn.disconnect()
            self._client.close()

    async def aclose(self) -> None:
        """Close this event loop's async client (the sync client closes with :meth:`close`)."""
        found = self._aclients.pop(asyncio.get_running_loop(), None)
        if found is not None:
            await found[0].aclose()

    def health(self) -> StateHealth:
        if self._down_since is None:
            return StateHealth(backend="redis", shared=True, live=True, detail=masked(self.url))
        return StateHealth(backend="redis", shared=False, live=False, detail=f"{masked(self.url)}: {self._down_reason}")

    def ping(self) -> bool:
        """Ask Redis now (one round trip); resumes shared state if it answers."""
        try:
            self._client.ping()
        except self._failures() as exc:
            self._went_down(exc)
            return False
        if not self._forget_lost():
            return False
        with self._lock:
            self._down_since = self._down_reason = None
        return True

    def _observe(self, name: str, code: Any, lat: Any, ttft: Any, in_flight: Any, version: Any) -> None:
        """Remember what Redis said of ``name``; tell listeners when its breaker changed."""
        breaker = _BREAKERS[int(code)]
        with self._lock:
            seen = self._seen.get(name)
            newest = reply_version(version)
            if seen is not None and newest < seen[4]:
                return  # overtaken by a newer reply (concurrent calls): these figures are stale
            self._seen[name] = (breaker, as_float(lat), as_float(ttft), int(in_flight), newest)
            was = BreakerState.CLOSED if seen is None else seen[0]
        if breaker is not was and self._breaker_listeners:
            self._notify_breaker([(name, breaker)])

    def _observe_breaker(self, name: str, breaker: BreakerState) -> None:
        """A refusal carries only the breaker state: note it, and tell listeners if it changed."""
        with self._lock:
            seen = self._seen.get(name)
            was = BreakerState.CLOSED if seen is None else seen[0]
            if breaker is was:
                return
            self._seen[name] = (breaker, None, None, 0, (0.0, -1)) if seen is None else (breaker, *seen[1:])
        if self._breaker_listeners:
            self._notify_breaker([(name, breaker)])

    # ------------------------------------------------------------------ admission
    def _admit_args(self, ident: str, tokens: int, rpm: int | None, tpm: int | None) -> list[Any]:
        return [
            self._now(),
            tokens,
            "" if rpm is None else rpm,
            "" if tpm is None else tpm,
            self.breaker.probe_timeout,
            self.inflight_lease,
            self._ttl_ms,
            ident,
        ]

    def _admission(self, name: str, reply: Any, tokens: int, rpm: int | None, tpm: int | None) -> Admission:
        ok, code, wait, breaker, ident, probe, in_flight, lat, ttft, extra, *version = reply
        if ok:
            self._observe(name, breaker, lat, ttft, in_flight, version[0])
            return Admission(ok=True, probe=bool(probe), reservation=Ticket(as_text(ident)))
        self._observe_breaker(name, _BREAKERS[int(breaker)])
        return refusal(as_text(code), as_float(wait), as_text(extra), tokens, rpm, tpm)

    def admit(self, name: str, *, tokens: int = 0, rpm: int | None = None, tpm: int | None = None) -> Admission:
        ident = self._new_id()
        reply = self._run("admit", name, self._admit_args(ident, tokens, rpm, tpm), (ident, False))
        if reply is None:
            return granted_locally(self.local.admit(name, tokens=tokens, rpm=rpm, tpm=tpm))
        return self._admission(name, reply, tokens, rpm, tpm)

    async def aadmit(self, name: str, *, tokens: int = 0, rpm: int | None = None, tpm: int | None = None) -> Admission:
        ident = self._new_id()
        reply = await self._arun("admit", name, self._admit_args(ident, tokens, rpm, tpm), (ident, False))
        if reply is None:
            return granted_locally(self.local.admit(name, tokens=tokens, rpm=rpm, tpm=tpm))
        return self._admission(name, reply, tokens, rpm, tpm)

    def _release_args(
        self,
        ticket: Ticket,
        probe: bool,
        ok: bool,
        latency: float | None,
        ttft: float | None,
        tokens: int | None,
        counts: bool,
    ) -> list[Any]:
        policy = self.breaker
        return [
            self._now(),
            ticket.id,
            int(ok),
            "" if latency is None else repr(latency),
            "" if ttft is None else repr(ttft),
            "" if tokens is None else int(tokens),
            int(counts),
            int(probe),
            repr(self.alpha),
            policy.failure_threshold,
            repr(policy.cooldown),
            repr(policy.cap),
            repr(policy.cooldown_growth),
            self._ttl_ms,
        ]

    def release(
        self,
        name: str,
        admission: Admission,
        *,
        ok: bool,
        latency: float | None = None,
        ttft: float | None = None,
        tokens: int | None = None,
        counts_against_breaker: bool = True,
    ) -> None:
        ticket = admission.reservation
        if isinstance(ticket, Local):
            self.local.release(
                name,
                ticket.admission,
                ok=ok,
                latency=latency,
                ttft=ttft,
                tokens=tokens,
                counts_against_breaker=counts_against_breaker,
            )
        elif admission.ok and isinstance(ticket, Ticket):
            args = self._release_args(ticket, admission.probe, ok, latency, ttft, tokens, counts_against_breaker)
            reply = self._run("release", name, args, (ticket.id, True))
            if reply is not None:
                self._observe(name, *reply)

    async def arelease(
        self,
        name: str,
        admission: Admission,
        *,
        ok: bool,
        latency: float | None = None,
        ttft: float | None = None,
        tokens: int | None = None,
        counts_against_breaker: bool = True,
    ) -> None:
        ticket = admission.reservation
        if isinstance(ticket, Ticket) and admission.ok:
            args = self._release_args(ticket, admission.probe, ok, latency, ttft, tokens, counts_against_breaker)
            reply = await self._arun("release", name, args, (ticket.id, True))
            if reply is not None:
                self._observe(name, *reply)
            return
        self.release(
            name,
            admission,
            ok=ok,
            latency=latency,
            ttft=ttft,
            tokens=tokens,
            counts_against_breaker=counts_against_breaker,
        )

    def cooldown(self, name: str, seconds: float) -> None:
        self.local.cooldown(name, seconds)  # also here, so a fallback to local honours it
        self._run("cooldown", name, [self._now(), repr(float(seconds)), self._ttl_ms])

    async def acooldown(self, name: str, seconds: float) -> None:
        self.local.cooldown(name, seconds)
        await self._arun("cooldown", name, [self._now(), repr(float(seconds)), self._ttl_ms])

    # ------------------------------------------------------------------ reads
    def latency(self, name: str, *, streaming: bool = False) -> float | None:
        seen = self._seen.get(name)
        if seen is None or self._down_since is not None:
            return self.local.latency(name, streaming=streaming)
        if streaming and seen[2] is not None:
            return seen[2]
        return seen[1]

    def in_flight(self, name: str) -> int:
        seen = self._seen.get(name)
        if seen is None or self._down_since is not None:
            return self.local.in_flight(name)
        return seen[3]

    def stats(self, name: str, *, rpm: int | None = None, tpm: int | None = None) -> DeploymentStats:
        reply = self._run("stats", name, [self._now()])
        if reply is None:
            return self.local.stats(name, rpm=rpm, tpm=tpm)
        code, streak, lat, ttft, err, in_flight, requests, window_tokens, retry, successes, failures, version = reply
        self._observe(name, code, lat, ttft, in_flight, version)
        latency, first_token = as_float(lat), as_float(ttft)
        return DeploymentStats(
            breaker=_BREAKERS[int(code)],
            consecutive_failures=int(streak),
            ewma_latency_ms=None if latency is None else latency * 1000,
            ewma_ttft_ms=None if first_token is None else first_token * 1000,
            error_rate=float(err),
            in_flight=int(in_flight),
            requests_last_minute=int(requests),
            tokens_last_minute=int(window_tokens),
            remaining_rpm=None if rpm is None else max(0, rpm - int(requests)),
            remaining_tpm=None if tpm is None else max(0, tpm - int(window_tokens)),
            retry_after=as_float(retry),
            successes=int(successes),
            failures=int(failures),
        )


_SCRIPTS = {"admit": ADMIT, "release": RELEASE, "cooldown": COOLDOWN, "forget": FORGET, "stats": STATS}
