"""The dashboard in a real browser (Debian's chromium via Playwright) against a real ``multigateway serve``.

Each panel's figures are checked against the ledger the server wrote, read here with
plain SQL; a breaker opened by a loopback fault (connection refused) must show as open
within one refresh, without a reload; the CSV download must match the ledger; no key or
secret may appear in the page, its JSON or its CSV. Screenshots of each panel, at laptop
and phone widths, go to ``build/dashboard-screenshots`` (``$DASHBOARD_SCREENSHOTS``).
"""

from __future__ import annotations

import csv
import io
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser.conftest import MASTER_KEY, Served, screenshot_dir

REFRESH_SECONDS = 3.0  # the page's polling period (langchain_multigateway.dashboard.web.REFRESH_SECONDS)


def _sql(served: Served, query: str, *params: Any) -> list[tuple[Any, ...]]:
    with sqlite3.connect(served.ledger) as conn:
        return conn.execute(query, params).fetchall()


def _starts() -> dict[str, float]:
    """Today, and the 7 and 30 days counting today (UTC calendar days), as the page states."""
    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
    return {"today": midnight, "7d": midnight - 6 * 86400, "30d": midnight - 29 * 86400}


def _expected_usage(served: Served, period: str) -> dict[str, dict[str, tuple[int, int, str]]]:
    """``{group: {name: (requests, tokens, usd text)}}`` straight from the ledger."""
    since = _starts()[period]
    queries = {
        "model": "SELECT model, COUNT(*), SUM(total_tokens), SUM(cost_usd), SUM(cost_usd IS NULL)"
        " FROM calls WHERE ts >= ? GROUP BY model",
        "deployment": "SELECT COALESCE(deployment, '(none)'), COUNT(*), SUM(total_tokens), SUM(cost_usd),"
        " SUM(cost_usd IS NULL) FROM calls WHERE ts >= ? GROUP BY 1",
        "key": "SELECT substr(t.tag, 5), COUNT(*), SUM(c.total_tokens), SUM(c.cost_usd), SUM(c.cost_usd IS NULL)"
        " FROM calls c JOIN call_tags t ON t.call_id = c.id WHERE c.ts >= ? AND t.tag LIKE 'key:%' GROUP BY 1",
        "tag": "SELECT t.tag, COUNT(*), SUM(c.total_tokens), SUM(c.cost_usd), SUM(c.cost_usd IS NULL)"
        " FROM calls c JOIN call_tags t ON t.call_id = c.id WHERE c.ts >= ? AND t.tag NOT LIKE 'key:%' GROUP BY 1",
    }
    out: dict[str, dict[str, tuple[int, int, str]]] = {}
    for group, query in queries.items():
        rows = {}
        for name, requests, tokens, cost, unpriced in _sql(served, query, since):
            usd = "n/a" if cost is None else f"${cost:,.4f}" + (f" + n/a ({unpriced} calls)" if unpriced else "")
            rows[name] = (requests, tokens, usd)
        out[group] = rows
    return out


@pytest.fixture(scope="module")
def page(browser: Any, served: Served) -> Iterator[Any]:
    served.settled()
    context = browser.new_context(viewport={"width": 1366, "height": 900}, accept_downloads=True)
    page = context.new_page()
    page.goto(served.url + "/ui")
    assert page.url.endswith("/ui/login")  # no key, no page
    page.fill("#key", "not-the-master-key")
    page.click("button[type=submit]")
    assert page.locator("#login-error").is_visible()
    page.fill("#key", MASTER_KEY)
    page.click("button[type=submit]")
    page.wait_for_selector("#deployments")
    yield page
    context.close()


def test_no_key_no_page_and_the_session_cookie_is_httponly_strict(served: Served, page: Any) -> None:
    assert httpx.get(served.url + "/ui", follow_redirects=False).status_code == 303
    assert httpx.get(served.url + "/ui/api/deployments").status_code == 401
    assert httpx.get(served.url + "/ui/usage.csv").status_code == 401
    wrong = {"authorization": "Bearer " + served.secrets[-1]}  # a virtual key is not the master key
    assert httpx.get(served.url + "/ui/api/summary", headers=wrong).status_code == 401
    bearer = {"authorization": f"Bearer {MASTER_KEY}"}
    assert httpx.get(served.url + "/ui/api/summary", headers=bearer).status_code == 200
    (cookie,) = page.context.cookies()
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    assert MASTER_KEY not in cookie["value"]
    assert page.evaluate("document.cookie") == ""  # no script can read the session


def test_deployments_panel_shows_each_routers_deployments_as_the_router_reports_them(served: Served, page: Any) -> None:
    ready = httpx.get(served.url + "/health/readiness").json()["routers"]
    for router in ("main", "guarded", "clean"):
        box = page.locator(f'#deployments .router[data-router="{router}"]')
        assert "memory state" in box.locator('[data-field="state"]').inner_text()
        for name, health in ready[router]["deployments"].items():
            row = box.locator(f'tr[data-deployment="{name}"]')
            assert row.locator('[data-field="breaker"]').inner_text() == health["breaker"]
            assert row.locator('[data-field="in_flight"]').inner_text() == str(health["in_flight"])
    primary = page.locator('.router[data-router="main"] tr[data-deployment="primary"]')
    assert primary.locator('[data-field="rpm"]').inner_text().endswith("/ 600")
    assert primary.locator('[data-field="tpm"]').inner_text().endswith("/ 100000")
    # 503 on every try: the router's error rate (a moving average) is high, the backup's nil.
    assert float(primary.locator('[data-field="error_rate"]').inner_text().rstrip(" %")) > 50
    backup = page.locator('.router[data-router="main"] tr[data-deployment="backup"]')
    assert backup.locator('[data-field="error_rate"]').inner_text() == "0.0 %"
    assert backup.locator('[data-field="latency"]').inner_text().endswith(" ms")
    page.locator("#deployments").screenshot(path=str(screenshot_dir() / "deployments.png"))


def test_a_breaker_opened_by_a_loopback_fault_shows_open_within_one_refresh(served: Served, page: Any) -> None:
    from playwright.sync_api import expect

    badge = page.locator('.router[data-router="guarded"] tr[data-deployment="unreachable"] [data-field="breaker"]')
    expect(badge).to_have_text("closed")
    page.evaluate("window.__notReloaded = true")
    key = served.secrets[2]
    for _ in range(2):  # connection refused on every try: two counted failures open it (threshold 2)
        assert served.chat(key, "guarded").status_code == 200  # served by the fallback
    assert (
        httpx.get(served.url + "/health/readiness").json()["routers"]["guarded"]["deployments"]["unreachable"][
            "breaker"
        ]
        == "open"
    )
    # One polling period, plus the fetch itself: the page polls every REFRESH_SECONDS.
    expect(badge).to_have_text("open", timeout=(REFRESH_SECONDS + 2.0) * 1000)
    assert page.evaluate("window.__notReloaded") is True  # updated in place, not by a reload
    # The rebuilt row has the provider-announced (learned) limits beside the configured ones, one
    # cell per heading: nothing announced on this loopback upstream, so a dash.
    box = page.locator('#deployments .router[data-router="guarded"]')
    row = box.locator('tr[data-deployment="unreachable"]')
    assert row.locator('[data-field="learned_requests"]').inner_text() == "\u2013"
    assert row.locator('[data-field="learned_tokens"]').inner_text() == "\u2013"
    assert box.locator("thead th").count() == row.locator("td").count() == 11
    page.locator('#deployments .router[data-router="guarded"]').screenshot(
        path=str(screenshot_dir() / "deployments-breaker-open.png")
    )


def test_traffic_panel_counts_match_the_ledger_and_failovers_list_each_failed_try(served: Served, page: Any) -> None:
    served.settled()
    page.reload()
    since = (int(time.time() // 60) - 59) * 60
    expected = {
        (d, o): n
        for d, o, n in _sql(
            served,
            "SELECT COALESCE(deployment, '(none)'), outcome, COUNT(*) FROM calls WHERE ts >= ? GROUP BY 1, 2",
            since,
        )
    }
    shown = {}
    for row in page.locator("#traffic-table tbody tr[data-deployment]").all():
        key = (row.get_attribute("data-deployment"), row.get_attribute("data-outcome"))
        shown[key] = int(row.locator("td.num").inner_text())
    assert shown == expected
    assert page.locator("#traffic svg.chart rect").count() >= 1
    calls = _sql(served, "SELECT DISTINCT call_id FROM call_attempts ORDER BY call_id DESC")
    assert len(calls) >= 3  # each team-a call failed over
    rows = page.locator("#failovers tbody tr[data-call]")
    assert [int(r.get_attribute("data-call")) for r in rows.all()] == [c[0] for c in calls][:20]
    newest = calls[0][0]
    tries = _sql(
        served, "SELECT deployment, error_type, status_code FROM call_attempts WHERE call_id = ? ORDER BY rowid", newest
    )
    items = page.locator(f'#failovers tr[data-call="{newest}"] li').all()
    assert len(items) == len(tries)
    for item, (deployment, error_type, status) in zip(items, tries, strict=True):
        text = item.inner_text()
        assert deployment in text
        assert error_type in text
        assert (str(status) if status is not None else "no status") in text
    # The main router's failovers: 503 from the stub on each try of primary, then backup served.
    main_call = _sql(
        served, "SELECT a.call_id FROM call_attempts a WHERE a.deployment = 'primary' ORDER BY a.call_id DESC LIMIT 1"
    )[0][0]
    row = page.locator(f'#failovers tr[data-call="{main_call}"]')
    assert "503" in row.inner_text()
    assert "served by backup" in row.inner_text()
    assert row.locator("td").nth(1).inner_text().startswith("main")  # the router it went through
    page.locator("#traffic").screenshot(path=str(screenshot_dir() / "traffic.png"))


@pytest.mark.parametrize("period", ["today", "7d", "30d"])
def test_usage_panel_matches_the_ledger_for_each_period(served: Served, page: Any, period: str) -> None:
    served.settled()
    page.goto(f"{served.url}/ui?period={period}#usage")
    expected = _expected_usage(served, period)
    for group, rows in expected.items():
        shown = {}
        for row in page.locator(f'table.usage[data-group="{group}"] tbody tr[data-name]').all():
            cells = row.locator("td").all_inner_texts()
            shown[row.get_attribute("data-name")] = (int(cells[1]), int(cells[5]), cells[6])
        assert shown == rows, (group, period)
    if period == "30d":
        assert expected["model"]["mystery-model"][2] == "n/a"  # unknown price: n/a, never $0
        page.locator("#usage").screenshot(path=str(screenshot_dir() / "usage.png"))


def test_budgets_show_what_is_left(served: Served, page: Any) -> None:
    served.settled()
    page.goto(served.url + "/ui#usage")
    key_id = served.key_ids["team-a"]
    created = _sql_keys(served, key_id)
    spent = _sql(
        served,
        "SELECT SUM(c.cost_usd) FROM calls c JOIN call_tags t ON t.call_id = c.id WHERE t.tag = ? AND c.ts >= ?",
        f"key:{key_id}",
        created,
    )[0][0]
    row = page.locator(f'#budgets tr[data-owner="key team-a ({key_id})"]')
    assert row.locator('[data-field="left"]').inner_text() == f"${1.0 - spent:,.4f}"


def _sql_keys(served: Served, key_id: str) -> float:
    with sqlite3.connect(served.keys) as conn:
        return float(conn.execute("SELECT created_at FROM keys WHERE id = ?", (key_id,)).fetchone()[0])


def test_csv_download_matches_the_ledger_and_cannot_run_formulas(served: Served, page: Any) -> None:
    served.settled()
    page.goto(served.url + "/ui#usage")
    with page.expect_download() as info:
        page.click("#csv-link")
    text = Path(info.value.path()).read_text(encoding="utf-8")
    rows = list(csv.DictReader(io.StringIO(text)))
    for period in ("today", "7d", "30d"):
        expected = _expected_usage(served, period)
        for group, by_name in expected.items():
            got = {r["key"]: r for r in rows if r["period"] == period and r["group"] == group}
            names = {("'" + n if n.startswith(("=", "+", "-", "@")) else n) for n in by_name}
            assert set(got) == names, (period, group)
            for name, (requests, tokens, usd) in by_name.items():
                row = got["'" + name if name.startswith(("=", "+", "-", "@")) else name]
                assert int(row["requests"]) == requests
                assert int(row["total_tokens"]) == tokens
                if usd == "n/a":
                    assert row["cost_usd"] == "n/a"
                else:
                    assert f"${float(row['cost_usd']):,.4f}" == usd.split(" + ")[0]
    # The key named "=team-b" is a formula in a spreadsheet unless neutralised.
    assert "'=team-b (" in text
    assert not any(cell.startswith(("=", "+", "@")) for r in rows for cell in r.values())


def test_no_key_or_secret_in_the_page_its_json_or_its_csv(served: Served, page: Any) -> None:
    page.goto(served.url + "/ui")
    bearer = {"authorization": f"Bearer {MASTER_KEY}"}
    bodies = [
        page.content(),
        httpx.get(served.url + "/ui/api/deployments", headers=bearer).text,
        httpx.get(served.url + "/ui/api/summary", headers=bearer).text,
        httpx.get(served.url + "/ui/usage.csv", headers=bearer).text,
        httpx.get(served.url + "/ui/static/dashboard.js").text,
    ]
    for body in bodies:
        for secret in served.secrets:
            assert secret not in body
            assert secret[-12:] not in body  # not even its tail


WIDER_THAN_THE_WINDOW = """() => {
  const out = [];
  for (const el of document.querySelectorAll("body *")) {
    if (el.closest(".scroll")) continue;  // inside a box that scrolls on its own
    const right = el.getBoundingClientRect().right;
    if (right > window.innerWidth + 1) out.push(`${el.tagName}.${el.className} ends at ${Math.round(right)}`);
  }
  return out;
}"""


def test_the_page_fits_a_phone_and_a_laptop(served: Served, browser: Any) -> None:
    for name, viewport in (("phone", {"width": 390, "height": 844}), ("laptop", {"width": 1366, "height": 900})):
        context = browser.new_context(viewport=viewport, extra_http_headers={"authorization": f"Bearer {MASTER_KEY}"})
        page = context.new_page()
        page.goto(served.url + "/ui?period=30d")
        # Wide tables scroll inside their own box; the page itself never scrolls sideways.
        assert page.evaluate(WIDER_THAN_THE_WINDOW) == []
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        page.screenshot(path=str(screenshot_dir() / f"dashboard-{name}.png"), full_page=True)
        context.close()


def test_multigateway_dashboard_opens_a_library_users_ledger_with_a_key_made_for_the_run(
    served: Served, browser: Any, tmp_path: Path
) -> None:
    """The second command: ``multigateway dashboard --ledger … --config …`` as a user runs it."""
    import os
    import subprocess
    import sys

    from tests.server.conftest import free_port

    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "MULTIGATEWAY_MASTER_KEY"}
    command = [sys.executable, "-m", "langchain_multigateway", "dashboard", "--ledger", str(served.ledger)]
    command += ["--config", str(served.ledger.parent / "gateway.yaml"), "--keys", str(served.keys)]
    command += ["--port", str(port)]
    served.settled()
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert process.stderr is not None
        lines = [process.stderr.readline(), process.stderr.readline()]
        assert lines[0].startswith(f"multigateway dashboard on http://127.0.0.1:{port}/ui")
        run_key = lines[1].rsplit(" ", 1)[-1].strip()
        assert run_key.startswith("mg-dash-")
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(url + "/ui/login", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "multigateway dashboard did not start"
                time.sleep(0.1)
        assert httpx.get(url + "/ui/api/summary", headers={"authorization": f"Bearer {MASTER_KEY}"}).status_code == 401
        context = browser.new_context()
        page = context.new_page()
        page.goto(url + "/")  # the root leads to the page, the page to its login
        page.fill("#key", run_key)
        page.click("button[type=submit]")
        page.goto(url + "/ui?period=30d")
        expected = _expected_usage(served, "30d")
        shown = {
            row.get_attribute("data-name"): int(row.locator("td").nth(1).inner_text())
            for row in page.locator('table.usage[data-group="key"] tbody tr[data-name]').all()
        }
        assert shown == {name: figures[0] for name, figures in expected["key"].items()}
        # The config's routers, in this process's own (idle, unshared) state.
        assert (
            page.locator('#deployments .router[data-router="main"] [data-field="state"]')
            .inner_text()
            .startswith("memory state")
        )
        assert run_key not in page.content()
        context.close()
    finally:
        process.terminate()
        process.wait(timeout=20)
