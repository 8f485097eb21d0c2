"""Budgets with periods, kept in a SpendStore: SQLite (the ledger's file) and a real redis-server.

Judge-and-hold is atomic in the store, so processes sharing it never pass the limit by more
than what calls in flight reserved beyond their real cost; a restart keeps a daily budget."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from langchain_multigateway import Deployment, RoutingChatModel
from langchain_multigateway.errors import BudgetExceededError
from langchain_multigateway.state import spend_redis, spend_sqlite
from langchain_multigateway.state.redis import RedisState
from langchain_multigateway.state.spend import SpendStore, SpendStoreError, buckets, check_period, period_seconds
from langchain_multigateway.state.spend_redis import RedisSpendStore
from langchain_multigateway.state.spend_sqlite import SQLiteSpendStore
from langchain_multigateway.testing import ScriptedChatModel, Step
from langchain_multigateway.usage import Budget
from tests.redis_server import RedisServer, free_port

pytest_plugins = ["tests.redis_fixtures"]  # redis_server, namespace

ROOT = Path(__file__).resolve().parent.parent.parent
NOON = datetime(2026, 11, 29, 12, tzinfo=UTC).timestamp()


def test_period_buckets_are_utc_days_and_months() -> None:
    assert buckets(None, NOON) == ("all", ["all"])
    assert buckets("1d", NOON) == ("d2026-11-29", ["d2026-11-29"])
    now, summed = buckets("30d", NOON)
    assert now == "d2026-11-29"
    assert (len(summed), summed[-1]) == (30, "d2026-10-31")  # a window sliding by days
    assert buckets("1mo", NOON) == ("m2026-11", ["m2026-11"])
    assert buckets("1d", NOON + 12 * 3600) == ("d2026-11-30", ["d2026-11-30"])  # midnight UTC starts a new day
    assert period_seconds("30d") > 30 * 86400
    for bad in ("1w", "0d", "1y", "1000d", "d"):
        with pytest.raises(ValueError, match="period must be"):
            check_period(bad)


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SpendStore]:
    made: Any
    if request.param == "sqlite":
        made = SQLiteSpendStore(tmp_path / "ledger.sqlite3")
    else:
        server: RedisServer = request.getfixturevalue("redis_server")
        made = RedisSpendStore(server.url, namespace=request.getfixturevalue("namespace"))
    yield made
    made.close()


def test_store_judges_holds_and_settles(store: SpendStore) -> None:
    over, totals = store.reserve("b", "1d", "k1", 100, 0.30, 1000, 1.00)
    assert over is None
    assert (totals.spent_cost_usd, totals.reserved_cost_usd) == (0, 0)
    assert store.reserve("b", "1d", "k2", 100, 0.80, 1000, 1.00)[0] == "cost"  # 0.30 held + 0.80 > 1.00
    assert store.reserve("b", "1d", "k2", 950, 0.10, 1000, 1.00)[0] == "tokens"
    assert store.reserve("b", "1d", "k3", 10, 0.70, 1000, 1.00)[0] is None  # exactly at the limit fits
    assert store.reserve("b", "1d", "k4", 0, None, 1000, 1.00)[0] == "cost"  # unknown cost: only below the limit
    store.settle("b", "1d", "k1", 40, 0.10)  # cheaper than reserved: the difference frees up
    totals = store.totals("b", "1d")
    assert (totals.spent_tokens, totals.reserved_tokens) == (40, 10)
    assert totals.spent_cost_usd == pytest.approx(0.10)
    assert totals.reserved_cost_usd == pytest.approx(0.70)
    assert store.reserve("b", "1d", "k5", 0, 0.20, None, 1.00)[0] is None
    assert store.totals("other", "1d").spent_tokens == 0  # budgets apart by name
    assert store.totals("b", "1mo").spent_tokens == 0  # a month is counted in buckets of its own
    store.reset("b", "1d")
    assert store.totals("b", "1d").spent_tokens == 0
    assert store.totals("b", "1d").reserved_tokens == 10  # reservations survive a reset


def test_a_dead_processes_reservation_expires(store: SpendStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spend_sqlite, "RESERVATION_LEASE", 0.0)
    monkeypatch.setattr(spend_redis, "RESERVATION_LEASE", 0.001)
    store.reserve("b", None, "lost", 10, 0.5, None, 1.0)  # never settled
    import time

    time.sleep(0.01)
    assert store.totals("b", None).reserved_tokens == 0
    assert store.reserve("b", None, "next", 10, 0.9, None, 1.0)[0] is None


def test_budget_with_a_period_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "usage.sqlite3"
    budget = Budget(max_cost_usd=0.01, period="1d", name="daily", store=SQLiteSpendStore(path))
    key = budget.reserve(100, 0.004)
    budget.settle(key, 80, 0.003)
    budget.record_spend(10, 0.002)
    restarted = Budget(max_cost_usd=0.01, period="1d", name="daily", store=SQLiteSpendStore(path))
    assert restarted.spent_cost_usd == pytest.approx(0.005)
    assert restarted.spent_tokens == 90
    assert restarted.remaining_cost_usd == pytest.approx(0.005)
    with pytest.raises(BudgetExceededError) as info:
        restarted.reserve(10, 0.006)
    assert info.value.kind == "cost"
    assert "$0.005000 spent or in flight" in str(info.value)
    assert restarted.allows(10, 0.004)
    restarted.reset()
    assert budget.spent_cost_usd == 0


@pytest.mark.redis
def test_a_redis_state_hands_out_a_spend_store_on_the_same_server(redis_server: RedisServer) -> None:
    state = RedisState(redis_server.url, namespace="ns-spend")
    store = state.spend_store()
    budget = Budget(max_tokens=50, period="1d", name="team", store=store)
    budget.settle(budget.reserve(30), 30)
    assert RedisSpendStore(redis_server.url, namespace="ns-spend").totals("team", "1d").spent_tokens == 30
    assert store.keys("team")[0].startswith("{ns-spend:budget:team}")
    store.close()
    state.close()


def test_an_unreachable_store_refuses_the_call_with_a_typed_error() -> None:
    store = RedisSpendStore(f"redis://u:s3cret@127.0.0.1:{free_port()}/0", timeout=0.2)
    budget = Budget(max_cost_usd=1.0, period="1d", name="team", store=store)
    model = ScriptedChatModel(steps=["never sent"], model="m")
    router = RoutingChatModel(deployments=[Deployment(model=model, name="d")], budget=budget)
    with pytest.raises(SpendStoreError) as info:
        router.invoke("hi")
    assert "budget 'team': its Redis store at redis://u:***@127.0.0.1:" in str(info.value)
    assert "s3cret" not in str(info.value)
    assert model.call_count == 0  # nothing sent without a budget decision
    store.close()


def test_budget_period_defaults_to_the_ledger_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MULTIGATEWAY_LEDGER", str(tmp_path / "ledger.sqlite3"))
    budget = Budget(max_tokens=100, period="30d")
    assert isinstance(budget.store, SQLiteSpendStore)
    assert budget.store.path == str(tmp_path / "ledger.sqlite3")
    assert Budget(max_tokens=100).store is None  # no period: in memory, as before
    with pytest.raises(ValueError, match="period must be"):
        Budget(max_tokens=100, period="weekly")


@pytest.mark.parametrize("asynchronous", [False, True])
async def test_router_budget_with_a_period_refuses_once_spent(store: SpendStore, asynchronous: bool) -> None:
    usage = {"input_tokens": 1000, "output_tokens": 1000, "total_tokens": 2000}
    model = ScriptedChatModel(steps=[Step(reply="ok", usage=usage)], exhausted="cycle", model="m")
    dep = Deployment(model=model, name="priced", input_price=1.0, output_price=1.0)  # $0.002 a call
    name = f"router-{uuid.uuid4().hex[:6]}"
    router = RoutingChatModel(deployments=[dep], budget=Budget(max_cost_usd=0.005, period="1d", name=name, store=store))
    served = 0
    with pytest.raises(BudgetExceededError):
        for _ in range(10):
            await router.ainvoke("hi", max_tokens=5) if asynchronous else router.invoke("hi", max_tokens=5)
            served += 1
    # the estimate (prompt + max_tokens=5) is tiny, the real spend $0.002 a call: the third call
    # still fits at $0.004 spent, the fourth does not at $0.006
    assert served == 3
    totals = store.totals(name, "1d")
    assert totals.spent_cost_usd == pytest.approx(0.006)
    assert totals.reserved_cost_usd == 0


_WORKER = """
import json, sys, time
from langchain_multigateway.state.spend_redis import RedisSpendStore
from langchain_multigateway.state.spend_sqlite import SQLiteSpendStore
job = json.loads(sys.argv[1])
store = RedisSpendStore(job["url"], namespace=job["ns"]) if job["url"] else SQLiteSpendStore(job["path"])
granted = spent = 0
for i in range(job["tries"]):
    key = f"{job['worker']}-{i}"
    over, _ = store.reserve("shared", "1d", key, 10, 0.003, None, job["limit"])
    if over is None:
        granted += 1
        time.sleep(0.001)
        store.settle("shared", "1d", key, 7, 0.002)  # the real cost is below the estimate
        spent += 2
print(json.dumps({"granted": granted, "spent_millicents": spent}))
"""


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def test_four_processes_never_pass_a_shared_daily_budget(backend: str, tmp_path: Path, request: Any) -> None:
    url = request.getfixturevalue("redis_server").url if backend == "redis" else ""
    job = {"url": url, "ns": f"mp-{uuid.uuid4().hex[:6]}", "path": str(tmp_path / "l.sqlite3"), "tries": 60}
    job["limit"] = 0.25  # 25 cents: about 100 calls at 0.2 cents real cost, out of 240 asked
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, json.dumps({**job, "worker": w})],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(4)
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-2000:]
        results.append(json.loads(out))
    store: Any = RedisSpendStore(url, namespace=job["ns"]) if url else SQLiteSpendStore(job["path"])
    totals = store.totals("shared", "1d")
    store.close()
    assert totals.reserved_cost_usd == 0
    assert totals.spent_cost_usd == pytest.approx(sum(r["spent_millicents"] for r in results) / 1000)
    assert totals.spent_cost_usd <= 0.25  # never over: every estimate covered its real cost
    assert totals.spent_cost_usd >= 0.2  # and the budget was used, not refused wholesale
    assert sum(r["granted"] for r in results) < 240


def _priced(model: str) -> Deployment:
    usage = {"input_tokens": 1000, "output_tokens": 1000, "total_tokens": 2000}
    scripted = ScriptedChatModel(steps=[Step(reply=model, usage=usage)], exhausted="cycle", model=model)
    return Deployment(model=scripted, name=model, input_price=1.0, output_price=1.0)  # $0.002 a call


@pytest.mark.parametrize("asynchronous", [False, True])
async def test_a_model_scoped_budget_is_shared_and_leaves_other_models_usable(
    store: SpendStore, asynchronous: bool
) -> None:
    """``Budget(model=...)``: two routers (two processes) spend one daily budget on model ``a``;
    once it is spent, both route to ``b``, whose calls it neither judges nor counts."""
    name = f"scoped-{uuid.uuid4().hex[:6]}"

    def router() -> RoutingChatModel:
        budget = Budget(max_cost_usd=0.005, period="1d", name=name, store=store, model="a")
        return RoutingChatModel(
            deployments=[_priced("a"), _priced("b")], budget=budget, on_budget_exceeded="cheaper", strategy="ordered"
        )

    one, two = router(), router()
    served = []
    for turn in range(6):
        caller = one if turn % 2 == 0 else two
        answer = await caller.ainvoke("hi", max_tokens=5) if asynchronous else caller.invoke("hi", max_tokens=5)
        served.append(answer.content)
    assert served == ["a", "a", "a", "b", "b", "b"]  # $0.006 spent on a, then a is refused for both
    assert store.totals(name, "1d").spent_cost_usd == pytest.approx(0.006)  # b's calls are not counted
    assert not one.budget.covers("scripted", "b")  # type: ignore[union-attr]


@pytest.mark.filterwarnings("ignore:No price known")
def test_a_provider_scoped_budget_as_a_callback_judges_only_that_provider() -> None:
    budget = Budget(max_tokens=10, provider="elsewhere")
    model = ScriptedChatModel(default_reply="a long enough reply to pass ten tokens", model="m")
    for _ in range(3):
        model.invoke("hello there, several tokens of prompt", config={"callbacks": [budget]})
    assert budget.spent_tokens == 0  # another provider's calls: neither judged nor counted
    mine = Budget(max_tokens=30, provider=Deployment(model=model).provider)
    model.invoke("hello there, several tokens of prompt", config={"callbacks": [mine]})
    assert mine.spent_tokens > 15
    with pytest.raises(BudgetExceededError):
        model.invoke("hi", config={"callbacks": [mine]})


@pytest.mark.filterwarnings("ignore:No price known")
@pytest.mark.parametrize("asynchronous", [False, True])
async def test_a_key_scoped_budget_judges_and_counts_only_that_keys_runs(store: SpendStore, asynchronous: bool) -> None:
    """``Budget(key=...)``: one caller's daily tokens, shared through the store (two handlers
    stand for two processes); other keys' runs and runs naming no key are neither judged nor counted."""
    name = f"key-{uuid.uuid4().hex[:6]}"
    model = ScriptedChatModel(default_reply="a reply of several words", model="m")

    async def call(budget: Budget, key: str | None) -> None:
        config: Any = {"callbacks": [budget]}
        if key is not None:
            config["metadata"] = {"virtual_key": key}  # as multigateway serve names each virtual key
        if asynchronous:
            await model.ainvoke("a prompt of a few words", config=config)
        else:
            model.invoke("a prompt of a few words", config=config)

    one, two = (Budget(max_tokens=40, period="1d", name=name, store=store, key="team-a") for _ in range(2))
    await call(one, "team-a")
    spent = store.totals(name, "1d").spent_tokens
    assert spent > 10
    await call(two, "team-b")
    await call(two, None)
    assert store.totals(name, "1d").spent_tokens == spent  # neither counted
    with pytest.raises(BudgetExceededError):  # team-a's next calls pass 40 tokens: refused, by either process
        for budget in (two, one, two):
            await call(budget, "team-a")
    for _ in range(3):
        await call(one, "team-b")  # another key is never refused by it
    assert store.totals(name, "1d").spent_tokens <= 40
