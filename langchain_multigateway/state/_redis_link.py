"""RedisState's line to Redis: one script run per operation, each wait bounded, and what to do
when Redis does not answer (go local, reconnect in the background, give back what was lost).

Why its own connections rather than redis-py's pool and ``Script`` objects:

- Checking a connection out of the pool and back per command more than doubled a loopback
  round trip's CPU and wall time; a thread (sync) or an event loop (async) keeps its own.
- redis-py bounds an async read with a timer that cancels the read when it fires. If the event
  loop is held up past the bound (a provider SDK imported on a call's first use, sync work on
  the loop, a starved CPU), the timer fires *with the reply already received*, and the reply
  is thrown away: the multi-process proof saw whole workers fall back to local state that way,
  four processes each then admitting the full rpm. Here a read that timed out looks once
  more, without waiting, and uses a reply that came in meanwhile; a connect whose timer fired
  late (the loop, not Redis, was slow) gets its bound again (up to 5 times).
- One unanswered script is not an outage: the call it served goes local, and the process
  falls back to local state only after ``down_after`` failures in a row (3 by default).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any

from langchain_multigateway.chat_models._loops import LoopBound
from langchain_multigateway.state._redis_replies import masked

__all__ = ["RedisLink"]

_logger = logging.getLogger("langchain_multigateway.state.redis")

_HELD_UP_RETRIES = 5
"""Times a connect's bound starts again because the event loop, not Redis, was late."""

Lost = tuple[list[str], str, bool]
"""An admission whose script's outcome never reached this process: (its keys, its id, sent)."""


def import_redis() -> Any:
    try:
        import redis  # the extra is optional
        import redis.asyncio
        import redis.backoff
        import redis.retry
    except ImportError as exc:  # pragma: no cover - depends on the environment
        msg = "RedisState needs the redis extra: pip install 'langchain-multigateway[redis]'"
        raise ImportError(msg) from exc
    return redis


class RedisLink:
    """Runs RedisState's scripts on the sync and async clients and keeps track of whether Redis answers.

    :meth:`run` and :meth:`arun` return the script's reply, or None when Redis did not answer
    within ``timeout`` (the caller then judges the call on local state). ``lost`` names the
    admission a script admits (``sent=False``) or releases (``sent=True``): if its outcome never
    arrives, ``forget_args(id, sent)`` builds the FORGET script's arguments to give it back in
    Redis before the next script runs.
    """

    def __init__(
        self,
        url: str,
        scripts: dict[str, str],
        forget_args: Callable[[str, bool], list[Any]],
        *,
        timeout: float,
        reconnect_interval: float,
        down_after: int,
        client: Any = None,
    ) -> None:
        self._redis = import_redis()
        self.url, self.timeout, self.reconnect_interval, self.down_after = url, timeout, reconnect_interval, down_after
        self._texts = scripts
        self._shas = {name: hashlib.sha1(text.encode()).hexdigest() for name, text in scripts.items()}
        self._forget_args = forget_args
        self.client = client if client is not None else self._redis.Redis.from_url(url, **self._options(timeout))
        self._own_client = client is None
        self._scripts = {name: self.client.register_script(text) for name, text in scripts.items()}
        self._failures = (self._redis.RedisError, OSError, asyncio.TimeoutError)
        self._threads = threading.local()
        self._connections: weakref.WeakSet[Any] = weakref.WeakSet()
        self._loops: LoopBound[list[Any]] = LoopBound(list, _disconnect_all)
        self._lock = threading.Lock()
        self._misses = 0  # scripts in a row Redis did not answer
        self.down_since: float | None = None
        self.down_reason: str | None = None
        self._reconnector: threading.Thread | None = None
        self._closed = threading.Event()
        self._lost: list[Lost] = []

    def _options(self, read_timeout: float | None) -> dict[str, Any]:
        """One bounded try per operation: redis-py's own retries would multiply the wait."""
        return {
            "socket_timeout": read_timeout,
            "socket_connect_timeout": self.timeout,
            "retry": self._redis.retry.Retry(self._redis.backoff.NoBackoff(), 0),
            "health_check_interval": 0,
        }

    # ------------------------------------------------------------------ running scripts
    def run(self, script: str, keys: list[str], args: Sequence[Any], lost: tuple[str, bool] | None = None) -> Any:
        """Run ``script`` on the sync client; None when Redis is down or did not answer in time."""
        if self._still_down():
            self._gave_up(keys, lost, only_sent=True)
            return None
        if self._lost and not self._forget_lost():
            self._gave_up(keys, lost, only_sent=True)
            return None
        try:
            reply = self._call(script, keys, args)
        except self._failures as exc:
            self._gave_up(keys, lost)
            self._missed(exc)
            return None
        except BaseException:  # interrupted mid-reply: Redis may have run it
            self._gave_up(keys, lost)
            raise
        self._misses = 0
        return reply

    async def arun(
        self, script: str, keys: list[str], args: Sequence[Any], lost: tuple[str, bool] | None = None
    ) -> Any:
        """:meth:`run` on this event loop's connections."""
        if not self._own_client:
            return self.run(script, keys, args, lost)
        if self._still_down():
            self._gave_up(keys, lost, only_sent=True)
            return None
        if self._lost and not await self._aforget_lost():
            self._gave_up(keys, lost, only_sent=True)
            return None
        try:
            reply = await self._aevalsha(script, keys, args)
        except self._failures as exc:
            self._gave_up(keys, lost)
            self._missed(exc)
            return None
        except BaseException:  # cancelled mid-reply: Redis may have run it
            self._gave_up(keys, lost)
            raise
        self._misses = 0
        return reply

    def _call(self, script: str, keys: list[str], args: Sequence[Any]) -> Any:
        if self._own_client:
            return self._evalsha(script, keys, args)
        return self._scripts[script](keys=keys, args=args)  # e.g. a RedisCluster's routing

    def _evalsha(self, script: str, keys: list[str], args: Sequence[Any]) -> Any:
        """EVALSHA on this thread's own connection (its socket timeout bounds connect and reply)."""
        conn = self._thread_connection()
        try:
            try:
                conn.send_command("EVALSHA", self._shas[script], len(keys), *keys, *args)
                return conn.read_response()
            except self._redis.exceptions.NoScriptError:  # a restarted or flushed Redis forgot it
                conn.send_command("SCRIPT", "LOAD", self._texts[script])
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
            pool = self.client.connection_pool
            conn = pool.connection_class(**pool.connection_kwargs)
            local.conn, local.pid = conn, os.getpid()
            self._connections.add(conn)
        return conn

    async def _aevalsha(self, script: str, keys: list[str], args: Sequence[Any]) -> Any:
        """EVALSHA on one of this event loop's idle connections (a new one if none is idle)."""
        idle = self._loops.get()
        conn = idle.pop() if idle else self._new_async_connection()
        try:
            try:
                reply = await self._aexchange(conn, "EVALSHA", self._shas[script], len(keys), *keys, *args)
            except self._redis.exceptions.NoScriptError:  # a restarted or flushed Redis forgot it
                await self._aexchange(conn, "SCRIPT", "LOAD", self._texts[script])
                reply = await self._aexchange(conn, "EVALSHA", self._shas[script], len(keys), *keys, *args)
        except BaseException:
            with contextlib.suppress(BaseException):  # a reply may still be on its way: never reuse it
                await conn.disconnect(nowait=True)
            raise
        idle.append(conn)
        return reply

    def _new_async_connection(self) -> Any:
        # no timeouts of redis-py's own: its timers throw away what came in while the loop was held
        # up, and sends would each cost a task (asyncio.wait_for); _aexchange bounds each wait
        options = {**self._options(None), "socket_connect_timeout": None}
        pool = self._redis.asyncio.Redis.from_url(self.url, **options).connection_pool
        return pool.connection_class(**pool.connection_kwargs)

    async def _aexchange(self, conn: Any, *command: Any) -> Any:
        """Send one command and read its reply, waiting at most ``timeout`` for Redis."""
        loop = asyncio.get_running_loop()
        if not conn.is_connected:
            await self._aconnect(conn, loop)
        await conn.send_command(*command)
        reply = await conn.read_response(timeout=self.timeout, disconnect_on_error=False)
        if reply is None:
            # If this loop was held up, the reply came in with the timer (socket events are handled
            # before timers in a loop turn): it is in the buffer now. Take it without waiting.
            reply = await conn.read_response(timeout=0, disconnect_on_error=False)
        if reply is None:  # no script answers nil: this is redis-py's "timed out"
            raise self._redis.TimeoutError(f"no reply within {self.timeout * 1000:.0f} ms")
        return reply

    async def _aconnect(self, conn: Any, loop: asyncio.AbstractEventLoop) -> None:
        """Connect (and read the handshake's replies) within ``timeout`` of the loop's own time.

        A connection takes a few loop turns; when the loop was held up past the bound, the
        bound starts again from when it ran (a few times at most): Redis was not the slow one.
        """
        connecting = loop.create_task(conn.connect())  # a task per new connection only
        try:
            for _ in range(_HELD_UP_RETRIES + 1):
                due = loop.time() + self.timeout
                done, _ = await asyncio.wait((connecting,), timeout=self.timeout)
                if done or loop.time() - due < self.timeout / 10:
                    break
        except BaseException:
            connecting.cancel()
            raise
        if not done:
            connecting.cancel()
            raise self._redis.TimeoutError(f"not connected within {self.timeout * 1000:.0f} ms")
        connecting.result()

    # ------------------------------------------------------------------ up and down
    @property
    def shared(self) -> bool:
        """Redis is answering: the process is on shared state."""
        return self.down_since is None

    def _missed(self, exc: BaseException) -> None:
        """One script got no answer: the process goes local after ``down_after`` in a row."""
        with self._lock:
            self._misses += 1
            if self._misses < self.down_after:
                _logger.debug("Redis state at %s did not answer one script (%s)", masked(self.url), exc)
                return
        self.went_down(exc)

    def went_down(self, exc: BaseException) -> None:
        with self._lock:
            if self.down_since is not None:
                return
            self.down_since = time.monotonic()
            self.down_reason = f"{type(exc).__name__}: {exc}"
            _logger.warning(
                "Redis state at %s unreachable (%s); routing on this process's local state until it answers again",
                masked(self.url),
                self.down_reason,
            )
        self._repair()  # the background reconnection

    def _came_back(self) -> None:
        with self._lock:
            down_for = time.monotonic() - (self.down_since or time.monotonic())
            self.down_since = self.down_reason = None
            self._misses = 0
        _logger.info("Redis state at %s back after %.1fs: limits shared again", masked(self.url), down_for)

    def _reconnect(self) -> None:
        """The background thread: until Redis answers and nothing lost is left to give back."""
        while not self._closed.wait(self.reconnect_interval):
            try:
                self.client.ping()
            except Exception:  # this thread only waits for Redis: any failure means "not yet"
                continue
            if not self._forget_lost():
                continue
            if self.down_since is not None:
                self._came_back()
            with self._lock:
                if not self._lost and self.down_since is None:
                    self._reconnector = None
                    return

    def _still_down(self) -> bool:
        """Redis is known to be down (and a reconnection is under way: a forked child restarts it)."""
        if self.down_since is None:
            return False
        self._repair()
        return True

    def _repair(self) -> None:
        """Start the background thread unless it runs (in this process: a forked child starts its own)."""
        if self._reconnector is not None and self._reconnector.is_alive():
            return
        with self._lock:
            if not self._closed.is_set() and (self._reconnector is None or not self._reconnector.is_alive()):
                self._reconnector = threading.Thread(target=self._reconnect, name="multigateway-redis", daemon=True)
                self._reconnector.start()

    def ping(self) -> bool:
        """Ask Redis now (one round trip); resumes shared state if it answers."""
        try:
            self.client.ping()
        except self._failures as exc:
            self.went_down(exc)
            return False
        if not self._forget_lost():
            return False
        if self.down_since is not None:
            self._came_back()
        return True

    # ------------------------------------------------------------------ lost admissions
    def _gave_up(self, keys: list[str], lost: tuple[str, bool] | None, *, only_sent: bool = False) -> None:
        """Remember an admission whose script's outcome this process will never know."""
        if lost is not None and (lost[1] or not only_sent):
            with self._lock:
                self._lost.append((keys, *lost))
            self._repair()  # given back within reconnect_interval, even if this process makes no other call

    def _forget_lost(self) -> bool:
        """Give back, in Redis, what lost admissions and releases still hold (in-flight counts,
        a half-open probe's lease, unsent requests' window entries); False if Redis failed."""
        with self._lock:
            lost, self._lost = self._lost, []
        for done, (keys, ident, sent) in enumerate(lost):
            try:
                self._call("forget", keys, self._forget_args(ident, sent))
            except BaseException as exc:
                return self._forget_failed(lost[done:], exc)
        return True

    async def _aforget_lost(self) -> bool:
        """:meth:`_forget_lost` on this event loop's connections."""
        with self._lock:
            lost, self._lost = self._lost, []
        for done, (keys, ident, sent) in enumerate(lost):
            try:
                await self._aevalsha("forget", keys, self._forget_args(ident, sent))
            except BaseException as exc:
                return self._forget_failed(lost[done:], exc)
        return True

    def _forget_failed(self, left: list[Lost], exc: BaseException) -> bool:
        """Keep what is left to forget for the next try; Redis failing counts as a miss."""
        with self._lock:
            self._lost[:0] = left
        if not isinstance(exc, self._failures):
            raise exc  # cancelled or interrupted: not Redis' fault
        self._missed(exc)
        return False

    # ------------------------------------------------------------------ closing
    def close(self) -> None:
        """Stop reconnecting and close the sync connections (a loop's close when it shuts down)."""
        self._closed.set()
        if self._own_client:
            for conn in list(self._connections):
                conn.disconnect()
            self.client.close()

    async def aclose(self) -> None:
        """Close this event loop's connections now."""
        idle = self._loops.get()
        await _disconnect_all(idle)


async def _disconnect_all(connections: list[Any]) -> None:
    while connections:
        with contextlib.suppress(Exception):
            await connections.pop().disconnect(nowait=True)
