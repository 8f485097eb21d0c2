"""Issue 12's sixteen fault scenarios and what a correct gateway does in each.

Shared by ``test_failover_scenarios.py`` (which asserts) and
``benchmarks/failover_scenarios.py`` (which prints the comparison table); run by
``fault_harness.py``. A scenario names the fake's models (primary first), how the caller
calls (stream, invoke or async stream), and a check that says what a correct gateway
does: what the caller got, how many requests the fake saw and when. After every scenario
a healthy call through the same client must succeed and (for the router) ``health()``
must show nothing in flight (``judge``).
"""

from __future__ import annotations

import itertools
import time
from typing import Any

from tests.integration.fault_harness import (
    DELIVERED_BEFORE_CUT,
    FAST_SCALE,
    PROMPT,
    Case,
    FakeProvider,
    Outcome,
    Run,
    call_bounded,
    cap_for,
)
from tests.integration.fault_provider import ANSWER

__all__ = ["CALL_PATH_CASES", "CASES", "ERROR_MODE_CASES"]

MIN_RETRY_GAP = 0.025
"""Two tries of one deployment closer than this are a tight loop (the default backoff starts at 50 ms +-25 %)."""


# ---------------------------------------------------------------------------- checks
def _complete(run: Run, out: Outcome | None = None) -> str:
    """The whole answer, as a success; the model that served it."""
    out = out or run.out
    assert not out.hung, f"caller got {out.describe_error()}"
    assert out.error is None, f"caller got {out.describe_error()}"
    assert out.text == ANSWER, f"answer is not the whole text ({len(out.text)} of {len(ANSWER)} chars)"
    served = out.served_by
    assert served, "response names no model"
    return served


def _tries(run: Run, model: str, low: int, high: int) -> int:
    n = run.seen.count(model)
    assert low <= n <= high, f"{model} saw {n} requests (expected {low}..{high})"
    return n


def _gaps(run: Run, model: str) -> list[float]:
    times = run.seen.times(model)
    return [b - a for a, b in itertools.pairwise(times)]


def _no_tight_loop(run: Run, model: str) -> None:
    gaps = _gaps(run, model)
    if gaps:
        assert min(gaps) >= MIN_RETRY_GAP, f"{model} retried after {min(gaps) * 1000:.0f} ms (a tight loop)"


def _typed(run: Run, name: str) -> BaseException:
    """The caller's error is the gateway class ``name`` (by class name along its MRO)."""
    error = run.out.error
    assert error is not None, f"expected {name}, caller got {run.out.describe_error()}"
    names = [k.__name__ for k in type(error).__mro__]
    assert name in names, f"expected {name}, caller got {run.out.describe_error()}"
    return error


def check_retry_after_once(run: Run) -> str:
    """Issue 12: wait Retry-After, then retry the same deployment (the wait fits: the call has no deadline)."""
    served = _complete(run)
    tries = _tries(run, run.primary, 2, 2)
    gap = _gaps(run, run.primary)[0]
    assert gap >= run.waits.retry_after - 0.1, f"retried after {gap:.2f} s, before Retry-After"
    assert served == run.primary, f"{served} answered, not the primary retried after Retry-After"
    _tries(run, "ok", 0, 0)
    return f"waited Retry-After ({gap:.1f} s), primary answered on try {tries}"


def check_persistent_retryable(run: Run) -> str:
    served = _complete(run)
    assert served == "ok", f"{served} answered, not the fallback"
    tries = _tries(run, run.primary, 1, 3)
    _no_tight_loop(run, run.primary)
    _tries(run, "ok", 1, 1)
    return f"fallback answered after {tries} tr{'y' if tries == 1 else 'ies'} on the primary"


def check_once_retryable(run: Run) -> str:
    served = _complete(run)
    tries = _tries(run, run.primary, 1, 2)
    _no_tight_loop(run, run.primary)
    if tries == 2:
        assert served == run.primary, f"retried the primary, yet {served} answered"
        _tries(run, "ok", 0, 0)
        return "retried the primary once, it answered"
    assert served == "ok", f"{served} answered"
    return "failed over at once"


def check_silent(run: Run) -> str:
    served = _complete(run)
    _tries(run, run.primary, 1, 1)  # a silent route stays silent: never retried
    assert served == "ok", f"{served} answered, not the fallback"
    _tries(run, "ok", 1, 1)
    return f"timed out once, fallback answered ({run.out.elapsed:.1f} s)"


def check_slow_first_token(run: Run) -> str:
    served = _complete(run)
    _tries(run, run.primary, 1, 1)
    if served == "ok":
        _tries(run, "ok", 1, 1)
        return f"first-token limit, fallback answered ({run.out.elapsed:.1f} s)"
    _tries(run, "ok", 0, 0)
    return f"waited for the primary ({run.out.elapsed:.1f} s)"


def _continued(run: Run, primary: str, continuer: str) -> str:
    served = _complete(run)
    _tries(run, primary, 1, 1)
    _tries(run, continuer, 1, 1)
    prefix = run.seen.of(continuer)[0]["prefix"]
    assert prefix == DELIVERED_BEFORE_CUT, "the fallback was not sent exactly the delivered text as prefix"
    assert served == continuer, f"final chunk names {served}, not the continuing model"
    usage = getattr(run.out.message, "usage_metadata", None) or {}
    fallback_usage = run.seen.of(continuer)[0].get("usage") or {}
    assert usage.get("output_tokens", 0) >= fallback_usage.get("completion_tokens", 1), "usage misses the continuation"
    return "continued on the fallback from the delivered text"


def _interrupted(run: Run, cause: str) -> str:
    error = _typed(run, "StreamInterruptedError")
    assert run.out.text == DELIVERED_BEFORE_CUT, f"caller saw {len(run.out.text)} chars, not the 40 delivered tokens"
    assert getattr(error, "delivered", None) == DELIVERED_BEFORE_CUT, "error does not carry the delivered text"
    assert getattr(error, "deployment", None) in (f"dep-{run.primary}", run.primary), "error names no deployment"
    for model in run.case.models[1:]:  # nothing re-sent: the caller already has part of the answer
        assert not [r for r in run.seen.of(model) if r["prefix"] is not None], f"{model} was sent a prefix"
    _tries(run, run.primary, 1, 1)
    return f"StreamInterruptedError after 40 tokens ({cause}), text kept"


def check_cut_continue(run: Run) -> str:
    return _continued(run, run.primary, "continuable")


def check_cut_error(run: Run) -> str:
    return _interrupted(run, "cut")


def check_stall_continue(run: Run) -> str:
    return _continued(run, run.primary, "continuable")


def check_stall_error(run: Run) -> str:
    note = _interrupted(run, "idle limit")
    cause = getattr(run.out.error, "cause", None)
    assert "Timeout" in type(cause).__name__, f"cause is {type(cause).__name__}, not the idle time limit"
    return note


def check_not_partial(run: Run) -> str:
    served = _complete(run)
    _tries(run, run.primary, 1, 2)
    return f"whole answer from {served} (never a partial one)"


def check_malformed(run: Run) -> str:
    served = _complete(run)
    assert served == run.primary, f"{served} answered: the primary's good answer was dropped"
    _tries(run, run.primary, 1, 1)
    _tries(run, "ok", 0, 0)
    return "malformed event skipped, primary's answer complete"


def check_no_done(run: Run) -> str:
    served = _complete(run)
    assert served == run.primary, f"{served} answered"
    _tries(run, run.primary, 1, 1)
    record = run.seen.of(run.primary)[0]
    if record["include_usage"]:
        usage = getattr(run.out.message, "usage_metadata", None) or {}
        expected = record["usage"]
        got = (usage.get("input_tokens"), usage.get("output_tokens"))
        assert got == (expected["prompt_tokens"], expected["completion_tokens"]), f"usage {got} != the server's"
        return "complete, with the server's usage"
    return "complete (client asked for no usage)"


def check_context_length(run: Run) -> str:
    served = _complete(run)
    _tries(run, run.primary, 1, 1)  # the same request fails the same way: never retried
    assert served == "ok", f"{served} answered"
    _tries(run, "ok", 1, 1)
    return "not retried; fallback answered"


def check_content_policy(run: Run) -> str:
    error = _typed(run, "ContentPolicyError") if run.is_router else run.out.error
    assert error is not None, f"the refusal was routed around: {run.out.served_by} answered"
    assert "content management policy" in str(error), "the provider's reason is not in the error"
    _tries(run, run.primary, 1, 1)
    _tries(run, "ok", 0, 0)
    return "ContentPolicyError with the provider's reason; no retry, no failover"


def check_prefill_skipped(run: Run) -> str:
    served = _complete(run)
    assert not run.seen.of("reject-prefill"), "a deployment that cannot continue was sent the request"
    assert served == "continuable", f"{served} answered"
    return _continued(run, run.primary, "continuable") + ", skipping the one that rejects prefill"


def check_prefill_no_capable(run: Run) -> str:
    note = _interrupted(run, "cut; no fallback can continue")
    cause = getattr(run.out.error, "cause", None)
    assert "prefill" not in str(cause).lower(), "the prefill rejection masks the cut"
    assert not run.seen.of("reject-prefill"), "the prefill-rejecting deployment was sent a prefix"
    return note


def check_accounting(run: Run) -> str:
    served = _complete(run)
    assert served == "ok", f"{served} answered"
    primary_tries = run.seen.count(run.primary)
    answered = run.seen.of("ok")[0]
    message = run.out.message
    usage = message.usage_metadata or {}
    if answered["include_usage"] or not answered["stream"]:
        expected = answered["usage"]
        got = (usage.get("input_tokens"), usage.get("output_tokens"))
        assert got == (expected["prompt_tokens"], expected["completion_tokens"]), f"usage {got} is not the fallback's"
        assert run.out.lc_usage.get("ok", {}).get("total_tokens") == expected["total_tokens"], "LangChain's usage"
    else:
        raise AssertionError("no usage reported for the answer (the client did not ask for it)")
    billed = {k: v for k, v in run.out.lc_usage.items() if v.get("total_tokens")}
    assert set(billed) == {"ok"}, f"billed models: {sorted(billed)}"
    totals = run.out.usage.by_model()
    failed = totals.get(run.primary)
    assert failed is not None, "the failed attempts were not recorded"
    assert (failed.requests, failed.errors, failed.total_tokens) == (primary_tries, primary_tries, 0), (
        f"failed attempts recorded as {failed.requests} requests, {failed.errors} errors, {failed.total_tokens} tokens"
    )
    if run.is_router:
        meta = message.response_metadata
        assert meta.get("deployment") == "dep-ok", f"response names deployment {meta.get('deployment')}"
        failed_meta = meta.get("failed_attempts") or []
        assert [a.get("deployment") for a in failed_meta] == [f"dep-{run.primary}"] * primary_tries, failed_meta
        assert run.out.usage.calls == 1, f"{run.out.usage.calls} calls counted for one routed call"
    return f"names dep + model, fallback's usage; {primary_tries} failed attempt(s) recorded, not billed"


# ---------------------------------------------------------------------------- the flapping primary
def _flap_interval(fake: FakeProvider) -> float:
    return 0.2 if fake.profile == "fast" else 1.0


def _breaker_bounds(fake: FakeProvider) -> tuple[int, float, float]:
    """(most primary requests an outage may see, first cooldown, longest cooldown) under the defaults."""
    from langchain_multigateway.state.base import BreakerPolicy

    scale = FAST_SCALE if fake.profile == "fast" else 1.0
    policy = BreakerPolicy()
    first, cap = policy.cooldown * scale, policy.cap * scale
    probes, spent, period = 0, 0.0, first
    while spent < fake.waits.outage:
        spent += period
        probes += 1
        period = min(cap, period * policy.cooldown_growth)
    # the calls that open the breaker (one may retry), then one probe per open period
    return policy.failure_threshold + 1 + probes, first, cap


def run_flapping(case: Case, client_kind: str, client: Any, fake: FakeProvider) -> Run:
    """Requests every ``interval`` through an outage and until the primary is back (or a bound passes)."""
    interval = _flap_interval(fake)
    _, _, cap = _breaker_bounds(fake)
    outs: list[Outcome] = []
    start = time.time()
    end = start + fake.waits.outage + 2 * (cap + interval) + 1.0
    # Past ``end``, until a call is served by the primary again (a loaded machine makes each call
    # slower); the hard stop is only for a router that never goes back (check_flapping fails it).
    hard_stop = end + 60.0
    while time.time() < end or (outs[-1].served_by != case.models[0] and time.time() < hard_stop):
        tick = time.time()
        outs.append(call_bounded(fake, client, "stream", PROMPT, cap_for(fake)))
        time.sleep(max(0.0, tick + interval - time.time()))
    seen = fake.seen()
    return Run(case, client_kind, client, fake, outs[-1], seen, outs)


def check_flapping(run: Run) -> str:
    for out in run.outs:
        _complete(run, out)
    times = run.seen.times(run.primary)
    recovered = times[0] + run.waits.outage
    limit, _, cap = _breaker_bounds(run.fake)
    during = [t for t in times if t < recovered]
    assert len(during) <= limit, f"primary sent {len(during)} requests during the outage (at most {limit})"
    back = [o for o in run.outs if o.started >= recovered and o.served_by == run.primary]
    assert back, "never went back to the primary after it recovered"
    delay = back[0].started - recovered
    # Counted in calls, not seconds (calls are sequential and at least one interval apart): once the
    # last failed probe is recorded, the breaker lets the next call through within ``cap``, so at most
    # cap / interval + 1 calls started after the recovery are still served by the fallback.
    interval = _flap_interval(run.fake)
    stayed_away = [o for o in run.outs if recovered <= o.started < back[0].started]
    most = int(cap / interval + 1e-9) + 1
    assert len(stayed_away) <= most, (
        f"{len(stayed_away)} calls after the recovery went to the fallback (at most {most});"
        f" back on the primary {delay:.1f} s after recovery"
    )
    assert run.outs[-1].served_by == run.primary, "the last call was not served by the recovered primary"
    in_outage = sorted(o.elapsed for o in run.outs if o.started < recovered)
    median = in_outage[len(in_outage) // 2]
    return (
        f"{len(run.outs)} calls all served ({len(in_outage)} in the outage, median {median:.2f} s);"
        f" primary saw {len(during)} requests in the outage; back on it {delay:.1f} s after recovery"
    )


# ---------------------------------------------------------------------------- the table
CASES: tuple[Case, ...] = (
    Case(
        "429-retry-after", "429 with Retry-After, once", ("rate-limit-retry-after-once", "ok"), check_retry_after_once
    ),
    Case(
        "429-no-retry-after", "429 without Retry-After", ("rate-limit-no-retry-after", "ok"), check_persistent_retryable
    ),
    Case("500-once", "500 once", ("error-500-once", "ok"), check_once_retryable),
    Case("503-persistent", "503 persistent", ("error-503-persistent", "ok"), check_persistent_retryable),
    Case("reset", "connection reset before headers", ("reset-before-headers", "ok"), check_persistent_retryable),
    Case("no-response", "accepts, never answers", ("no-response", "ok"), check_silent),
    # async: a sync stream's per-read limit is the larger of the first-token and idle limits (httpx fixes it
    # when the body starts), and the fake's 20 s first token then races the 20 s idle default
    Case("slow-first-token", "slow first token", ("slow-first-token", "ok"), check_slow_first_token, mode="astream"),
    Case(
        "stream-cut",
        "stream cut after 40 of 60 tokens",
        ("stream-cut", "continuable"),
        check_cut_continue,
        recovery="continue",
        continuable=("continuable",),
    ),
    Case(
        "stream-stall",
        "stream stalls, connection open",
        ("stream-stall", "continuable"),
        check_stall_continue,
        recovery="continue",
        continuable=("continuable",),
    ),
    Case("malformed-chunk", "malformed chunk mid-stream", ("malformed-chunk", "ok"), check_malformed),
    Case("no-done", "stream ends without [DONE]", ("no-done", "ok"), check_no_done),
    Case("context-length", "context length exceeded (400)", ("context-length-exceeded", "ok"), check_context_length),
    Case("content-policy", "content-policy rejection (400)", ("content-policy", "ok"), check_content_policy),
    Case(
        "cut-prefill-rejected",
        "cut stream, fallback rejects prefill",
        ("stream-cut", "reject-prefill", "continuable"),
        check_prefill_skipped,
        recovery="continue",
        continuable=("continuable",),
    ),
    Case("flapping", "flapping primary (503, then back)", ("flapping", "ok"), check_flapping, runner=run_flapping),
    Case("accounting", "failover accounting", ("error-500-persistent", "ok"), check_accounting),
)
"""The sixteen scenarios, as the README table lists them (stream faults with ``stream_recovery="continue"``)."""

ERROR_MODE_CASES: tuple[Case, ...] = (
    Case("stream-cut/error", 'stream cut, `stream_recovery="error"`', ("stream-cut", "ok"), check_cut_error),
    Case("stream-stall/error", 'stream stall, `stream_recovery="error"`', ("stream-stall", "ok"), check_stall_error),
    Case(
        "cut-prefill-rejected/no-capable",
        "cut stream, only a prefill-rejecting fallback",
        ("stream-cut", "reject-prefill"),
        check_prefill_no_capable,
        recovery="continue",
    ),
)
"""The stream faults with the default ``stream_recovery="error"`` (or nothing able to continue)."""

CALL_PATH_CASES: tuple[Case, ...] = (
    Case("stream-cut/invoke", "body cut, caller not streaming", ("stream-cut", "ok"), check_not_partial, mode="invoke"),
    Case(
        "stream-stall/invoke",
        "body stalls, caller not streaming",
        ("stream-stall", "ok"),
        check_not_partial,
        mode="invoke",
    ),
    Case("stream-cut/astream", "stream cut, async caller", ("stream-cut", "ok"), check_cut_error, mode="astream"),
    Case(
        "stream-cut/astream-continue",
        "stream cut, async caller, continued",
        ("stream-cut", "continuable"),
        check_cut_continue,
        mode="astream",
        recovery="continue",
        continuable=("continuable",),
    ),
    # a sync stream may wait out the first token (its per-read limit is the idle one): either outcome, one try
    Case(
        "slow-first-token/stream", "slow first token, sync stream", ("slow-first-token", "ok"), check_slow_first_token
    ),
    Case(
        "slow-first-token/invoke",
        "slow first byte, caller not streaming",
        ("slow-first-token", "ok"),
        check_slow_first_token,
        mode="invoke",
    ),
)
"""Other call paths: a caller who is not streaming never sees a partial answer; async streams end the same way."""
