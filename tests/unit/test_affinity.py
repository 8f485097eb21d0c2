"""Prompt-cache affinity: one conversation stays on one deployment (rendezvous hashing), by default
for the spreading strategies only; a deployment leaving moves only its own conversations."""

from __future__ import annotations

import asyncio
from collections import Counter

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage

from langchain_multigateway.routing import Deployment, RoutingChatModel
from langchain_multigateway.routing.affinity import affinity_key, rendezvous
from langchain_multigateway.state import MemoryState
from langchain_multigateway.testing import ScriptedChatModel

SYSTEM = SystemMessage("You are a careful assistant. " * 20)


def deps(*names: str, **weights: float) -> list[Deployment]:
    return [
        Deployment(model=ScriptedChatModel(model=n, exhausted="cycle", steps=["ok"]), name=n, weight=weights.get(n, 1))
        for n in names
    ]


def conversation(opener: str, turns: int) -> list[list[BaseMessage]]:
    """The prompts of a conversation's turns: each repeats the system prompt and everything before."""
    prompts: list[list[BaseMessage]] = []
    history: list[BaseMessage] = [SYSTEM, HumanMessage(opener)]
    for turn in range(turns):
        prompts.append(list(history))
        history += [AIMessage(f"answer {turn}"), HumanMessage(f"and then {turn}?")]
    return prompts


def served(router: RoutingChatModel, messages: list[BaseMessage], **kwargs: object) -> str:
    return str(router.invoke(messages, **kwargs).response_metadata["deployment"])


def test_each_conversation_stays_on_one_deployment_and_conversations_spread() -> None:
    router = RoutingChatModel(deployments=deps("a", "b", "c"), strategy="round_robin")
    homes = Counter()
    for n in range(30):
        where = {served(router, prompt) for prompt in conversation(f"topic {n}", 6)}
        assert len(where) == 1, f"conversation {n} was scattered over {where}"
        homes[where.pop()] += 1
    assert set(homes) == {"a", "b", "c"}, homes
    assert min(homes.values()) >= 4, homes


def test_without_affinity_round_robin_scatters_a_conversation() -> None:
    router = RoutingChatModel(deployments=deps("a", "b", "c"), strategy="round_robin", affinity=False)
    assert {served(router, prompt) for prompt in conversation("topic", 6)} == {"a", "b", "c"}


def test_a_lone_message_is_placed_by_the_strategy() -> None:
    router = RoutingChatModel(deployments=deps("a", "b", "c"), strategy="round_robin")
    assert [served(router, [HumanMessage("x")]) for _ in range(3)] == ["a", "b", "c"]


def test_default_is_off_for_strategies_that_already_pick_one_first_choice() -> None:
    for strategy in ("ordered", "cheapest", "quality"):
        router = RoutingChatModel(deployments=deps("a", "b", "c"), strategy=strategy)
        firsts = {served(router, conversation(f"t{n}", 1)[0]) for n in range(20)}
        assert firsts == {"a"}, (strategy, firsts)
    forced = RoutingChatModel(deployments=deps("a", "b", "c"), strategy="ordered", affinity=True)
    assert len({served(forced, conversation(f"t{n}", 1)[0]) for n in range(30)}) > 1


def test_session_id_names_the_conversation_and_is_not_sent_to_the_provider() -> None:
    models = deps("a", "b", "c")
    router = RoutingChatModel(deployments=models, strategy="least_busy")
    # Different prefixes, one session: one deployment.
    by_kwarg = {served(router, conversation(f"topic {n}", 1)[0], session_id="user-7") for n in range(12)}
    assert len(by_kwarg) == 1
    by_meta = {
        served(router, conversation(f"other {n}", 1)[0], config={"metadata": {"session_id": "user-7"}})
        for n in range(12)
    }
    assert by_meta == by_kwarg
    by_thread = {
        str(
            router.invoke(
                conversation(f"x {n}", 1)[0], config={"configurable": {"thread_id": "user-7"}}
            ).response_metadata["deployment"]
        )
        for n in range(12)
    }
    assert len(by_thread) == 1
    for dep in models:
        for call in dep.model.calls:  # type: ignore[attr-defined]
            assert "session_id" not in call.kwargs


def test_a_refused_home_sends_the_conversation_to_one_stable_second_choice_and_back() -> None:
    state = MemoryState()
    router = RoutingChatModel(deployments=deps("a", "b", "c"), strategy="round_robin", state=state, max_wait=0)
    prompts = conversation("topic", 6)
    home = served(router, prompts[0])
    state.cooldown(home, 60)  # the provider asked to wait: not admitted
    fallbacks = {served(router, p) for p in prompts[1:4]}
    assert len(fallbacks) == 1
    assert home not in fallbacks
    state._records[home].cooldown_until = 0.0
    assert served(router, prompts[4]) == home


def test_a_deployment_leaving_moves_only_its_own_conversations() -> None:
    three, two = deps("a", "b", "c"), deps("a", "b")
    keys = [affinity_key(p) for p in (conversation(f"topic {n}", 2)[1] for n in range(600))]
    before = [rendezvous(three, k)[0].name for k in keys if k is not None]
    after = [rendezvous(two, k)[0].name for k in keys if k is not None]
    moved = [(b, a) for b, a in zip(before, after, strict=True) if b != a]
    assert moved
    assert all(b == "c" for b, _ in moved)
    assert len(moved) == before.count("c")
    # A deployment joining takes only the keys it now wins.
    four = deps("a", "b", "c", "d")
    joined = [rendezvous(four, k)[0].name for k in keys if k is not None]
    assert all(j in (b, "d") for b, j in zip(before, joined, strict=True))


def test_conversations_split_by_weight() -> None:
    weighted = deps("heavy", "light", heavy=3, light=1)
    keys = [affinity_key([SYSTEM, HumanMessage(f"q{n}")]) for n in range(4000)]
    homes = Counter(rendezvous(weighted, k)[0].name for k in keys if k is not None)
    assert 2.5 < homes["heavy"] / homes["light"] < 3.5


def test_key_is_the_prefix_and_ignores_later_turns() -> None:
    turns = conversation("topic", 4)
    assert len({affinity_key(p) for p in turns}) == 1
    assert affinity_key(conversation("another topic", 1)[0]) != affinity_key(turns[0])
    assert affinity_key([HumanMessage("alone")]) is None
    assert affinity_key([HumanMessage("alone")], "s1") == affinity_key(turns[0], "s1")


def test_async_calls_keep_the_same_home() -> None:
    router = RoutingChatModel(deployments=deps("a", "b", "c"), strategy="balanced")

    async def main() -> set[str]:
        answers = await asyncio.gather(*(router.ainvoke(p) for p in conversation("async topic", 6)))
        return {str(a.response_metadata["deployment"]) for a in answers}

    assert len(asyncio.run(main())) == 1
