"""Attacks on the dashboard (adversarial review of issue 17), each kept as the test that found it.

In-process over the real Starlette app and real SQLite ledgers: forged session cookies,
cross-site form posts, spreadsheet formulas smuggled through CSV delimiters, ledgers with
very many distinct names; and the provider-announced (learned) limits in the Deployments
panel, read without changing how calls are routed.
"""

from __future__ import annotations

import csv
import io
import re
import sqlite3
import time
from dataclasses import replace
from pathlib import Path

import pytest

pytest.importorskip("jinja2")
pytest.importorskip("starlette")

from starlette.testclient import TestClient

from langchain_multigateway.cli.dashboard import build_dashboard_app
from langchain_multigateway.dashboard import DashboardSource, Gatekeeper
from langchain_multigateway.dashboard.export import csv_cell
from langchain_multigateway.dashboard.failovers import recent_failovers
from langchain_multigateway.dashboard.web import SHOWN_ROWS
from langchain_multigateway.routing import Deployment, RoutingChatModel
from langchain_multigateway.server.keys import KeyStore
from langchain_multigateway.state import MemoryState
from langchain_multigateway.testing import ScriptedChatModel
from langchain_multigateway.usage import Ledger
from langchain_multigateway.usage.records import CallRecord

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


def _record(i: int, tag: str, cost: float | None, model: str = "gpt", ago: float = 30.0) -> CallRecord:
    ts = time.time() - ago
    return CallRecord(
        run_id=f"r{i}", started_at=ts - 1, ended_at=ts, latency_ms=10.0, provider="openai", model=model,
        deployment="dep", outcome="ok", input_tokens=10, output_tokens=5, total_tokens=15, cost_usd=cost,
        has_usage=True, tags=(tag,),
    )  # fmt: skip


# ---------------------------------------------------------------- cross-site forms


@pytest.mark.parametrize(
    "headers",
    [{"sec-fetch-site": "cross-site"}, {"sec-fetch-site": "same-site"}, {"origin": "https://evil.example"}],
)
def test_login_and_logout_posted_from_another_site_are_refused(headers: dict[str, str]) -> None:
    # Found: another site's page could sign the user out (the answer's Set-Cookie ended the session).
    client = _client(DashboardSource())
    out = client.post("/ui/logout", headers=headers, follow_redirects=False)
    assert out.status_code == 403
    assert "set-cookie" not in out.headers
    login = client.post("/ui/login", data={"key": MASTER}, headers=headers, follow_redirects=False)
    assert login.status_code == 403
    assert "set-cookie" not in login.headers
    # The dashboard's own form (same origin), and clients that are not browsers, still work.
    own = {"sec-fetch-site": "same-origin", "origin": "http://testserver"}
    assert client.post("/ui/login", data={"key": MASTER}, headers=own, follow_redirects=False).status_code == 303
    assert client.post("/ui/logout", follow_redirects=False).status_code == 303
    assert client.post("/ui/login", data={"key": MASTER}, headers={"origin": "http://testserver"}).status_code == 200


# ---------------------------------------------------------------- CSV


def test_csv_cells_split_by_a_semicolon_locale_or_led_by_other_formula_marks_stay_text(tmp_path: Path) -> None:
    hostile = ['a;=HYPERLINK("http://x")', "|calc", "%0A=1", " =1+1", "\n=1", "\uff1d1+1", "-1"]
    path = tmp_path / "usage.sqlite3"
    with Ledger(path) as ledger:
        for i, tag in enumerate(hostile):
            ledger.add(_record(i, tag, 0.001))
    text = _client(DashboardSource(ledger_path=path)).get("/ui/usage.csv", headers=BEARER).text
    rows = list(csv.DictReader(io.StringIO(text)))
    tags = {r["key"] for r in rows if r["group"] == "tag"}
    assert tags == {'a;\'=HYPERLINK("http://x")', "'|calc", "'%0A=1", "' =1+1", "\\x0a=1", "'\uff1d1+1", "'-1"}
    # Opened with ";" as the separator (a spreadsheet in a European locale): no cell is a formula.
    for line in csv.reader(io.StringIO(text), delimiter=";"):
        assert not any(cell.lstrip(" ").startswith(("=", "+", "@", "|", "\uff1d")) for cell in line), line
    assert all(r["cost_usd"] == "0.001" for r in rows if r["group"] == "tag")
    assert [csv_cell(v) for v in ("|x", "%x", " -x", "\uff20x", "a b", "x, +1")] == [
        "'|x",
        "'%x",
        "' -x",
        "'\uff20x",
        "a b",
        "x, '+1",
    ]


# ---------------------------------------------------------------- many names


def test_a_ledger_with_many_distinct_tags_shows_the_costliest_and_counts_the_rest(tmp_path: Path) -> None:
    # Found: 100,000 calls under 20,000 tags drew every one: 38-64 MB of HTML and minutes per page.
    path = tmp_path / "usage.sqlite3"
    names = 3 * SHOWN_ROWS
    with Ledger(path) as ledger:
        for i in range(names):
            ledger.add(_record(i, f"tag-{i:03d}", None if i == names - 1 else (i + 1) / 1000, model=f"m{i:03d}"))
    client = _client(DashboardSource(ledger_path=path))
    page = client.get("/ui", headers=BEARER).text
    for group in ("tag", "model"):
        table = re.search(rf'<table class="usage" data-group="{group}">(.*?)</table>', page, re.S)
        assert table is not None
        shown = re.findall(r'<tr data-name="([^"]+)"', table.group(1))
        prefix = "tag-" if group == "tag" else "m"
        # The costliest SHOWN_ROWS (the last names), in name order; the unpriced one is not among them.
        assert shown == [f"{prefix}{i:03d}" for i in range(names - 1 - SHOWN_ROWS, names - 1)]
        assert f"{names - SHOWN_ROWS} more {group}s" in table.group(1)
    assert page.count("<rect") <= 8 * SHOWN_ROWS  # bars for the shown rows only (no traffic bars here)
    csv_rows = list(csv.DictReader(io.StringIO(client.get("/ui/usage.csv", headers=BEARER).text)))
    assert len([r for r in csv_rows if r["group"] == "tag" and r["period"] == "today"]) == names
    assert len(client.get("/ui/api/summary", headers=BEARER).json()["usage"]["tag"]["today"]) == names


def test_library_failovers_are_read_in_chunks_where_sqlite_allows_999_variables(tmp_path: Path) -> None:
    # Found: one IN (...) with a run id per failed-over call of the day; SQLite before 3.32 allows 999.
    path = tmp_path / "usage.sqlite3"
    Ledger(path).close()
    now = time.time()
    day = time.strftime("%Y-%m-%d", time.gmtime(now))
    with sqlite3.connect(path) as conn:
        for i in range(1500):
            sql = "INSERT INTO calls (ts, day, run_id, parent_run_id, deployment, model, outcome, error_type)"
            conn.execute(
                sql + " VALUES (?, ?, ?, ?, 'primary', 'm', 'error', 'ProviderError')", (now - 9, day, f"t{i}", f"r{i}")
            )
            conn.execute(sql + " VALUES (?, ?, ?, NULL, 'backup', 'm', 'ok', NULL)", (now - 8, day, f"r{i}"))
    with sqlite3.connect(path) as conn:
        conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 999)
        found = recent_failovers(conn, now, limit=2000)
    assert len(found) == 1500
    assert {(f["served_by"], f["failed"][0]["deployment"]) for f in found} == {("backup", "primary")}


def test_a_cookie_copied_before_sign_out_is_refused_after_it_and_other_sessions_go_on() -> None:
    # Found: signing out only deleted the browser's cookie; a copy of it opened the page for 12 hours.
    app = build_dashboard_app(DashboardSource(), MASTER)  # one server, three browsers
    client, other, replay = (TestClient(app) for _ in range(3))
    for c in (client, other):
        assert c.post("/ui/login", data={"key": MASTER}, follow_redirects=False).status_code == 303
    copied = client.cookies.get("multigateway_dashboard")
    assert copied is not None
    assert copied != other.cookies.get("multigateway_dashboard")  # each login its own session
    assert MASTER not in copied
    assert client.post("/ui/logout", follow_redirects=False).status_code == 303
    replay.cookies.set("multigateway_dashboard", copied, path="/ui")
    assert replay.get("/ui/api/deployments").status_code == 401
    assert replay.get("/ui", follow_redirects=False).status_code == 303
    assert other.get("/ui/api/deployments").status_code == 200  # another browser's session goes on
    # A session made under one master key is refused once the gateway runs with another.
    changed = TestClient(build_dashboard_app(DashboardSource(), MASTER + "-rotated"), raise_server_exceptions=False)
    changed.cookies.set("multigateway_dashboard", other.cookies["multigateway_dashboard"], path="/ui")
    assert changed.get("/ui/api/deployments").status_code == 401


def test_calls_of_unknown_price_are_never_shown_as_zero_in_charts_or_key_budgets(tmp_path: Path) -> None:
    # Found: a key's budget said "spent $0.0020" and the USD bar "$0.0020" with two calls of unknown price
    # among them (the tables said "+ n/a (2 calls)").
    keys = KeyStore(tmp_path / "keys.sqlite3")
    _, key = keys.create("team", budget_usd=1.0, period="30d")
    path = tmp_path / "usage.sqlite3"
    with Ledger(path) as ledger:
        for i, cost in enumerate((0.001, 0.001, None, None)):
            ledger.add(_record(i, key.tag, cost, ago=-1.0))  # after the key's creation: in its budget period
    client = _client(DashboardSource(ledger_path=path, keys=keys))
    page = client.get("/ui", headers=BEARER).text
    budget = re.search(r'<tr data-owner="key team \(\w+\)">(.*?)</tr>', page, re.S)
    assert budget is not None
    assert "$0.0020 + n/a (2 calls)" in budget.group(1)
    usd_chart = re.search(
        r'<div class="group" id="usage-key">.*?<figcaption>USD</figcaption>(.*?)</figure>', page, re.S
    )
    assert usd_chart is not None
    assert "$0.0020 + n/a</text>" in usd_chart.group(1)
    row = client.get("/ui/api/summary", headers=BEARER).json()["budgets"][0]
    assert (row["spent_usd"], row["unpriced_calls"]) == (0.002, 2)
    keys.close()


def test_traffic_of_many_deployments_shows_the_busiest_and_sums_the_others(tmp_path: Path) -> None:
    # Found: after the usage tables were cut to the costliest rows, 20,000 deployments in the last hour
    # still drew a legend row and bars each (5 MB of HTML).
    path = tmp_path / "usage.sqlite3"
    names = SHOWN_ROWS + 30
    with Ledger(path) as ledger:
        for i in range(names):
            for j in range(2 if i < SHOWN_ROWS else 1):  # the first SHOWN_ROWS are the busiest
                ledger.add(replace(_record(i * 10 + j, "t", 0.001, model="m"), deployment=f"d{i:03d}"))
    page = _client(DashboardSource(ledger_path=path)).get("/ui", headers=BEARER).text
    legend = re.search(r'<table id="traffic-table">(.*?)</table>', page, re.S)
    assert legend is not None
    rows = re.findall(
        r'<tr data-deployment="([^"]+)" data-outcome="ok">.*?<td class="num">(\d+)</td>', legend.group(1), re.S
    )
    assert dict(rows) == {**{f"d{i:03d}": "2" for i in range(SHOWN_ROWS)}, "(30 others)": "30"}
