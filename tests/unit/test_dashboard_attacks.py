"""Attacks on the dashboard (adversarial review of issue 17), each kept as the test that found it.

In-process over the real Starlette app and real SQLite ledgers: forged session cookies,
cross-site form posts, spreadsheet formulas smuggled through CSV delimiters, ledgers with
very many distinct names; and the provider-announced (learned) limits in the Deployments
panel, read without changing how calls are routed.
"""

from __future__ import annotations

import re

import pytest

pytest.importorskip("jinja2")
pytest.importorskip("starlette")

from starlette.testclient import TestClient

from langchain_multigateway.cli.dashboard import build_dashboard_app
from langchain_multigateway.dashboard import DashboardSource, Gatekeeper
from langchain_multigateway.routing import Deployment, RoutingChatModel
from langchain_multigateway.state import MemoryState
from langchain_multigateway.testing import ScriptedChatModel

MASTER = "mg-master-attack-" + "k3y" * 8
BEARER = {"authorization": f"Bearer {MASTER}"}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _client(source: DashboardSource) -> TestClient:
    return TestClient(build_dashboard_app(source, MASTER), raise_server_exceptions=False)


# ---------------------------------------------------------------- sessions


@pytest.mark.parametrize("expires", ["9" * 5000, "1" * 13])
def test_a_forged_cookie_with_odd_digits_is_refused_not_a_server_error(expires: str) -> None:
    # Found: 5,000 digits made int() raise (Python's 4,300-digit limit) and answered 500.
    client = _client(DashboardSource())
    client.cookies.set("multigateway_dashboard", f"{expires}.00", path="/ui")
    for path in ("/ui/api/deployments", "/ui/api/summary", "/ui/usage.csv"):
        assert client.get(path).status_code == 401
    assert client.get("/ui", follow_redirects=False).status_code == 303


def test_a_session_cookie_with_non_ascii_digits_is_refused() -> None:
    # str.isdigit() accepts "\u00b2" (int() then raises) and Arabic-Indic digits (int() reads them).
    gate = Gatekeeper(MASTER)
    assert not gate.session_valid("\u00b2.00")
    far = "\u0669" * 10  # 9999999999 in Arabic-Indic digits, with the MAC of the ASCII spelling
    assert not gate.session_valid(f"{far}.{gate.session(now=9_999_999_999 - 43_200).partition('.')[2]}")


# ---------------------------------------------------------------- learned limits


def test_deployments_panel_shows_learned_limits_beside_the_configured_ones_and_reading_changes_nothing() -> None:
    clock = Clock()
    state = MemoryState(clock=clock)
    deployments = [
        Deployment(model=ScriptedChatModel(), name="announcing", rpm=60, tpm=10_000),
        Deployment(model=ScriptedChatModel(), name="silent", rpm=30),
    ]
    router = RoutingChatModel(deployments=deployments, state=state)
    announced = {"remaining_requests": 7, "limit_requests": 10, "reset_requests": 30.0}
    state.observe_limits(
        "announcing", {**announced, "remaining_tokens": 4990, "limit_tokens": 5000, "reset_tokens": 12.0}
    )
    assert state.learned.take("announcing", lambda: 90) == 90  # one request sent since: 6 left, 4,900 tokens
    client = _client(DashboardSource(routers={"main": router}))

    rows = {d["name"]: d for d in client.get("/ui/api/deployments", headers=BEARER).json()["routers"][0]["deployments"]}
    learned = {k: v for k, v in rows["announcing"].items() if k.startswith("learned_")}
    assert learned == {
        "learned_requests_left": 6, "learned_requests_limit": 10, "learned_requests_reset": 30.0,
        "learned_tokens_left": 4900, "learned_tokens_limit": 5000, "learned_tokens_reset": 12.0,
    }  # fmt: skip
    assert (rows["announcing"]["rpm"], rows["announcing"]["tpm"]) == (60, 10_000)  # configured, beside them
    assert all(rows["silent"][k] is None for k in learned)
    page = client.get("/ui", headers=BEARER).text
    row = re.search(r'<tr data-deployment="announcing">(.*?)</tr>', page, re.S)
    assert row is not None
    cells = dict(re.findall(r'data-field="(\w+)">([^<]*)<', row.group(1)))
    assert cells["rpm"].strip() == "60 / 60"
    assert cells["learned_requests"] == "6 / 10 · resets in 30 s"
    assert cells["learned_tokens"] == "4,900 / 5,000 · resets in 12 s"
    silent = re.search(r'<tr data-deployment="silent">(.*?)</tr>', page, re.S)
    assert silent is not None
    assert 'data-field="learned_requests">\u2013<' in silent.group(1)

    # A spent window whose reset passed: the page shows nothing known, and its polling starts no probe
    # (LearnedLimits.left would: a read that let one request through and held the rest).
    state.observe_limits("announcing", {"remaining_requests": 0, "limit_requests": 10, "reset_requests": 5.0})
    clock.now += 6.0
    for _ in range(3):
        shown = client.get("/ui/api/deployments", headers=BEARER).json()["routers"][0]["deployments"][0]
        assert shown["learned_requests_left"] is None
        assert shown["learned_requests_reset"] is None
    assert not state.learned._known["announcing"][0].probing
    assert state.learned._known["announcing"][0].left == 0
