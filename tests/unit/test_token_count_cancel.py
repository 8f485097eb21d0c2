"""A call cancelled while its large prompt is counted in the counting pool holds nothing afterwards."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import pytest
from langchain_core.messages import BaseMessage, HumanMessage

from langchain_multigateway.routing import Deployment, RoutingChatModel
from langchain_multigateway.routing import request as request_module
from langchain_multigateway.state import MemoryState
from langchain_multigateway.testing import ScriptedChatModel


def test_cancelled_while_counting_off_the_loop_leaves_no_admission_slot_or_count(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    counting = threading.Event()
    release = threading.Event()
    real = request_module.exact_tokens

    def slow_count(dep: Deployment, messages: Sequence[BaseMessage]) -> int:
        counting.set()
        release.wait(10)
        return real(dep, messages)

    monkeypatch.setattr(request_module, "exact_tokens", slow_count)
    state = MemoryState()
    model = ScriptedChatModel(model="m", exhausted="cycle", steps=["ok"])
    router = RoutingChatModel(
        deployments=[Deployment(model=model, name="a", tpm=1_000_000, rpm=100, max_concurrency=1)], state=state
    )
    prompt = [HumanMessage("word " * 20_000)]  # 100,000 characters: counted in the pool

    async def main() -> None:
        task = asyncio.create_task(router.ainvoke(prompt))
        await asyncio.to_thread(counting.wait, 10)  # the prompt is in the counting pool now
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        release.set()

    asyncio.run(main())
    health = router.health()["a"]
    assert (health.in_flight, health.concurrency_in_use, health.waiting) == (0, 0, 0)
    assert (health.requests_last_minute, health.tokens_last_minute) == (0, 0)
    assert model.calls == []  # never sent
    monkeypatch.setattr(request_module, "exact_tokens", real)
    assert router.invoke(prompt).content == "ok"  # the gate's one slot is free
