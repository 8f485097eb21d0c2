"""Adversarial review of the router (issues 10 and 12): attacks that broke it, each with its fix.

Every test attacks with default settings where it can, then checks that
``health()`` shows nothing held and that the next call is served.
"""

from __future__ import annotations

import signal
import threading
import time
from typing import Any

import pytest

from langchain_multigateway._retry import RetryPolicy
from langchain_multigateway.routing import Deployment, RoutingChatModel
from langchain_multigateway.testing import ScriptedChatModel, Step

ONE_TRY = RetryPolicy(max_attempts=1, initial_delay=0, jitter=0)


def dep(name: str, steps: list[Any] | None = None, **kwargs: Any) -> Deployment:
    model = ScriptedChatModel(model=f"model-{name}", steps=steps or [], default_reply=f"from {name}")
    kwargs.setdefault("retry_policy", ONE_TRY)
    return Deployment(model=model, name=name, **kwargs)


def assert_idle(router: RoutingChatModel) -> None:
    for name, health in router.health().items():
        assert health.in_flight == 0, f"{name}: in_flight={health.in_flight}"
        assert health.concurrency_in_use == 0, f"{name}: a concurrency slot is still taken"
        assert health.waiting == 0, f"{name}: a waiter is still queued"


def _interrupt(*_: Any) -> None:
    raise KeyboardInterrupt


def test_keyboard_interrupt_while_waiting_at_a_gate_leaves_the_line_sync() -> None:
    # A sync call waiting for a busy deployment's slot is interrupted (Ctrl-C): it must leave the
    # line, or the slot freed later is handed to a waiter that is gone and the gate stays full.
    router = RoutingChatModel(
        deployments=[dep("a", [Step(reply="slow", latency=0.6), "after"], max_concurrency=1)], max_wait=5
    )
    holder = threading.Thread(target=router.invoke, args=("hold the slot",))
    holder.start()
    while router.health()["a"].concurrency_in_use == 0:
        time.sleep(0.005)
    previous = signal.signal(signal.SIGALRM, _interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.15)
        with pytest.raises(KeyboardInterrupt):
            router.invoke("wait in line")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    holder.join()
    assert_idle(router)
    assert router.invoke("next").content == "after"
    assert_idle(router)
