"""RedisState against a real redis-server on loopback: sharing across instances, key layout
(Redis Cluster hash slots, checked by a cluster-mode server), TTLs, async clients, and the
fallback to local state when Redis stops or hangs, then resumes."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.cluster import RedisCluster

from langchain_multigateway.state import Admission, BreakerState
from langchain_multigateway.state._redis_replies import Ticket
from langchain_multigateway.state._redis_scripts import ADMIT, RELEASE, deployment_keys, hash_tag
from langchain_multigateway.state.redis import RedisState
from tests.redis_server import RedisServer, free_port, wait_until

pytest_plugins = ["tests.redis_fixtures"]  # redis_server, namespace

pytestmark = pytest.mark.redis

WEIRD_NAMES = ["gpt-4o", "a:b", "r:a", "{x}", "}{", "%3A", "名前", ""]


def crc16_xmodem(data: bytes) -> int:
    """CRC16-CCITT (XMODEM), the checksum the Redis Cluster specification uses for key slots."""
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def key_slot(key: str) -> int:
    """The cluster rule: hash only what is between the first '{' and the next '}', if non-empty."""
    raw = key.encode()
    start = raw.find(b"{")
    if start != -1:
        end = raw.find(b"}", start + 1)
        if end > start + 1:
            raw = raw[start + 1 : end]
    return crc16_xmodem(raw) % 16384


@pytest.fixture
def state(redis_server: RedisServer, namespace: str) -> Iterator[RedisState]:
    # the session's server is never paused here: a generous bound, so a CPU-starved run (load 19
    # on 2 cores) does not send one of these tests' calls local (the bound has tests of its own)
    made = RedisState(redis_server.url, namespace=namespace, timeout=5.0)
    yield made
    made.close()


@pytest.fixture
def raw(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server.url)
    yield client
    client.close()


def test_crc16_matches_the_cluster_specification_example() -> None:
    assert crc16_xmodem(b"123456789") == 0x31C3  # the spec's reference value


def test_every_key_of_a_deployment_shares_one_slot_and_names_cannot_collide() -> None:
    seen: set[str] = set()
    for router in ["default", "r", "r:a"]:
        for name in WEIRD_NAMES:
            keys = deployment_keys("ns", router, name)
            assert len({key_slot(k) for k in keys}) == 1, keys
            tag = hash_tag("ns", router, name)
            assert tag.count("{") == 1
            assert tag.count("}") == 1
            assert tag not in seen
            seen.add(tag)


@pytest.fixture(scope="module")
def cluster_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A one-node Redis Cluster owning every slot: it refuses scripts whose keys cross slots."""
    workdir = tmp_path_factory.mktemp("cluster")
    server = RedisServer(workdir, "--cluster-enabled", "yes", "--cluster-config-file", str(workdir / "nodes.conf"))
    server.start()
    client = redis.Redis(port=server.port)
    client.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
    deadline = time.monotonic() + 10
    while b"cluster_state:ok" not in client.execute_command("CLUSTER", "INFO") and time.monotonic() < deadline:
        time.sleep(0.05)
    client.close()
    yield server
    server.stop()


def test_key_slots_agree_with_a_real_cluster_and_scripts_run_there(cluster_node: RedisServer) -> None:
    node = redis.Redis(port=cluster_node.port)
    for name in WEIRD_NAMES:
        for key in deployment_keys("ns", "r", name):
            assert node.execute_command("CLUSTER", "KEYSLOT", key) == key_slot(key)
    node.close()
    client = RedisCluster(host="127.0.0.1", port=cluster_node.port)
    state = RedisState(namespace="cluster", client=client)
    for name in WEIRD_NAMES:
        admission = state.admit(name, tokens=10, rpm=5, tpm=100)
        assert admission.ok, admission.reason
        state.release(name, admission, ok=False, latency=0.1, tokens=20)
        state.cooldown(name, 1.0)
        assert state.stats(name).tokens_last_minute == 20
    assert state.shared  # no CROSSSLOT error sent it to the local fallback
    client.close()


def test_every_key_gets_a_ttl(state: RedisState, raw: redis.Redis) -> None:
    admission = state.admit("d", tokens=5, tpm=1000)
    keys = state.keys("d")
    assert all(0 < raw.pttl(k) <= 86_400_000 for k in keys[:4]), [raw.pttl(k) for k in keys]
    assert raw.exists(keys[4]) == 0  # tombstones of abandoned admissions: none
    state.release("d", admission, ok=True, latency=0.1, tokens=7)
    assert all(raw.pttl(k) > 0 for k in keys[:3])  # the in-flight set is empty again, so gone
    assert raw.exists(keys[3]) == 0
    assert 0 < raw.pttl(keys[5]) <= 86_400_000  # the processes seen admitting (this one)
    assert set(raw.scan_iter(f"{{{state.namespace}:*")) == {k.encode() for k in (*keys[:3], keys[5])}


def test_instances_share_limits_breakers_and_probe(redis_server: RedisServer, namespace: str) -> None:
    """Two instances stand for two processes: one budget, one breaker, one probe."""
    one = RedisState(redis_server.url, namespace=namespace, failure_threshold=2, timeout=2.0)
    two = RedisState(redis_server.url, namespace=namespace, failure_threshold=2, timeout=2.0)
    other = RedisState(redis_server.url, namespace=namespace + "-other", timeout=2.0)
    seen: list[tuple[str, str]] = []
    two.add_listener(lambda name, value: seen.append((name, value)))
    assert one.admit("d", rpm=2).ok
    assert two.admit("d", rpm=2).ok
    refused = one.admit("d", rpm=2)
    assert refused.limited
    assert "rpm limit 2" in (refused.reason or "")
    assert other.admit("d", rpm=2).ok  # another namespace: its own budget
    for _ in range(2):
        admission = one.admit("e")
        one.release("e", admission, ok=False)
    refused = two.admit("e")  # opened by the other instance: refused at the next admission
    assert not refused.ok
    assert "circuit open" in (refused.reason or "")
    assert seen == [("e", "open")]
    time.sleep(1.05)  # the default first cooldown, on the server's clock
    probe = two.admit("e")
    assert probe.probe
    assert not one.admit("e").ok  # the single probe is shared
    two.release("e", probe, ok=True, latency=0.2)
    assert one.admit("e").ok
    assert one.stats("e").breaker is BreakerState.CLOSED
    assert seen == [("e", "open"), ("e", "half_open"), ("e", "closed")]
    for made in (one, two, other):
        made.close()


def test_a_dead_workers_admission_stops_counting_after_its_lease(redis_server: RedisServer, namespace: str) -> None:
    now = [100.0]
    state = RedisState(redis_server.url, namespace=namespace, inflight_lease=30.0, clock=lambda: now[0])
    state.admit("d")  # never released
    assert state.stats("d").in_flight == 1
    now[0] += 31
    assert state.stats("d").in_flight == 0
    state.close()


def test_async_clients_per_event_loop(state: RedisState) -> None:
    async def calls() -> int:
        async def one() -> None:
            admission = await state.aadmit("d", tokens=2, tpm=10_000)
            assert admission.ok
            await asyncio.sleep(0)
            await state.arelease("d", admission, ok=True, latency=0.01, ttft=0.005, tokens=3)

        await asyncio.gather(*(one() for _ in range(50)))
        await state.acooldown("x", 60.0)  # long enough to outlast a loaded machine
        return state.in_flight("d")

    assert asyncio.run(calls()) == 0
    assert asyncio.run(calls()) == 0  # a second loop gets a client of its own
    stats = state.stats("d")
    assert (stats.successes, stats.tokens_last_minute) == (100, 300)
    assert state.latency("d", streaming=True) == pytest.approx(0.005)
    assert not state.admit("x").ok
    assert state.shared


def test_password_never_shown(redis_server: RedisServer, caplog: pytest.LogCaptureFixture) -> None:
    url = f"redis://user:s3cr3t-pa55@127.0.0.1:{free_port()}/0"  # nothing listens there
    state = RedisState(url, reconnect_interval=60.0)
    with caplog.at_level(logging.WARNING):
        assert state.admit("d").ok  # served locally
    assert "s3cr3t" not in repr(state)
    assert "s3cr3t" not in str(state.health())
    assert "s3cr3t" not in caplog.text
    assert "***" in repr(state)
    state.close()


def _serve(state: RedisState, n: int) -> list[Any]:
    out = []
    for _ in range(n):
        admission = state.admit("d", rpm=10_000)
        assert admission.ok
        state.release("d", admission, ok=True, latency=0.01)
        out.append(admission.reservation)
    return out


def test_redis_stopped_mid_run_then_restarted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    server = RedisServer(tmp_path)
    server.start()
    state = RedisState(server.url, namespace="down", reconnect_interval=0.05)
    watcher = redis.Redis.from_url(server.url)
    try:
        _serve(state, 5)
        assert state.health().shared
        server.stop()
        with caplog.at_level(logging.WARNING, logger="langchain_multigateway.state.redis"):
            _serve(state, 20)  # every call still served, from local state
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1
        assert "unreachable" in warnings[0].getMessage()
        health = state.health()
        assert (health.shared, health.live) == (False, False)
        server.start()  # same port, empty memory
        assert wait_until(lambda: state.health().shared)  # the background reconnect
        _serve(state, 3)
        assert int(watcher.hget(state.keys("d")[0], "ok") or 0) == 3  # shared state resumed
    finally:
        watcher.close()
        state.close()
        server.stop()


async def test_redis_that_hangs_is_bounded_then_resumes(tmp_path: Path) -> None:
    server = RedisServer(tmp_path)
    server.start()
    state = RedisState(server.url, namespace="slow", reconnect_interval=0.05)  # default 50 ms bound
    try:
        assert (await state.aadmit("d")).ok
        assert state.admit("d").ok
        server.pause()  # accepts connections, never answers
        started = time.monotonic()
        served = await state.aadmit("d")
        served_sync = [state.admit("d") for _ in range(2)]  # the third miss in a row: the process goes local
        waited = time.monotonic() - started
        assert served.ok
        assert all(admission.ok for admission in served_sync)
        # bounded (50 ms each by default; generous for a loaded machine): unbounded, this would hang
        assert waited < 10.0
        assert "Timeout" in (state.health().detail or "")
        server.resume()
        assert wait_until(lambda: state.health().shared)  # the background reconnect
        assert not isinstance((await state.aadmit("d")).reservation, type(served.reservation))
    finally:
        state.close()
        server.resume()
        server.stop()


def _child_resumes(state: RedisState, out: Any) -> None:
    # forked while Redis was down: the parent's reconnection thread did not come along
    out.put(wait_until(lambda: state.admit("d").ok and state.health().shared))


def test_a_process_forked_while_redis_is_down_reconnects_on_its_own(tmp_path: Path) -> None:
    server = RedisServer(tmp_path)
    server.start()
    state = RedisState(server.url, namespace="fork", reconnect_interval=0.05)
    try:
        server.stop()
        for _ in range(3):  # served locally; the third miss in a row: down, the parent's reconnection thread runs
            assert state.admit("d").ok
        assert not state.health().shared
        context = multiprocessing.get_context("fork")
        out = context.Queue()
        child = context.Process(target=_child_resumes, args=(state, out))
        child.start()
        server.start()
        assert out.get(timeout=30) is True
        child.join(10)
    finally:
        state.close()
        server.stop()


def test_prometheus_flag_follows_redis_down_and_back(tmp_path: Path) -> None:
    from prometheus_client import CollectorRegistry

    from langchain_multigateway.telemetry import PrometheusCallbackHandler

    server = RedisServer(tmp_path)
    server.start()
    state = RedisState(server.url, namespace="metrics", reconnect_interval=0.05)
    registry = CollectorRegistry()
    PrometheusCallbackHandler(registry=registry).watch_state(state, router="main")

    def live() -> float | None:
        return registry.get_sample_value("multigateway_shared_state_live", {"router": "main"})

    try:
        assert live() == 1.0
        server.stop()
        for _ in range(3):  # three misses in a row: the process routes locally
            state.admit("d")
        assert live() == 0.0
        server.start()
        assert wait_until(lambda: live() == 1.0)
    finally:
        state.close()
        server.stop()


async def test_a_cancelled_admission_leaves_the_client_usable(state: RedisState) -> None:
    cancelled = 0
    for _ in range(20):  # cancelled at different points of the round trip
        task = asyncio.create_task(state.aadmit("d"))
        await asyncio.sleep(0)
        task.cancel()
        try:
            admission = await task
        except asyncio.CancelledError:
            cancelled += 1
        else:
            await state.arelease("d", admission, ok=True)
    assert cancelled > 0
    admission = await state.aadmit("d")
    assert admission.ok
    await state.arelease("d", admission, ok=True, latency=0.01)
    assert state.shared
    # a cancelled admission may have been granted with nobody to release it: its lease bounds that
    assert state.stats("d").in_flight <= cancelled
    await state.aclose()


def test_figures_start_over_when_redis_lost_its_keys(state: RedisState, raw: redis.Redis) -> None:
    seen: list[tuple[str, str]] = []
    state.add_listener(lambda name, value: seen.append((name, value)))
    for _ in range(3):
        admission = state.admit("d")
        state.release("d", admission, ok=True, latency=1.0)
    assert state.latency("d") == pytest.approx(1.0)
    raw.delete(*state.keys("d"))  # as after a restart without persistence, or when the TTL ran out
    admission = state.admit("d")
    state.release("d", admission, ok=True, latency=3.0)
    assert state.latency("d") == pytest.approx(3.0)  # not the figures from before the loss
    assert state.in_flight("d") == 0
    assert seen == []


@pytest.mark.parametrize("held_up", [0.08, 0.3])
async def test_an_event_loop_held_up_past_the_bound_keeps_the_replies_redis_sent(
    redis_server: RedisServer, namespace: str, held_up: float
) -> None:
    """The multi-process proof's flake: a worker's loop held up by sync work (its first call
    imports the provider SDK, ~1.4 s) while admissions await Redis. The replies arrive in time;
    the read timers fire late, with the replies waiting. They must be used, not thrown away
    (that sent whole processes to local state, each then admitting the full rpm)."""
    state = RedisState(redis_server.url, namespace=namespace)  # the default 50 ms bound
    try:
        assert (await state.aadmit("d")).ok  # connected

        async def admit() -> Admission:
            return await state.aadmit("d", rpm=1000)

        async def hold_up_the_loop() -> None:
            time.sleep(held_up)  # noqa: ASYNC251 - the point: past the bound, while eight admissions await replies

        for _ in ("while connecting", "while reading replies on connections made before"):
            *admissions, _ = await asyncio.gather(*(admit() for _ in range(8)), hold_up_the_loop())
            assert all(isinstance(a.reservation, Ticket) for a in admissions)  # every one answered by Redis
        assert state.shared
        assert state.stats("d", rpm=1000).requests_last_minute == 17
    finally:
        await state.aclose()
        state.close()


@pytest.mark.parametrize("asynchronous", [False, True])
async def test_a_routed_call_costs_two_redis_round_trips(tmp_path: Path, asynchronous: bool) -> None:
    """Counted by the server (INFO commandstats): one script for the admission, one for the
    release, nothing else, sync and async; rate limits, tpm reservation and breakers all on."""
    from langchain_multigateway.routing import Deployment, RoutingChatModel
    from langchain_multigateway.testing import ScriptedChatModel

    server = RedisServer(tmp_path)  # a server of its own: no other test's client talks to it
    server.start()
    state = RedisState(server.url, namespace="trips")
    raw = redis.Redis.from_url(server.url)
    deployments = [
        Deployment(name="a", model=ScriptedChatModel(model="m", default_reply="x"), rpm=10**6, tpm=10**9),
        Deployment(name="b", model=ScriptedChatModel(model="m", default_reply="y"), priority=1, rpm=10**6),
    ]
    router = RoutingChatModel(deployments=deployments, state=state)
    try:
        for _ in range(2):  # scripts loaded, connections made
            await router.ainvoke("hi") if asynchronous else router.invoke("hi")
        raw.config_resetstat()
        for _ in range(20):
            answer = await router.ainvoke("hi") if asynchronous else router.invoke("hi")
            assert answer.content == "x"
        commands = {name.removeprefix("cmdstat_"): entry["calls"] for name, entry in raw.info("commandstats").items()}
        assert commands.pop("evalsha") == 40
        # the server also counts what the scripts ran; anything else came from the client
        in_scripts = {name.lower() for name in re.findall(r"redis\.call\('(\w+)'", ADMIT + RELEASE)}
        assert set(commands) - in_scripts <= {"config|resetstat", "info"}, commands  # the counting itself
        assert state.shared
    finally:
        raw.close()
        state.close()
        server.stop()


def test_processes_cut_off_together_keep_to_their_share_of_a_limit(tmp_path: Path) -> None:
    """fallback="share" (the default): four processes (four states) that saw each other admit to
    "d" each admit rpm // 4 locally once Redis is gone, not the whole rpm each (also to a
    deployment they never admitted to while Redis answered)."""
    server = RedisServer(tmp_path)
    server.start()
    states = [RedisState(server.url, namespace="share", reconnect_interval=60.0) for _ in range(4)]
    try:
        for _ in range(2):  # each learns, at its admissions and releases, how many admit there
            for state in states:
                state.release("d", state.admit("d", rpm=1000), ok=True)
        server.stop()
        local = [sum(state.admit("d", rpm=8).ok for _ in range(10)) for state in states]
        assert local == [2, 2, 2, 2]  # 8 together: each process's share of the limit
        # a deployment Redis never told them of: the most processes seen for any other, not alone
        fresh = [sum(state.admit("fresh", rpm=8).ok for _ in range(10)) for state in states]
        assert fresh == [2, 2, 2, 2]
        assert not any(state.shared for state in states)
        assert all(state.admit("no-limit").ok for state in states)  # a deployment without a limit: served
    finally:
        for state in states:
            state.close()
        server.stop()


def test_fallback_closed_refuses_limited_deployments_while_redis_is_unreachable(tmp_path: Path) -> None:
    server = RedisServer(tmp_path)
    server.start()
    state = RedisState(server.url, namespace="closed", fallback="closed", reconnect_interval=0.05)
    try:
        assert state.admit("d", rpm=100).ok
        server.stop()
        refused = state.admit("d", rpm=100)
        assert not refused.ok
        assert refused.limited
        assert "Redis state unreachable" in (refused.reason or "")
        assert not state.admit("t", tpm=10_000).ok
        assert state.admit("free").ok  # no limit to keep: served locally
        server.start()
        assert wait_until(lambda: state.admit("d", rpm=100).ok)  # shared again
    finally:
        state.close()
        server.stop()
