"""Attacks on prompt-cache affinity: hostile session ids, weights of 0, a home whose breaker opens,
threads sharing conversations."""

from __future__ import annotations

import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage

from langchain_multigateway.errors import ProviderError
from langchain_multigateway.routing import Deployment, RoutingChatModel
from langchain_multigateway.routing.affinity import affinity_key, rendezvous
from langchain_multigateway.state import MemoryState
from langchain_multigateway.testing import ScriptedChatModel

SYSTEM = SystemMessage("You answer questions about the weather.")


def deps(*names: str, **weights: float) -> list[Deployment]:
    return [
        Deployment(model=ScriptedChatModel(model=n, exhausted="cycle", steps=["ok"]), name=n, weight=weights.get(n, 1))
        for n in names
    ]


def served(router: RoutingChatModel, messages: Any, **kwargs: Any) -> str:
    return str(router.invoke(messages, **kwargs).response_metadata["deployment"])


@pytest.mark.parametrize(
    "session",
    [12345, uuid.UUID(int=7), b"bytes", "x" * 5_000_000, "\ud800", float("nan"), np.array([1, 2]), ("t", 1)],
    ids=["int", "uuid", "bytes", "5M-chars", "lone-surrogate", "nan", "ndarray", "tuple"],
)
def test_any_session_id_keeps_its_calls_together_by_kwarg_and_by_metadata(session: Any) -> None:
    router = RoutingChatModel(deployments=deps("a", "b", "c"), strategy="round_robin")
    by_kwarg = {served(router, f"question {n}", session_id=session) for n in range(4)}
    by_meta = {served(router, f"question {n}", config={"metadata": {"session_id": session}}) for n in range(4)}
    assert len(by_kwarg) == 1
    assert by_meta == by_kwarg


def test_empty_session_ids_name_nothing() -> None:
    router = RoutingChatModel(deployments=deps("a", "b", "c"), strategy="round_robin")
    assert [served(router, "hi", session_id="") for _ in range(3)] == ["a", "b", "c"]
    assert [served(router, "hi", config={"metadata": {"session_id": b""}}) for _ in range(3)] == ["a", "b", "c"]


def test_lone_surrogates_are_distinct_session_ids() -> None:
    assert affinity_key([], "\ud800") != affinity_key([], "\udfff")


def test_weights_of_zero_rank_last_in_listed_order_as_the_weighted_strategy_does() -> None:
    zero = deps("a", "b", "c", a=0, b=0, c=0)
    keys = [affinity_key([SYSTEM, HumanMessage(f"q{n}")]) for n in range(50)]
    assert {tuple(d.name for d in rendezvous(zero, k)) for k in keys if k is not None} == {("a", "b", "c")}
    some = deps("a", "b", "c", a=0, c=0)
    assert {tuple(d.name for d in rendezvous(some, k)) for k in keys if k is not None} == {("b", "a", "c")}
    router = RoutingChatModel(deployments=deps("a", "b", "c", a=0, b=0, c=0), strategy="weighted")
    assert {served(router, [SYSTEM, HumanMessage(f"q{n}")]) for n in range(20)} == {"a"}


def test_a_home_whose_breaker_opens_moves_only_its_conversations_and_gets_them_back() -> None:
    clock_now = [1000.0]
    state = MemoryState(clock=lambda: clock_now[0])
    names = ("a", "b", "c")
    broken = ScriptedChatModel(model="a", exhausted="cycle", steps=[ProviderError("down", status_code=503)])
    models = {n: ScriptedChatModel(model=n, exhausted="cycle", steps=["ok"]) for n in names}
    conversations: list[list[BaseMessage]] = [[SYSTEM, HumanMessage(f"topic {n}")] for n in range(60)]
    router = RoutingChatModel(
        deployments=[Deployment(model=models[n], name=n) for n in names], state=state, strategy="round_robin"
    )
    homes = [served(router, c) for c in conversations]
    assert set(homes) == set(names)
    failing = RoutingChatModel(
        deployments=[Deployment(model=broken if n == "a" else models[n], name=n) for n in names],
        state=state,
        strategy="round_robin",
    )
    while state.stats("a").breaker.value != "open":
        served(failing, conversations[homes.index("a")])
    during = [served(router, c) for c in conversations]
    for home, now in zip(homes, during, strict=True):
        if home == "a":
            assert now != "a"
        else:
            assert now == home  # the others' prompt caches are untouched
    again = [served(router, c) for c in conversations]
    assert again == during  # one stable second choice per conversation
    clock_now[0] += 3600.0  # the breaker's cooldown passes; the half-open probe succeeds
    served(router, conversations[homes.index("a")])
    assert [served(router, c) for c in conversations] == homes


def test_threads_sharing_conversations_each_see_one_home() -> None:
    router = RoutingChatModel(deployments=deps("a", "b", "c", "d"), strategy="least_busy")
    conversations = [[SYSTEM, HumanMessage(f"topic {n}")] for n in range(16)]

    def one(n: int) -> tuple[int, str]:
        return n % 16, served(router, conversations[n % 16])

    with ThreadPoolExecutor(8) as pool:
        seen = list(pool.map(one, range(160)))
    homes: dict[int, set[str]] = {}
    for n, where in seen:
        homes.setdefault(n, set()).add(where)
    assert all(len(v) == 1 for v in homes.values()), homes
    assert len(Counter(next(iter(v)) for v in homes.values())) > 1
    assert all(h.in_flight == 0 and h.concurrency_in_use == 0 for h in router.health().values())
