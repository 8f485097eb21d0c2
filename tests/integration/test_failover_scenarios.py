"""Issue 12's fault scenarios: the router, with default settings, against a misbehaving provider.

The provider is ``fault_provider.py`` in its own process on a loopback port (real HTTP,
real openai SDK underneath ``OpenAIChatModel``); its model name selects the fault. The
router runs with DEFAULT settings except that, in this ``fast`` profile, every time
limit and breaker cooldown is its default divided by 20 (the fake's waits are divided
by 20 too), so the suite runs in well under a minute. Each scenario (see
``fault_scenarios.py``) asserts what the caller got, how many requests the fake saw and
when, that a healthy call succeeds afterwards and that ``health()`` is idle.

``benchmarks/failover_scenarios.py`` runs the same scenarios through
``ChatOpenAI.with_fallbacks`` for the README's comparison; the last tests here check that
the checks do fail on that client's known conduct, so a check that cannot fail is caught.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.fault_scenarios import (
    CALL_PATH_CASES,
    CASES,
    ERROR_MODE_CASES,
    Case,
    FakeProvider,
    judge,
    run_case,
    start_fake,
)


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeProvider]:
    with start_fake("fast") as provider:
        yield provider


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in (*CASES, *ERROR_MODE_CASES, *CALL_PATH_CASES)])
def test_router_defaults_handle_fault(case: Case, fake: FakeProvider) -> None:
    judge(run_case(case, "router", fake))


def _case(case_id: str) -> Case:
    return next(c for c in (*CASES, *ERROR_MODE_CASES) if c.id == case_id)


@pytest.mark.parametrize(
    ("case_id", "failure"),
    [
        ("content-policy", "routed around"),
        ("stream-cut/error", "expected StreamInterruptedError"),
        ("malformed-chunk", "caller got"),
    ],
)
def test_checks_fail_on_with_fallbacks_conduct(case_id: str, failure: str, fake: FakeProvider) -> None:
    """The same checks, on ``ChatOpenAI.with_fallbacks``: its known conduct must fail them."""
    run = run_case(_case(case_id), "with_fallbacks", fake)
    with pytest.raises(AssertionError, match=failure):
        judge(run)
