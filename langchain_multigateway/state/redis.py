"""Routing state in Redis, shared by every process and host that points at it, with a local fallback."""

from __future__ import annotations

import itertools
import os
import secrets
import threading
from collections.abc import Callable
from typing import Any, Literal

from langchain_multigateway._redact import register_url
from langchain_multigateway.state._redis_link import RedisLink
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
    Outcome,
    RouterState,
    StateHealth,
)
from langchain_multigateway.state.memory import MemoryState

__all__ = ["FALLBACKS", "RedisState"]

_BREAKERS = (BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN)
_SCRIPTS = {"admit": ADMIT, "release": RELEASE, "cooldown": COOLDOWN, "forget": FORGET, "stats": STATS}
FALLBACKS = ("share", "closed")


def _share(limit: int | None, peers: int) -> int | None:
    """This process's part of a shared limit while Redis is out of reach (rounded down)."""
    return None if limit is None else limit // peers


class RedisState(RouterState):
    """Breakers, rate windows, latency stats and in-flight counts kept in Redis.

    Every process (and host) whose router uses a ``RedisState`` with the same URL,
    ``namespace`` and ``router`` shares one set of limits and breakers: four workers
    with ``rpm=100`` send at most 100 requests a minute together, and a breaker opened
    by failures one worker saw stops the others at their next admission.

    Each admission and each release is one atomic Lua script (one round trip), sync or
    async (:meth:`aadmit`, :meth:`arelease`). Keys are hash-tagged per deployment, so a
    Redis Cluster serves them; every key has a TTL; time is the Redis server's clock.

    A call never waits on Redis longer than ``timeout`` (50 ms by default). A script Redis
    did not answer in time sends that one call on with this process's local
    :class:`MemoryState`; after ``down_after`` (3) such scripts in a row the whole process
    routes locally (one warning, :meth:`health` says ``shared=False``) while a background
    thread reconnects. An admission or release whose answer was lost is given back in Redis
    once it answers. Local admissions keep to this process's share of each limit
    (``fallback="share"``: the limit divided by the processes Redis saw admitting to that
    deployment in the last minute), so workers cut off together do not each send the whole
    limit; ``fallback="closed"`` refuses deployments that have a limit instead.

    Approximate: :meth:`latency` and :meth:`in_flight` are the figures Redis sent at this
    process's last admission or release of the deployment (no extra round trip). Local
    admissions are not in Redis' window: in the minute Redis is lost or comes back, up to
    twice a limit can be sent.

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
        fallback: While Redis does not answer, ``"share"`` (default) admits locally within
            this process's share of each rpm / tpm limit; ``"closed"`` refuses every
            deployment that has a limit (strict; deployments without one are still served).
        down_after: Scripts in a row Redis must leave unanswered before the whole process
            routes locally (a single slow reply only sends its own call local).
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
        fallback: Literal["share", "closed"] = "share",
        down_after: int = 3,
        clock: Callable[[], float] | None = None,
        client: Any = None,
    ) -> None:
        self.breaker = BreakerPolicy(failure_threshold, cooldown, max_cooldown, cooldown_growth, probe_timeout)
        if timeout <= 0 or reconnect_interval <= 0:
            raise ValueError("timeout and reconnect_interval must be positive (seconds)")
        if ttl < max(60.0, self.breaker.cap, probe_timeout, inflight_lease):
            msg = "ttl must outlast the rate window (60 s), the breaker's cap, probe_timeout and inflight_lease"
            raise ValueError(msg)
        if fallback not in FALLBACKS:
            raise ValueError(f"fallback must be one of {', '.join(FALLBACKS)} (got {fallback!r})")
        if down_after < 1:
            raise ValueError("down_after must be at least 1 (scripts in a row Redis did not answer)")
        register_url(url)  # its password is masked wherever text leaves the gateway
        self.url, self.namespace, self.router = url, namespace, router
        self.timeout, self.reconnect_interval, self.alpha, self.clock = timeout, reconnect_interval, alpha, clock
        self.ttl, self.inflight_lease, self.fallback = ttl, inflight_lease, fallback
        self._ttl_ms = str(int(ttl * 1000))
        self._link = RedisLink(
            url,
            _SCRIPTS,
            self._forget_args,
            timeout=timeout,
            reconnect_interval=reconnect_interval,
            down_after=down_after,
            client=client,
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
        self._keys: dict[str, list[str]] = {}
        self._ids = itertools.count(1)
        self._id_prefix = ("", -1)
        self._seen: dict[str, tuple[BreakerState, float | None, float | None, int, tuple[float, int]]] = {}
        # processes Redis saw admitting to each deployment in the last minute (at our last admission or release)
        self._peers: dict[str, int] = {}

    def __repr__(self) -> str:
        return f"RedisState(url={masked(self.url)!r}, namespace={self.namespace!r}, router={self.router!r})"

    # ------------------------------------------------------------------ plumbing
    def keys(self, name: str) -> list[str]:
        """The Redis keys holding deployment ``name`` (state, window, tokens, in-flight, forgotten, processes)."""
        found = self._keys.get(name)
        if found is None:
            found = self._keys[name] = deployment_keys(self.namespace, self.router, name)
        return found

    def _now(self) -> str:
        return "" if self.clock is None else repr(self.clock())

    @property
    def shared(self) -> bool:
        """Redis is answering: limits and breakers are shared right now."""
        return self._link.shared

    def _forget_args(self, ident: str, sent: bool) -> list[Any]:
        return [self._now(), ident, int(sent), repr(self.inflight_lease), self._ttl_ms]

    def _new_id(self) -> str:
        """A new admission id, unique across processes (and across a Redis that lost its keys)."""
        return f"{self._process()}.{next(self._ids)}"

    def _process(self) -> str:
        """This process's random name (a forked child gets its own): ids and the peer count use it."""
        prefix, pid = self._id_prefix
        if pid != os.getpid():
            prefix, pid = secrets.token_hex(6), os.getpid()
            self._id_prefix = (prefix, pid)
        return prefix

    def spend_store(self) -> Any:
        """A budget spend store on the same Redis and namespace, for
        ``Budget(max_cost_usd=..., period="1d", store=state.spend_store())``."""
        from langchain_multigateway.state.spend_redis import RedisSpendStore

        return RedisSpendStore(self.url, namespace=self.namespace)

    def close(self) -> None:
        """Stop reconnecting and close the sync connections (a loop's own close when it shuts down)."""
        self._link.close()

    async def aclose(self) -> None:
        """Close this event loop's connections now (they also close when the loop shuts down)."""
        await self._link.aclose()

    def health(self) -> StateHealth:
        if self._link.shared:
            return StateHealth(backend="redis", shared=True, live=True, detail=masked(self.url))
        detail = f"{masked(self.url)}: {self._link.down_reason}"
        return StateHealth(backend="redis", shared=False, live=False, detail=detail)

    def ping(self) -> bool:
        """Ask Redis now (one round trip); resumes shared state if it answers."""
        return self._link.ping()

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

    def _released(self, name: str, reply: Any) -> None:
        code, lat, ttft, in_flight, version, peers = reply
        self._peers[name] = int(peers)
        self._observe(name, code, lat, ttft, in_flight, version)

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
            self._process(),
        ]

    def _admission(self, name: str, reply: Any, tokens: int, rpm: int | None, tpm: int | None) -> Admission:
        ok, code, wait, breaker, ident, probe, in_flight, lat, ttft, extra, version, peers = reply
        self._peers[name] = int(peers)
        if ok:
            self._observe(name, breaker, lat, ttft, in_flight, version)
            return Admission(ok=True, probe=bool(probe), reservation=Ticket(as_text(ident)))
        self._observe_breaker(name, _BREAKERS[int(breaker)])
        return refusal(as_text(code), as_float(wait), as_text(extra), tokens, rpm, tpm)

    def _admit_locally(self, name: str, tokens: int, rpm: int | None, tpm: int | None) -> Admission:
        """Judge an admission Redis did not answer on this process's own state.

        Its limits are this process's share of the shared ones (``fallback="share"``: each
        limit divided by the processes Redis last saw admitting to this deployment), so that
        processes cut off together do not each send the whole limit; with ``fallback="closed"``
        a deployment with a limit is refused until Redis answers (one without is served).
        A deployment Redis never told this process about takes the most processes it told of
        any other (workers of one app call the same deployments); a process that never reached
        Redis at all counts itself alone (it has nothing better: refusing would make "Redis down
        at start-up" an outage of every limited deployment).
        """
        if self.fallback == "closed" and (rpm is not None or tpm is not None):
            return Admission(ok=False, reason="shared rate limit unknown: Redis state unreachable", limited=True)
        peers = self._peers.get(name) or max(self._peers.values(), default=1)
        admission = self.local.admit(name, tokens=tokens, rpm=_share(rpm, peers), tpm=_share(tpm, peers))
        return granted_locally(admission)

    def admit(self, name: str, *, tokens: int = 0, rpm: int | None = None, tpm: int | None = None) -> Admission:
        ident = self._new_id()
        reply = self._link.run("admit", self.keys(name), self._admit_args(ident, tokens, rpm, tpm), (ident, False))
        if reply is None:
            return self._admit_locally(name, tokens, rpm, tpm)
        return self._admission(name, reply, tokens, rpm, tpm)

    async def aadmit(self, name: str, *, tokens: int = 0, rpm: int | None = None, tpm: int | None = None) -> Admission:
        ident = self._new_id()
        args = self._admit_args(ident, tokens, rpm, tpm)
        reply = await self._link.arun("admit", self.keys(name), args, (ident, False))
        if reply is None:
            return self._admit_locally(name, tokens, rpm, tpm)
        return self._admission(name, reply, tokens, rpm, tpm)

    def _release_args(self, ticket: Ticket, probe: bool, outcome: Outcome) -> list[Any]:
        policy = self.breaker
        return [
            self._now(),
            ticket.id,
            int(outcome.ok),
            "" if outcome.latency is None else repr(outcome.latency),
            "" if outcome.ttft is None else repr(outcome.ttft),
            "" if outcome.tokens is None else int(outcome.tokens),
            int(outcome.counts_against_breaker),
            int(probe),
            repr(self.alpha),
            policy.failure_threshold,
            repr(policy.cooldown),
            repr(policy.cap),
            repr(policy.cooldown_growth),
            self._ttl_ms,
        ]

    def _finish(self, name: str, admission: Admission, outcome: Outcome) -> None:
        ticket = admission.reservation
        if isinstance(ticket, Local):
            self.local._finish(name, ticket.admission, outcome)
        elif admission.ok and isinstance(ticket, Ticket):
            args = self._release_args(ticket, admission.probe, outcome)
            reply = self._link.run("release", self.keys(name), args, (ticket.id, True))
            if reply is not None:
                self._released(name, reply)

    async def _afinish(self, name: str, admission: Admission, outcome: Outcome) -> None:
        ticket = admission.reservation
        if not (admission.ok and isinstance(ticket, Ticket)):
            self._finish(name, admission, outcome)  # a local admission (or none): no I/O
            return
        args = self._release_args(ticket, admission.probe, outcome)
        reply = await self._link.arun("release", self.keys(name), args, (ticket.id, True))
        if reply is not None:
            self._released(name, reply)

    def cooldown(self, name: str, seconds: float) -> None:
        self.local.cooldown(name, seconds)  # also here, so a fallback to local honours it
        self._link.run("cooldown", self.keys(name), [self._now(), repr(float(seconds)), self._ttl_ms])

    async def acooldown(self, name: str, seconds: float) -> None:
        self.local.cooldown(name, seconds)
        await self._link.arun("cooldown", self.keys(name), [self._now(), repr(float(seconds)), self._ttl_ms])

    # ------------------------------------------------------------------ reads
    def latency(self, name: str, *, streaming: bool = False) -> float | None:
        seen = self._seen.get(name)
        if seen is None or not self._link.shared:
            return self.local.latency(name, streaming=streaming)
        if streaming and seen[2] is not None:
            return seen[2]
        return seen[1]

    def in_flight(self, name: str) -> int:
        seen = self._seen.get(name)
        if seen is None or not self._link.shared:
            return self.local.in_flight(name)
        return seen[3]

    def stats(self, name: str, *, rpm: int | None = None, tpm: int | None = None) -> DeploymentStats:
        reply = self._link.run("stats", self.keys(name), [self._now()])
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
