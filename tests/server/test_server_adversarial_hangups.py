"""Adversarial pass on clients that hang up, at every phase of a lean-path call, and on many at once.

The app (what ``multigateway serve`` runs) is driven through its ASGI interface with a
``receive`` that delivers the body and then, when the test says, ``http.disconnect`` (as
uvicorn does when the client's connection closes), in front of the raw hostile upstream
of ``test_server_adversarial_upstream`` (a real HTTP server on a loopback port): the test
chooses the phase a client leaves in, which a client over TCP can only hit by luck.
A last test hangs up real TCP clients on a real server (uvicorn on a loopback port).

After every call, whatever the phase: one answer at most (200, or 499 once the client is
gone), exactly one ledger row, the key's budget reservation given back, the router's
deployment idle, no upstream connection checked out of the lean client's pool, and the task that
ran the call not left cancelled (a later await in it would be cut).
"""

from __future__ import annotations

import asyncio
import logging
import random
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from starlette.applications import Starlette

from langchain_multigateway.server.gateway import FULL_PATH_ENV
from langchain_multigateway.server.keys import KeyStore, VirtualKey
from langchain_multigateway.server.runtime import build_app
from tests.server.conftest import ThreadedServer, chat_scope
from tests.server.test_server_adversarial_upstream import HostileUpstream

pytestmark = pytest.mark.filterwarnings("ignore:No price known")
PRICE = {"input_price": 1000, "output_price": 2000}  # USD per million tokens: 0.03 a call (20 in, 5 out)
CALL_COST = (20 * 1000 + 5 * 2000) / 1_000_000


@pytest.fixture(scope="module")
def hostile() -> Iterator[HostileUpstream]:
    with HostileUpstream() as upstream:
        yield upstream


def _config(directory: Path, upstream: HostileUpstream) -> Path:
    lines = ["models:"]
    for model in ("delay", "hang", "trickle", "outage"):
        lines.append(
            f'  {model}: {{model: "openai:{model}", base_url: "{upstream.url}/v1", api_key: none, timeout: 30}}'
        )
    lines += ["routers:", "  r-failover:", "    deployments:"]  # down, then one that never answers
    lines += ["      - {model: outage, name: d-outage}", "      - {model: hang, name: d-hang-backup}"]
    for model in ("delay", "hang", "trickle"):
        lines += [
            f"  r-{model}:",
            "    deployments:",
            f"      - {{model: {model}, name: d-{model}, input_price: 1000, output_price: 2000}}",
        ]
    path = directory / "gateway.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


class Client:
    """One ASGI request: its body at once, then ``http.disconnect`` once :meth:`hang_up` is called."""

    def __init__(self, app: Starlette, model: str, secret: str, text: str = "hi") -> None:
        self.app = app
        self.body = orjson.dumps({"model": model, "messages": [{"role": "user", "content": text}]})
        self.secret = secret
        self.gone = asyncio.Event()
        self.sent: list[dict[str, Any]] = []
        self._delivered = False
        self.cancelling_after = -1
        self.on_start: Callable[[], Any] | None = None

    def hang_up(self) -> None:
        self.gone.set()

    @property
    def status(self) -> int | None:
        starts = [m["status"] for m in self.sent if m["type"] == "http.response.start"]
        assert len(starts) <= 1, starts  # never answered twice
        return starts[0] if starts else None

    async def receive(self) -> dict[str, Any]:
        if not self._delivered:
            self._delivered = True
            return {"type": "http.request", "body": self.body, "more_body": False}
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)
        if message["type"] == "http.response.start" and self.on_start is not None:
            self.on_start()
            await asyncio.sleep(0.01)  # the client leaves while the answer is being written

    async def run(self) -> None:
        scope = chat_scope(self.secret, self.body)
        await self.app(scope, self.receive, self.send)
        task = asyncio.current_task()
        assert task is not None
        self.cancelling_after = task.cancelling()
        await asyncio.sleep(0)  # a cancellation left pending on the task would be raised here


class Served:
    def __init__(self, app: Starlette, directory: Path) -> None:
        self.app = app
        self.directory = directory
        self.server = app.state.server

    def key(self, name: str) -> tuple[str, VirtualKey]:
        store = KeyStore(self.directory / "keys.sqlite3")
        try:
            return store.create(name, budget_usd=1000.0)
        finally:
            store.close()

    def rows(self, key: VirtualKey) -> Counter[str]:
        self.server.gateway.ledger.flush()
        with sqlite3.connect(self.directory / "usage.sqlite3") as db:
            found = db.execute("SELECT outcome, error_type, tags FROM calls").fetchall()
        return Counter(f"{outcome}:{error or ''}" for outcome, error, tags in found if key.tag in str(tags))

    def assert_nothing_held(self, key: VirtualKey) -> None:
        gateway = self.server.gateway
        for name, router in gateway.routers.items():
            for dep, health in router.health().items():
                assert (health.in_flight, health.waiting) == (0, 0), (name, dep)
                assert health.breaker == "closed", (name, dep)  # a client leaving is not the deployment's failure
        for sender in gateway.passthrough._senders.values():
            assert sender.upstream.checked_out() == 0, sender.url  # no upstream connection checked out
        assert gateway.limits._in_flight.get(key.id, 0) == 0  # the key's budget reservation given back
        assert gateway.unsettled == 0  # every call begun was recorded


@asynccontextmanager
async def serving(upstream: HostileUpstream, directory: Path) -> AsyncIterator[Served]:
    app = build_app(
        _config(directory, upstream), keys_path=directory / "keys.sqlite3", ledger_path=directory / "usage.sqlite3"
    )
    async with app.router.lifespan_context(app):
        yield Served(app, directory)


async def _until(condition: Callable[[], bool], seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the call never reached the phase under test"
        await asyncio.sleep(0.01)


@pytest.mark.parametrize(
    "phase", ["before-the-upstream-answers", "while-the-answer-is-read", "while-it-is-written", "during-failover"]
)
async def test_a_client_leaving_at_each_phase_leaves_one_ledger_row_and_nothing_held(
    hostile: HostileUpstream, tmp_path: Path, phase: str
) -> None:
    async with serving(hostile, tmp_path) as served:
        secret, key = served.key(phase)
        model = {"before-the-upstream-answers": "hang", "while-the-answer-is-read": "trickle"}.get(phase, "delay")
        model = "hang" if phase == "during-failover" else model  # the backup, once the first deployment failed
        client = Client(served.app, "r-failover" if phase == "during-failover" else f"r-{model}", secret)
        reached = hostile.served[model]
        abandoned = hostile.abandoned[model]
        if phase == "while-it-is-written":
            client.on_start = client.hang_up
        call = asyncio.ensure_future(client.run())
        if phase != "while-it-is-written":
            await _until(lambda: hostile.served[model] > reached)
            await asyncio.sleep(0.3)  # the upstream is now waiting, or sending its body a byte at a time
            client.hang_up()
        await asyncio.wait_for(call, 30)
        assert client.cancelling_after == 0  # the hang-up's cancellation was taken back
        if phase == "while-it-is-written":
            assert client.status == 200  # answered: the client leaving after that changes nothing
            assert served.rows(key) == Counter({"ok:": 1})
            assert served.server.gateway.limits.spent(key) == pytest.approx(CALL_COST)
        else:
            assert client.status == 499
            assert served.rows(key) == Counter({"error:ClientGoneError": 1})
            assert served.server.gateway.limits.spent(key) == 0.0
            # The upstream saw its caller go: the request was cut, not left to run.
            await _until(lambda: hostile.abandoned[model] > abandoned)
        served.assert_nothing_held(key)
        # The key is free: its next call is served.
        after = Client(served.app, "r-delay", secret)
        await after.run()
        assert after.status == 200


@pytest.mark.parametrize("path", ["lean", "full"])
async def test_hang_ups_racing_the_answers_of_two_hundred_calls_at_once_add_up(
    hostile: HostileUpstream,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    path: str,
) -> None:
    """200 calls at once, each client leaving about when its answer arrives: the upstream, as it gets a call,
    has that call's client hang up (from the upstream's thread) 0-30 ms later, and answers 0-30 ms later.
    Down the lean path, and the full one (``MULTIGATEWAY_SERVE_FULL_PATH=1``: the openai SDK)."""
    random.seed(14)
    if path == "full":
        monkeypatch.setenv(FULL_PATH_ENV, "1")  # read when the app is built
    async with serving(hostile, tmp_path) as served:
        secret, key = served.key("racing")
        first = Client(served.app, "r-delay", secret)  # a budgeted key's first call makes what a call costs known
        await first.run()
        assert first.status == 200
        clients = [Client(served.app, "r-delay", secret, f"race-{i}") for i in range(200)]
        reached = hostile.served["delay"]
        loop = asyncio.get_running_loop()
        for i, client in enumerate(clients):
            delay = random.uniform(0, 0.03)
            hostile.on_request[f"race-{i}"] = lambda c=client, d=delay: loop.call_soon_threadsafe(
                loop.call_later, d, c.hang_up
            )

        async def one(client: Client) -> None:
            await client.run()

        await asyncio.wait_for(asyncio.gather(*(one(c) for c in clients)), 120)
        statuses = Counter(c.status for c in clients)
        assert set(statuses) <= {200, 499}, statuses
        # Every answered call was asked of the upstream once (a retry would show here); none asked twice.
        assert statuses[200] <= hostile.served["delay"] - reached <= 200
        assert all(c.cancelling_after == 0 for c in clients)
        rows = served.rows(key)
        assert rows == Counter({"ok:": statuses[200] + 1, "error:ClientGoneError": statuses[499]}), (rows, statuses)
        assert served.server.gateway.limits.spent(key) == pytest.approx((statuses[200] + 1) * CALL_COST)
        metrics = served.server.gateway.metrics.render().decode()
        for status, count in (statuses + Counter({200: 1})).items():  # with the first call
            line = f'multigateway_http_responses_total{{route="chat_completions",status="{status}"}} {float(count)}'
            assert line in metrics
        served.assert_nothing_held(key)
    # No stray CancelledError, unretrieved task exception or failed settling was logged.
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


def test_real_tcp_clients_from_threads_hanging_up_at_random_add_up(hostile: HostileUpstream, tmp_path: Path) -> None:
    """100 calls from 20 threads to a real server; a third are hung up by the client at a random moment."""
    app = build_app(
        _config(tmp_path, hostile), keys_path=tmp_path / "keys.sqlite3", ledger_path=tmp_path / "usage.sqlite3"
    )
    served = Served(app, tmp_path)
    secret, key = served.key("threads")
    answered: Counter[int] = Counter()
    lock = threading.Lock()
    rng = random.Random(7)
    cuts = [rng.random() < 0.33 for _ in range(100)]

    with ThreadedServer(app) as server:

        def call(index: int) -> None:
            body = {"model": "r-delay", "messages": [{"role": "user", "content": "hi"}]}
            headers = {"authorization": f"Bearer {secret}"}
            # A client that gives up after 1-25 ms closes its connection: the gateway sees the hang-up.
            cut = index >= 0 and cuts[index]
            timeout = httpx.Timeout(30, read=rng.uniform(0.001, 0.025)) if cut else httpx.Timeout(30)
            try:
                response = httpx.post(server.url + "/v1/chat/completions", json=body, headers=headers, timeout=timeout)
            except httpx.TimeoutException:
                return
            with lock:
                answered[response.status_code] += 1

        call(-1)  # a budgeted key's first call makes what a call costs known (its calls may then overlap)
        threads = [threading.Thread(target=lambda i=i: [call(j) for j in range(i, 100, 20)]) for i in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert set(answered) == {200}, answered  # a client that stayed got its answer
        deadline = time.monotonic() + 20
        while sum(served.rows(key).values()) < 101 and time.monotonic() < deadline:
            time.sleep(0.05)
        rows = served.rows(key)
        assert sum(rows.values()) == 101, rows  # one row per call, whoever left
        assert set(rows) <= {"ok:", "error:ClientGoneError"}, rows
        assert rows["ok:"] >= answered[200]
        ready = httpx.get(server.url + "/health/readiness", timeout=30).json()
        assert ready["routers"]["r-delay"]["deployments"]["d-delay"]["in_flight"] == 0
        metrics = httpx.get(server.url + "/metrics", timeout=30).text
    ok = f'multigateway_key_requests_total{{key="threads",outcome="ok"}} {float(rows["ok:"])}'
    assert ok in metrics


async def test_a_body_deadline_racing_the_end_of_the_body_is_a_408_or_an_answer_never_both(
    hostile: HostileUpstream, tmp_path: Path
) -> None:
    """A 20 ms body deadline; the body's second half arrives 0-40 ms after the first: the timer fires before,
    in the same instant as, or after the end of the body."""
    rng = random.Random(3)
    app = build_app(
        _config(tmp_path, hostile),
        keys_path=tmp_path / "keys.sqlite3",
        ledger_path=tmp_path / "usage.sqlite3",
        body_timeout=0.02,
    )
    async with app.router.lifespan_context(app):
        served = Served(app, tmp_path)
        secret, key = served.key("deadline")
        first = Client(app, "r-delay", secret)
        await first.run()  # makes what a call of this budgeted key costs known
        statuses: Counter[int | None] = Counter()
        for _ in range(60):
            client = Client(app, "r-delay", secret)
            whole = client.body
            pieces = [
                {"type": "http.request", "body": whole[:10], "more_body": True},
                {"type": "http.request", "body": whole[10:], "more_body": False},
            ]
            wait = rng.uniform(0, 0.04)

            async def receive(pieces: list[dict[str, Any]] = pieces, wait: float = wait, c: Client = client) -> Any:
                if pieces:
                    if len(pieces) == 1:
                        await asyncio.sleep(wait)
                    return pieces.pop(0)
                await c.gone.wait()
                return {"type": "http.disconnect"}

            client.receive = receive  # type: ignore[method-assign]
            await client.run()
            assert client.cancelling_after == 0  # the deadline's cancellation was taken back
            statuses[client.status] += 1
        assert set(statuses) <= {200, 408}, statuses
        assert served.rows(key) == Counter({"ok:": statuses[200] + 1})  # a 408 never reached the router
        served.assert_nothing_held(key)


def test_stopping_the_server_with_calls_in_flight_settles_each_once(hostile: HostileUpstream, tmp_path: Path) -> None:
    """uvicorn stops (graceful timeout 1 s) while five lean calls wait on an upstream that never answers:
    each is answered 503 (send it again), settled once (an error row), and its upstream request is cut."""
    app = build_app(
        _config(tmp_path, hostile), keys_path=tmp_path / "keys.sqlite3", ledger_path=tmp_path / "usage.sqlite3"
    )
    served = Served(app, tmp_path)
    secret, key = served.key("stopping")
    reached, abandoned = hostile.served["hang"], hostile.abandoned["hang"]
    server = ThreadedServer(app, timeout_graceful_shutdown=1)
    results: list[int | str] = []

    def call(model: str) -> None:
        body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
        try:
            answer = httpx.post(
                server.url + "/v1/chat/completions",
                json=body,
                headers={"authorization": f"Bearer {secret}"},
                timeout=60,
            )
            results.append(answer.status_code)
        except httpx.HTTPError as exc:
            results.append(type(exc).__name__)

    with server:
        call("r-delay")  # a budgeted key's first call makes what a call costs known
        hanging = [threading.Thread(target=call, args=("r-hang",)) for _ in range(5)]
        for thread in hanging:
            thread.start()
        deadline = time.monotonic() + 30
        while hostile.served["hang"] < reached + 5:
            assert time.monotonic() < deadline, "the calls never reached the upstream"
            time.sleep(0.02)
        server.server.should_exit = True
        for thread in hanging:
            thread.join(60)
    assert not server.thread.is_alive()
    assert results[0] == 200
    assert results[1:] == [503] * 5  # "shutting down, send it again": the openai SDK retries a 503
    with sqlite3.connect(tmp_path / "usage.sqlite3") as db:
        found = db.execute("SELECT outcome, error_type, tags FROM calls").fetchall()
    rows = [f"{outcome}:{error or ''}" for outcome, error, tags in found if key.tag in tags]
    # One row per call; the cut ones recorded as the server's doing, not as clients that left.
    assert Counter(rows) == Counter({"ok:": 1, "error:ServerStoppingError": 5}), (rows, results)
    deadline = time.monotonic() + 10
    while hostile.abandoned["hang"] < abandoned + 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert hostile.abandoned["hang"] == abandoned + 5  # the upstream requests were cut, not left running


def test_every_upstream_session_is_closed_when_the_servers_event_loop_ends(
    hostile: HostileUpstream, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The lean path's connection pools (one per deployment and event loop) are closed as the loop ends: no
    "Unclosed" warning or ResourceWarning, no connection left open to the upstream."""
    import gc
    import warnings

    from langchain_multigateway.server import _http1

    made: list[Any] = []
    new_pool = _http1.Pool.__init__

    def recording(pool: Any, *args: Any, **kwargs: Any) -> None:
        new_pool(pool, *args, **kwargs)
        made.append(pool)

    monkeypatch.setattr(_http1.Pool, "__init__", recording)
    app = build_app(_config(tmp_path, hostile), keys_path=tmp_path / "keys.sqlite3", require_key=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with ThreadedServer(app) as server, httpx.Client(timeout=60) as client:
            for model in ("r-delay", "r-delay", "r-trickle"):
                body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
                assert client.post(server.url + "/v1/chat/completions", json=body).status_code == 200
            assert made  # the pools were made in the server's loop (at start-up and for the calls)
            assert sum(len(pool._idle) for pool in made) >= 1  # a kept-alive connection is open when the loop ends
        assert not server.thread.is_alive()
        del server, app
        gc.collect()
    assert all(pool._closed and not pool._idle and not pool.lent for pool in made)
    unclosed = [str(w.message) for w in caught if "nclosed" in str(w.message) or w.category is ResourceWarning]
    unclosed += [r.getMessage() for r in caplog.records if "nclosed" in r.getMessage()]
    assert unclosed == []


async def test_a_key_whose_first_call_was_hung_up_cannot_then_overspend_its_budget_at_once(
    hostile: HostileUpstream, tmp_path: Path
) -> None:
    """A call that never ended says nothing of what a call costs: after a hung-up first call, 50 calls at once
    on a key with room for three must not all be let in as if calls were free."""
    async with serving(hostile, tmp_path) as served:
        store = KeyStore(tmp_path / "keys.sqlite3")
        secret, key = store.create("thrifty", budget_usd=3 * CALL_COST + CALL_COST / 2)
        store.close()
        first = Client(served.app, "r-hang", secret)
        reached = hostile.served["hang"]
        call = asyncio.ensure_future(first.run())
        await _until(lambda: hostile.served["hang"] > reached)
        first.hang_up()
        await asyncio.wait_for(call, 30)
        assert first.status == 499
        clients = [Client(served.app, "r-delay", secret, f"blast-{i}") for i in range(50)]
        await asyncio.wait_for(asyncio.gather(*(c.run() for c in clients)), 60)
        for _ in range(5):  # and one at a time, until the budget refuses
            await Client(served.app, "r-delay", secret).run()
        statuses = Counter(c.status for c in clients)
        assert set(statuses) <= {200, 429}, statuses
        # At most the call that crosses the budget beyond it (as the budget's rule lets it in).
        assert served.server.gateway.limits.spent(key) <= key.budget_usd + CALL_COST + 1e-9
        served.assert_nothing_held(key)


async def test_a_stream_whose_client_leaves_before_its_first_chunk_is_cut_and_leaves_nothing_held(
    hostile: HostileUpstream, tmp_path: Path
) -> None:
    """Before a stream's first chunk (the upstream has not sent one yet) nothing is being written that
    could notice the client gone: the wait for it is watched as a non-streamed call is."""
    async with serving(hostile, tmp_path) as served:
        secret, key = served.key("stream-leaves-early")
        client = Client(served.app, "r-hang", secret)
        client.body = orjson.dumps({"model": "r-hang", "stream": True, "messages": [{"role": "user", "content": "hi"}]})
        reached, abandoned = hostile.served["hang"], hostile.abandoned["hang"]
        call = asyncio.ensure_future(client.run())
        await _until(lambda: hostile.served["hang"] > reached)
        await asyncio.sleep(0.3)  # the upstream holds the stream's first chunk back
        client.hang_up()
        await asyncio.wait_for(call, 30)
        assert client.status == 499
        assert client.cancelling_after == 0
        assert served.rows(key) == Counter({"error:ClientGoneError": 1})
        await _until(lambda: hostile.abandoned["hang"] > abandoned)  # the upstream request was cut
        served.assert_nothing_held(key)
