"""The harness of the fault scenarios: the fake provider process, the two clients, one bounded call.

``fault_scenarios.py`` holds the scenarios and their checks; this module runs them.

Clients:

* ``router``: ``RoutingChatModel`` over ``OpenAIChatModel`` deployments (real openai SDK,
  real HTTP to the fake), with DEFAULT settings. In the ``fast`` profile the time limits
  are the defaults scaled by ``FAST_SCALE`` (``scaled_defaults`` reads them from the
  classes, so they follow the defaults wherever they move); nothing else is changed.
* ``with_fallbacks``: LangChain's ``ChatOpenAI(...).with_fallbacks([...])`` with its
  defaults, for comparison.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.integration.fault_provider import (
    ANSWER,
    ANSWER_TOKENS,
    CUT_AFTER,
    FAULTS,
    HEALTHY_MARKER,
    PROFILES,
    Waits,
)

__all__ = [
    "DELIVERED_BEFORE_CUT",
    "FAST_SCALE",
    "PROMPT",
    "Case",
    "FakeProvider",
    "Outcome",
    "Run",
    "build_router",
    "build_with_fallbacks",
    "call_bounded",
    "cap_for",
    "fast_limits",
    "judge",
    "run_case",
    "start_fake",
    "warm_up",
]

ROOT = Path(__file__).resolve().parents[2]
FAST_SCALE = 1 / 20
"""The fast profile divides every wait by 20: the fake's (20 s first token -> 1 s, 30 s stall ->
1.5 s, 60 s outage -> 3 s) and the router's default time limits and breaker cooldowns alike."""
API_KEY = "sk-fake-provider-placeholder"
PROMPT = "Count from w01 to w60."
DELIVERED_BEFORE_CUT = "".join(ANSWER_TOKENS[:CUT_AFTER])
MODEL_TIME_LIMITS = ("timeout", "connect_timeout", "first_token_timeout", "stream_idle_timeout")
"""OpenAIChatModel fields the fast profile scales (those that exist and have a default)."""
ROUTER_TIME_LIMITS = ("timeout",)
BREAKER_TIME_LIMITS = ("cooldown", "max_cooldown")
FREE = {name: {"input": 0.0, "output": 0.0} for name in FAULTS}
"""The fake's prices, for the usage tracker (it warns about models it has no price for)."""


# ---------------------------------------------------------------------------- the fake provider process
class FakeProvider:
    """A running ``fault_provider`` process and its control endpoints."""

    def __init__(self, process: subprocess.Popen[str], port: int, profile: str) -> None:
        self.process, self.port, self.profile = process, port, profile
        self.root = f"http://127.0.0.1:{port}"
        self.base_url = f"{self.root}/v1"
        self.waits: Waits = PROFILES[profile]

    def _call(self, method: str, path: str) -> dict[str, Any]:
        request = urllib.request.Request(self.root + path, method=method, data=b"{}" if method == "POST" else None)
        with urllib.request.urlopen(request, timeout=10) as response:
            data: dict[str, Any] = json.loads(response.read())
            return data

    def reset(self) -> None:
        self._call("POST", "/_reset")

    def drop_held(self) -> None:
        self._call("POST", "/_drop")

    def seen(self) -> Seen:
        return Seen(self._call("GET", "/_counts")["requests"])

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - a wedged fake
            self.process.kill()
            self.process.wait(timeout=10)


@contextmanager
def start_fake(profile: str) -> Iterator[FakeProvider]:
    """Start ``python -m tests.integration.fault_provider`` on a free loopback port."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.integration.fault_provider", "--port", "0", "--profile", profile],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.startswith("PORT "):
        process.kill()
        raise RuntimeError(f"fault provider did not start: {line!r}")
    fake = FakeProvider(process, int(line.split()[1]), profile)
    try:
        yield fake
    finally:
        fake.stop()


class Seen:
    """What the fake saw, per model (healthy follow-up calls left out)."""

    def __init__(self, requests: dict[str, list[dict[str, Any]]]) -> None:
        self.requests = {m: [r for r in rs if not r.get("healthy")] for m, rs in requests.items()}

    def of(self, model: str) -> list[dict[str, Any]]:
        return self.requests.get(model, [])

    def count(self, model: str) -> int:
        return len(self.of(model))

    def times(self, model: str) -> list[float]:
        return [r["t"] for r in self.of(model)]

    def summary(self, models: tuple[str, ...]) -> str:
        return " + ".join(f"{self.count(m)}" for m in models)


# ---------------------------------------------------------------------------- clients
def scaled_defaults(fields: dict[str, Any], names: tuple[str, ...], scale: float) -> dict[str, float]:
    """``{name: default * scale}`` for each named field that exists with a positive numeric default."""
    out: dict[str, float] = {}
    for name in names:
        info = fields.get(name)
        default = getattr(info, "default", info)
        if isinstance(default, (int, float)) and not isinstance(default, bool) and default > 0:
            out[name] = default * scale
    return out


def fast_limits() -> dict[str, dict[str, float]]:
    """The router's default time limits scaled for the fast profile, by where they are set."""
    from langchain_multigateway.chat_models.openai import OpenAIChatModel
    from langchain_multigateway.routing import RoutingChatModel
    from langchain_multigateway.state.base import BreakerPolicy

    model_limits = scaled_defaults(OpenAIChatModel.model_fields, MODEL_TIME_LIMITS, FAST_SCALE)
    if "first_token_timeout" in OpenAIChatModel.model_fields and "first_token_timeout" not in model_limits:
        # None picks a limit per call (a stream's first token: 15 s); one number serves both kinds of call
        from langchain_multigateway.chat_models import _base

        model_limits["first_token_timeout"] = getattr(_base, "_FIRST_TOKEN_STREAM", 15.0) * FAST_SCALE
    return {
        "OpenAIChatModel": model_limits,
        "RoutingChatModel": scaled_defaults(RoutingChatModel.model_fields, ROUTER_TIME_LIMITS, FAST_SCALE),
        "MemoryState": scaled_defaults(vars(BreakerPolicy), BREAKER_TIME_LIMITS, FAST_SCALE),
    }


def build_router(
    fake: FakeProvider,
    models: tuple[str, ...],
    *,
    recovery: str | None = None,
    continuable: tuple[str, ...] = (),
    scaled: bool = True,
) -> Any:
    """A default ``RoutingChatModel``: one ``OpenAIChatModel`` deployment per model, in that order
    (in the fast profile with the time limits scaled, unless ``scaled`` is False)."""
    from langchain_multigateway.chat_models.openai import OpenAIChatModel
    from langchain_multigateway.routing import Capabilities, Deployment, RoutingChatModel
    from langchain_multigateway.state import MemoryState

    limits = fast_limits() if fake.profile == "fast" and scaled else {}
    deployments = [
        Deployment(
            model=OpenAIChatModel(
                model=name, base_url=fake.base_url, api_key=API_KEY, **limits.get("OpenAIChatModel", {})
            ),
            name=f"dep-{name}",
            capabilities=Capabilities(continue_prefix=True if name in continuable else None),
        )
        for name in models
    ]
    kwargs: dict[str, Any] = dict(limits.get("RoutingChatModel", {}))
    if limits:
        kwargs["state"] = MemoryState(**limits["MemoryState"])
    if recovery is not None:
        kwargs["stream_recovery"] = recovery
    return RoutingChatModel(deployments=deployments, **kwargs)


def warm_up(fake: FakeProvider) -> None:
    """Import the SDKs and make one call first: a first call pays ~1-3 s of imports inside its
    attempt, which the fast profile's sub-second first-token limit would count as a silent provider."""
    router = build_router(fake, ("ok",), scaled=False)
    assert router.invoke(f"{PROMPT} {HEALTHY_MARKER}").text == ANSWER
    build_with_fallbacks(fake, ("ok",))


def build_with_fallbacks(fake: FakeProvider, models: tuple[str, ...]) -> Any:
    """``ChatOpenAI(primary).with_fallbacks([ChatOpenAI(other), ...])``, all LangChain defaults."""
    from langchain_openai import ChatOpenAI

    llms = [ChatOpenAI(model=name, base_url=fake.base_url, api_key=API_KEY) for name in models]  # type: ignore[call-arg]
    return llms[0].with_fallbacks(llms[1:])


# ---------------------------------------------------------------------------- one call, bounded
@dataclass
class Outcome:
    """What the caller got from one call."""

    text: str = ""
    message: Any = None
    error: BaseException | None = None
    started: float = 0.0
    elapsed: float = 0.0
    hung: bool = False
    usage: Any = None
    """The call's ``track_usage()`` handler."""
    lc_usage: dict[str, Any] = field(default_factory=dict)
    """LangChain's ``get_usage_metadata_callback()`` totals by model."""

    @property
    def served_by(self) -> str | None:
        meta = getattr(self.message, "response_metadata", None) or {}
        return meta.get("model_name")

    def describe_error(self) -> str:
        if self.hung:
            return f"no answer within {self.elapsed:.1f} s"
        if self.error is None:
            return "no error"
        return f"{type(self.error).__name__}: {str(self.error).splitlines()[0][:60]}"


def _call(client: Any, mode: str, prompt: str) -> Outcome:
    from langchain_core.callbacks import get_usage_metadata_callback

    from langchain_multigateway.usage import track_usage

    out = Outcome(started=time.time())
    with track_usage(prices=FREE) as usage, get_usage_metadata_callback() as lc_usage:
        out.usage = usage
        try:
            if mode == "invoke":
                out.message = client.invoke(prompt)
                out.text = out.message.text
            elif mode == "stream":
                for chunk in client.stream(prompt):
                    out.text += chunk.text
                    out.message = chunk if out.message is None else out.message + chunk
            else:  # astream

                async def consume() -> None:
                    async for chunk in client.astream(prompt):
                        out.text += chunk.text
                        out.message = chunk if out.message is None else out.message + chunk

                asyncio.run(consume())
        except Exception as exc:
            out.error = exc
        out.lc_usage = dict(lc_usage.usage_metadata)
    out.elapsed = time.time() - out.started
    return out


def call_bounded(fake: FakeProvider, client: Any, mode: str, prompt: str, cap: float) -> Outcome:
    """``_call`` in a worker thread; past ``cap`` seconds the caller is reported hung and freed."""
    box: list[Outcome] = []
    worker = threading.Thread(target=lambda: box.append(_call(client, mode, prompt)), daemon=True)
    started = time.time()
    worker.start()
    worker.join(cap)
    if box:
        return box[0]
    for _ in range(60):  # reset what the abandoned client waits on (again, if it retries) until it ends
        fake.drop_held()
        worker.join(0.5)
        if not worker.is_alive():
            break
    return Outcome(hung=True, started=started, elapsed=time.time() - started)


# ---------------------------------------------------------------------------- scenarios
@dataclass
class Run:
    """One scenario run: the case, the client, what the caller got and what the fake saw."""

    case: Case
    client_kind: str
    client: Any
    fake: FakeProvider
    out: Outcome
    seen: Seen
    outs: list[Outcome] = field(default_factory=list)
    """Every call, for scenarios made of several (the flapping primary)."""

    @property
    def waits(self) -> Waits:
        return self.fake.waits

    @property
    def primary(self) -> str:
        return self.case.models[0]

    @property
    def is_router(self) -> bool:
        return self.client_kind == "router"


@dataclass(frozen=True)
class Case:
    id: str
    fault: str
    """The row label in the README table."""
    models: tuple[str, ...]
    check: Callable[[Run], str]
    mode: str = "stream"
    recovery: str | None = None
    """The router's ``stream_recovery`` (None: its default)."""
    continuable: tuple[str, ...] = ()
    """Models declared able to continue an assistant prefix."""
    runner: Callable[[Case, str, Any, FakeProvider], Run] | None = None


def cap_for(fake: FakeProvider) -> float:
    """Longest a single call may take before it is reported hung (150 s realistic, 7.5 s fast)."""
    return 150.0 * (FAST_SCALE if fake.profile == "fast" else 1.0)


def make_client(case: Case, client_kind: str, fake: FakeProvider) -> Any:
    if client_kind == "router":
        return build_router(fake, case.models, recovery=case.recovery, continuable=case.continuable)
    return build_with_fallbacks(fake, case.models)


def run_case(case: Case, client_kind: str, fake: FakeProvider) -> Run:
    """Reset the fake, build a fresh client, run the scenario."""
    fake.reset()
    client = make_client(case, client_kind, fake)
    if case.runner is not None:
        return case.runner(case, client_kind, client, fake)
    out = call_bounded(fake, client, case.mode, PROMPT, cap_for(fake))
    return Run(case, client_kind, client, fake, out, fake.seen())


def judge(run: Run) -> str:
    """The scenario's check, then the healthy call afterwards; a note, or AssertionError saying what was wrong."""
    note = run.case.check(run)
    after = call_bounded(run.fake, run.client, "stream", f"{PROMPT} {HEALTHY_MARKER}", cap_for(run.fake))
    assert after.error is None, f"healthy call afterwards failed: {after.describe_error()}"
    assert not after.hung, f"healthy call afterwards: {after.describe_error()}"
    assert after.text == ANSWER, "healthy call afterwards: answer incomplete"
    if run.is_router:
        busy = {n: (h.in_flight, h.waiting) for n, h in run.client.health().items() if h.in_flight or h.waiting}
        assert not busy, f"router health() not idle afterwards (in flight, waiting): {busy}"
    return note
