"""RedisState attacked with its default settings on a real redis-server: a Redis that is slow,
paused (SIGSTOP) or flushed mid-admission and mid-release, a cancelled async admission, and a
password in the URL. What must hold: once Redis answers again nothing stays held in it (in-flight
counts, the half-open probe), every key has a TTL, and the password is nowhere in the text."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import multiprocessing
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis

from langchain_multigateway._redact import redact
from langchain_multigateway.routing import Deployment, RoutingChatModel
from langchain_multigateway.state import Admission, BreakerState
from langchain_multigateway.state._redis_replies import Local
from langchain_multigateway.state.redis import RedisState
from langchain_multigateway.state.spend import buckets
from langchain_multigateway.state.spend_redis import RedisSpendStore
from langchain_multigateway.testing import ScriptedChatModel
from tests.redis_server import RedisServer, wait_until

pytestmark = pytest.mark.redis


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    """A server of this test's own (it is paused, slowed and flushed), DEBUG allowed from loopback."""
    made = RedisServer(tmp_path / "redis", "--enable-debug-command", "local")
    made.start()
    yield made
    if made.process is not None:
        made.resume()  # a test may have paused it
    made.stop()


def half_open(url: str, namespace: str) -> RedisState:
    """A state (defaults, but a breaker that opens on one failure and half-opens at once) with 'd' half-open."""
    state = RedisState(url, namespace=namespace, failure_threshold=1, cooldown=0.0)
    first = state.admit("d")
    state.release("d", first, ok=False)
    assert state.stats("d").breaker is BreakerState.HALF_OPEN
    return state


def asleep(server: RedisServer) -> bool:
    """The server is busy in DEBUG SLEEP (a ping gets no answer within 20 ms)."""
    try:
        redis.Redis.from_url(server.url, socket_timeout=0.02).ping()
    except redis.TimeoutError:
        return True
    return False


def resumed(state: RedisState) -> bool:
    return wait_until(lambda: state.shared, 10.0)


def test_probe_admitted_by_a_slow_redis_is_given_back(server: RedisServer) -> None:
    """Redis ran the probe's admission after the 50 ms bound: the caller went local, and the probe
    lease must not hold the breaker half-open for every process for probe_timeout (120 s)."""
    state = half_open(server.url, "slow")
    sleeper = threading.Thread(target=lambda: redis.Redis.from_url(server.url).execute_command("DEBUG", "SLEEP", "0.3"))
    sleeper.start()
    assert wait_until(lambda: asleep(server), 5.0)
    admission = state.admit("d")
    assert admission.ok
    assert isinstance(admission.reservation, Local)  # served on local state
    sleeper.join()
    other = RedisState(server.url, namespace="slow")  # another process
    # given back by the state's background thread (within reconnect_interval), with no other call from it
    assert wait_until(lambda: other.stats("d").in_flight == 0, 10.0)
    assert other.admit("d").probe
    state.release("d", admission, ok=True)  # a local admission: released locally, nothing in Redis
    assert other.stats("d").in_flight == 1


def test_release_lost_while_redis_is_paused_is_given_back(server: RedisServer) -> None:
    state = half_open(server.url, "paused")
    probe = state.admit("d")
    assert probe.probe
    server.pause()
    try:
        state.release("d", probe, ok=True)  # times out: the outcome never reaches Redis
    finally:
        server.resume()
    assert resumed(state)
    other = RedisState(server.url, namespace="paused")
    assert other.stats("d").in_flight == 0
    # admitted at once (Redis ran the release after all, or its probe lease was given back),
    # not refused as "probe in flight" for probe_timeout
    assert other.admit("d").ok


def test_cancelled_async_admission_is_given_back(server: RedisServer) -> None:
    state = half_open(server.url, "cancelled")

    async def cancelled() -> None:
        server.pause()
        task = asyncio.ensure_future(state.aadmit("d", tokens=10, tpm=1000))
        await asyncio.sleep(0.01)  # sent, no reply yet
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        server.resume()
        assert (await state.aadmit("d")).probe  # the lost admission is forgotten first
        await state.aclose()

    asyncio.run(cancelled())
    stats = state.stats("d")
    assert stats.in_flight == 1  # the second admission only
    assert stats.tokens_last_minute == 0  # the cancelled one's reservation is gone


def test_flushall_mid_call_does_not_release_someone_else(server: RedisServer) -> None:
    """Ids survive Redis losing its keys: a call admitted before FLUSHALL cannot release one after."""
    state = RedisState(server.url, namespace="flushed")
    before = state.admit("d")
    redis.Redis.from_url(server.url).flushall()
    after = state.admit("d")
    state.release("d", before, ok=True)
    assert state.stats("d").in_flight == 1
    state.release("d", after, ok=True)
    assert state.stats("d").in_flight == 0


def test_server_killed_and_restarted_empty_leaves_every_key_with_a_ttl(server: RedisServer) -> None:
    state = half_open(server.url, "killed")
    held = [state.admit("e", tokens=5, tpm=100) for _ in range(3)]
    server.stop()
    for admission in held:
        state.release("e", admission, ok=True)  # lost
    server.start()  # same port, empty
    assert resumed(state)
    for _ in range(3):
        state.release("d", state.admit("d"), ok=False)
    raw = redis.Redis.from_url(server.url)
    keys = list(raw.scan_iter("*"))
    assert keys
    assert all(raw.pttl(key) > 0 for key in keys), {key: raw.pttl(key) for key in keys}
    assert state.stats("e").in_flight == 0


def test_password_in_the_url_is_never_shown(server: RedisServer, caplog: pytest.LogCaptureFixture) -> None:
    password = "hunter2-but-longer"
    redis.Redis.from_url(server.url).config_set("requirepass", password)
    url = f"redis://:{password}@127.0.0.1:{server.port}/0"
    caplog.set_level(logging.DEBUG)
    good = RedisState(url, namespace="pw")
    assert good.admit("d").ok
    assert good.shared
    wrong = RedisState(f"redis://:wrong-{password}@127.0.0.1:{server.port}/0", namespace="pw")
    for _ in range(wrong._link.down_after):  # each refused by Redis, served locally; then the process goes local
        assert wrong.admit("d").ok
    assert not wrong.shared
    shown = [repr(good), repr(wrong), str(good.health()), str(wrong.health()), caplog.text]
    assert not [text for text in shown if password in text]
    assert password not in redact(f"connect failed: {url}, password {password}")  # registered for redaction
    good.close()
    wrong.close()


def _race_for_the_probe(url: str, namespace: str, ready: Any, start: Any, found: Any) -> None:
    """One process: 8 threads and 200 tasks ask for the half-open deployment at once.

    Each opens its connection first (admitting to a deployment of its own) and says it is
    ready: under load, 4 spawned processes took up to a minute to import and connect, which
    the test's bound once counted against the race. What is raced is the probe."""
    # a generous bound: on a loaded 2-core machine a reply may take seconds, and a probe whose
    # answer was lost is given back rather than counted (the race is what is tested)
    state = RedisState(url, namespace=namespace, failure_threshold=1, cooldown=0.0, timeout=10.0)
    misses = _Kept()
    logger = logging.getLogger("langchain_multigateway.state")
    logger.addHandler(misses)
    logger.setLevel(logging.DEBUG)
    probes: list[bool] = []
    errors: list[str] = []
    warm = threading.Barrier(8 + 1)

    def thread() -> None:
        try:
            state.release("warm-up", state.admit("warm-up"), ok=True)  # this thread's connection
            warm.wait()
            start.wait()
            probes.extend(state.admit("d").probe for _ in range(10))
        except Exception as exc:  # reported, not lost with the thread
            errors.append(repr(exc))

    async def tasks() -> None:
        admissions = await asyncio.gather(*(state.aadmit("warm-up") for _ in range(200)))  # 200 connections
        await asyncio.gather(*(state.arelease("warm-up", each, ok=True) for each in admissions))
        await asyncio.to_thread(warm.wait)
        ready.put(True)
        await asyncio.to_thread(start.wait)
        answers = await asyncio.gather(*(state.aadmit("d") for _ in range(200)), return_exceptions=True)
        errors.extend(repr(a) for a in answers if not isinstance(a, Admission))
        probes.extend(a.probe for a in answers if isinstance(a, Admission))
        await state.aclose()

    threads = [threading.Thread(target=thread) for _ in range(8)]
    for each in threads:
        each.start()
    asyncio.run(tasks())
    for each in threads:
        each.join()
    found.put((sum(probes), len(probes), errors, misses.messages))


class _Kept(logging.Handler):
    """What the shared state logs (each script Redis did not answer), for a failure to show."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_one_probe_across_threads_tasks_and_processes(server: RedisServer) -> None:
    half_open(server.url, "race")
    context = multiprocessing.get_context("spawn")
    ready, start, found = context.Queue(), context.Event(), context.Queue()
    workers = [
        context.Process(target=_race_for_the_probe, args=(server.url, "race", ready, start, found)) for _ in range(4)
    ]
    for worker in workers:
        worker.start()
    for _ in workers:  # started, imported and connected, however slowly on a loaded machine
        ready.get(timeout=300)
    start.set()
    results = [found.get(timeout=300) for _ in workers]
    for worker in workers:
        worker.join(30)
    assert [(errors, misses) for _, _, errors, misses in results] == [([], [])] * 4
    assert sum(asked for _, asked, _, _ in results) == 4 * (8 * 10 + 200)
    assert sum(probes for probes, _, _, _ in results) == 1, results


class WatchedState(RedisState):
    """A RedisState that notes when the router awaits its admission."""

    admitting = False

    async def aadmit(self, name: str, *, tokens: int = 0, rpm: int | None = None, tpm: int | None = None) -> Admission:
        self.admitting = True
        try:
            return await super().aadmit(name, tokens=tokens, rpm=rpm, tpm=tpm)
        finally:
            self.admitting = False


def router_on(state: RedisState) -> RoutingChatModel:
    model = ScriptedChatModel(model="model-a", default_reply="from a")
    return RoutingChatModel(deployments=[Deployment(name="a", model=model, rpm=1000)], state=state)


async def test_an_async_call_lets_the_loop_run_while_a_paused_redis_is_awaited(server: RedisServer) -> None:
    state = WatchedState(server.url, namespace="loop")  # the default 50 ms bound
    router = router_on(state)
    assert (await router.ainvoke("hi")).content == "from a"  # the loop's async client is connected
    ran_meanwhile = asyncio.Event()

    async def other_task() -> None:
        while not ran_meanwhile.is_set():
            if state.admitting:
                ran_meanwhile.set()
            await asyncio.sleep(0)

    server.pause()
    try:
        ticker = asyncio.ensure_future(other_task())
        answer = await router.ainvoke("hi")
        await asyncio.wait({ticker}, timeout=5)  # a hang guard
        ticker.cancel()
    finally:
        server.resume()
    assert answer.content == "from a"  # served on local state
    assert ran_meanwhile.is_set()  # the loop was not blocked while Redis did not answer
    assert resumed(state)
    assert router.health()["a"].in_flight == 0
    await state.aclose()


async def test_an_async_call_cancelled_while_redis_is_awaited_holds_nothing(server: RedisServer) -> None:
    state = RedisState(server.url, namespace="cancel")
    router = RoutingChatModel(
        deployments=[Deployment(name="a", model=ScriptedChatModel(model="m", default_reply="x"), max_concurrency=1)],
        state=state,
    )
    await router.ainvoke("hi")
    server.pause()
    try:
        call = asyncio.ensure_future(router.ainvoke("hi"))
        await asyncio.sleep(0.01)  # awaiting Redis' answer to its admission
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
    finally:
        server.resume()
    health = router.health()["a"]
    assert health.concurrency_in_use == 0
    assert health.in_flight == 0
    assert (await router.ainvoke("hi")).content == "x"  # its gate slot was given back
    await state.aclose()


@pytest.mark.parametrize("period", [None, "1d", "7d", "30d", "1mo"])
def test_redis_names_budget_periods_as_python_does(server: RedisServer, period: str | None) -> None:
    """The spend store cuts periods by the Redis server's clock, in Lua: the same UTC days and
    months as :func:`buckets`, across month ends, leap days and year ends."""
    store = RedisSpendStore(server.url, namespace="periods")
    start = datetime(2023, 12, 25, tzinfo=UTC).timestamp()
    for hours in range(0, 24 * 800, 37):  # 2023-12-25 .. 2026-03, through 2024-02-29
        at = start + hours * 3600.0
        assert store.buckets(period, at) == buckets(period, at)[1], datetime.fromtimestamp(at, tz=UTC)
    store.close()


def test_hosts_with_skewed_clocks_judge_one_daily_budget(server: RedisServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """A host whose clock is a day ahead spends against the same day as the others."""
    honest = RedisSpendStore(server.url, namespace="skew")
    skewed = RedisSpendStore(server.url, namespace="skew")
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + 86400)  # the skewed host's clock
    over, _ = skewed.reserve("team", "1d", "call-1", 60, None, 100, None)
    assert over is None
    skewed.settle("team", "1d", "call-1", 60, 0.0)
    monkeypatch.setattr(time, "time", real_time)
    assert honest.totals("team", "1d").spent_tokens == 60
    assert honest.reserve("team", "1d", "call-2", 60, None, 100, None)[0] == "tokens"  # not a fresh budget
    honest.close()
    skewed.close()


def test_a_router_named_budget_and_a_budget_share_no_key_and_all_keys_expire(server: RedisServer) -> None:
    """Deployment ``x`` of router ``budget`` and budget ``x`` share a hash tag, never a key; names
    with braces, colons and unicode stay apart; every key written has a TTL."""
    state = RedisState(server.url, namespace="ns:{1}", router="budget")
    store = RedisSpendStore(server.url, namespace="ns:{1}")
    for name in ("x", "x}:s", "{x}", "名前:x"):
        state.release(name, state.admit(name, tokens=5, tpm=100), ok=True, tokens=9)
        assert store.reserve(name, "1d", "call", 7, 0.5, 100, 10.0)[0] is None
        store.settle(name, "1d", "call", 3, 0.25)
        assert state.stats(name, tpm=100).tokens_last_minute == 9
        assert store.totals(name, "1d").spent_tokens == 3
        assert state.keys(name)[0] not in store.keys(name)
    raw = redis.Redis.from_url(server.url)
    keys = list(raw.scan_iter("*"))
    assert len(keys) == 4 * (4 + 1)  # per name: state, window, tokens, processes; spend (reservations settled)
    assert all(raw.pttl(key) > 0 for key in keys), {key: raw.pttl(key) for key in keys}
    store.close()
    state.close()


def test_connections_killed_slept_paused_and_flushed_under_load_hold_nothing(server: RedisServer) -> None:
    """Threads and tasks admit and release (some cancelled mid-admission or mid-release) while
    Redis kills their connections (CLIENT KILL), sleeps (DEBUG SLEEP 0.2), is paused and is
    flushed: once it answers again no admission is held in it and every key has a TTL."""
    state = RedisState(server.url, namespace="storm")
    raw = redis.Redis.from_url(server.url)
    stop = threading.Event()
    errors: list[BaseException] = []

    def sync_calls() -> None:
        while not stop.is_set():
            try:
                admission = state.admit("d", tokens=3, rpm=10**6, tpm=10**8)
                state.release("d", admission, ok=True, latency=0.01, tokens=5)
            except BaseException as exc:  # reported, not lost with the thread
                errors.append(exc)

    async def cancelled_calls() -> None:
        for turn in itertools.count():
            if stop.is_set():
                break
            admitting = asyncio.ensure_future(state.aadmit("e", rpm=10**6))
            await asyncio.sleep((turn % 5) / 1000)
            admitting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                admission = await admitting
                releasing = asyncio.ensure_future(state.arelease("e", admission, ok=True))
                await asyncio.sleep((turn % 3) / 1000)
                releasing.cancel()
                await releasing

    async def tasks() -> None:
        await asyncio.gather(*(cancelled_calls() for _ in range(6)))
        await state.aclose()

    def sleep_redis() -> None:
        redis.Redis.from_url(server.url).execute_command("DEBUG", "SLEEP", "0.2")

    workers = [threading.Thread(target=sync_calls) for _ in range(2)]
    workers.append(threading.Thread(target=asyncio.run, args=(tasks(),)))
    for each in workers:
        each.start()
    killed = 0
    for _ in range(2):
        assert resumed(state)
        time.sleep(0.3)
        killed += raw.client_kill_filter(_type="normal", skipme=True)
        time.sleep(0.3)
        sleeper = threading.Thread(target=sleep_redis)
        sleeper.start()
        time.sleep(0.3)
        server.pause()
        time.sleep(0.3)
        server.resume()
        sleeper.join()
        raw.flushall()
    stop.set()
    for each in workers:
        each.join(60)
    assert killed > 0
    assert errors == []
    assert wait_until(lambda: state.ping() and not state._link._lost, 15.0)  # given back what was lost
    assert [state.stats(name).in_flight for name in ("d", "e")] == [0, 0]
    keys = list(raw.scan_iter("*"))
    assert keys
    assert all(raw.pttl(key) > 0 for key in keys), {key: raw.pttl(key) for key in keys}
    state.close()
