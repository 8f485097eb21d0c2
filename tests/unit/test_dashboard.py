"""The dashboard's server side in-process (Starlette's test client over the real app and a real ledger).

The browser tests (tests/browser) drive the page in chromium against a served
gateway; these check the same routes' rules from Python: no master key, no page;
login and bearer; figures against the ledger; CSV cells a spreadsheet cannot run;
hostile names drawn as text; a ledger older than the failed-try table.
"""

from __future__ import annotations

import csv
import io
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("jinja2")
pytest.importorskip("starlette")

from starlette.testclient import TestClient

from langchain_multigateway.cli import main
from langchain_multigateway.cli.dashboard import build_dashboard_app
from langchain_multigateway.dashboard import DashboardSource, Gatekeeper
from langchain_multigateway.dashboard.auth import SESSION_SECONDS
from langchain_multigateway.dashboard.charts import bar_chart, minute_chart
from langchain_multigateway.dashboard.export import csv_cell
from langchain_multigateway.dashboard.queries import LedgerReader, LedgerUnavailableError
from langchain_multigateway.routing import Deployment, RoutingChatModel
from langchain_multigateway.server.keys import KeyStore
from langchain_multigateway.testing import ScriptedChatModel
from langchain_multigateway.usage import Budget, Ledger
from langchain_multigateway.usage.records import CallRecord

MASTER = "mg-master-unit-" + "d4sh" * 6
HOSTILE = '<img src=x onerror="alert(1)">'


def _record(ago: float, model: str, deployment: str, cost: float | None, tags: tuple[str, ...], ok: bool = True) -> Any:
    ts = time.time() - ago
    return CallRecord(
        run_id=f"{model}-{ago}", started_at=ts - 1, ended_at=ts, latency_ms=1000.0, provider="openai", model=model,
        deployment=deployment, outcome="ok" if ok else "error", error_type=None if ok else "ProviderError",
        input_tokens=100, output_tokens=50, total_tokens=150, cost_usd=cost, has_usage=True, tags=tags,
    )  # fmt: skip


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[TestClient, Path, KeyStore, str]]:
    keys = KeyStore(tmp_path / "keys.sqlite3")
    _, key = keys.create("team-a", budget_usd=2.0, period="30d")
    ledger_path = tmp_path / "usage.sqlite3"
    with Ledger(ledger_path) as ledger:
        failed = [{"deployment": "primary", "error_type": "ProviderError", "status_code": 503, "latency_ms": 12.0}]
        ledger.add(_record(60, "gpt", "backup", 0.5, (key.tag, "router:main")), failed=failed)
        ledger.add(_record(120, HOSTILE, "=cmd", None, ("router:main",)))
        ledger.add(_record(10 * 86400, "gpt", "backup", 0.25, (key.tag, "router:main")))
        ledger.add(_record(60, "gpt", "primary", 0.0, ("router:main",), ok=False))
        ledger.add(_record(-1, "gpt", "backup", 0.4, (key.tag,)))  # after the key's creation: in its budget
    router = RoutingChatModel(
        deployments=[Deployment(model=ScriptedChatModel(), name="primary", rpm=60)],
        budget=Budget(max_cost_usd=3.0, name="team-budget"),
    )
    source = DashboardSource(routers={"main": router}, ledger_path=ledger_path, keys=keys)
    with TestClient(build_dashboard_app(source, MASTER)) as client:
        yield client, ledger_path, keys, key.id
    keys.close()


def _login(client: TestClient) -> None:
    response = client.post("/ui/login", data={"key": MASTER}, follow_redirects=False)
    assert response.status_code == 303


def test_without_a_master_key_there_is_no_page(tmp_path: Path) -> None:
    app = build_dashboard_app(DashboardSource(), "")
    with TestClient(app) as client:
        page = client.get("/ui")
        assert page.status_code == 404
        assert "MULTIGATEWAY_MASTER_KEY" in page.text
        assert client.post("/ui/login", data={"key": ""}).status_code == 404
        assert client.get("/ui/api/deployments").status_code == 404
        assert client.get("/ui/usage.csv", headers={"authorization": "Bearer "}).status_code == 404


def test_login_sets_a_session_that_is_not_the_key_and_logout_ends_it(setup: Any) -> None:
    client, *_ = setup
    assert client.get("/ui", follow_redirects=False).headers["location"] == "/ui/login"
    assert client.get("/ui/api/summary").status_code == 401
    wrong = client.post("/ui/login", data={"key": MASTER + "x"}, follow_redirects=False)
    assert wrong.status_code == 401
    assert "not this gateway" in wrong.text
    assert client.post("/ui/login", content=b"key=" + b"x" * 5000).status_code == 413
    response = client.post("/ui/login", data={"key": MASTER}, follow_redirects=False)
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    assert MASTER not in cookie
    assert client.get("/ui").status_code == 200
    assert client.get("/ui/api/deployments").status_code == 200
    client.post("/ui/logout", follow_redirects=False)
    assert client.get("/ui/api/deployments").status_code == 401


def test_session_cookies_expire_and_cannot_be_forged() -> None:
    gate = Gatekeeper(MASTER)
    now = time.time()
    value = gate.session(now)
    assert gate.session_valid(value, now)
    assert not gate.session_valid(value, now + SESSION_SECONDS + 1)
    expires, _, mac = value.partition(".")
    assert not gate.session_valid(f"{int(expires) + 3600}.{mac}", now)  # a later expiry needs a new MAC
    assert not Gatekeeper(MASTER + "2").session_valid(value, now)  # a new master key ends every session
    assert not gate.session_valid("garbage", now)
    assert not Gatekeeper(None).key_matches("")


def test_bearer_token_opens_the_json_and_a_virtual_key_does_not(setup: Any) -> None:
    client, _, keys, _ = setup
    secret, _ = keys.create("other")
    assert client.get("/ui/api/summary", headers={"authorization": f"Bearer {secret}"}).status_code == 401
    response = client.get("/ui/api/summary", headers={"authorization": f"Bearer {MASTER}"})
    assert response.status_code == 200
    assert response.headers["content-security-policy"].startswith("default-src 'none'")
    assert secret not in response.text
    assert MASTER not in response.text


def test_summary_figures_match_the_ledger(setup: Any) -> None:
    client, ledger_path, _, key_id = setup
    _login(client)
    summary = client.get("/ui/api/summary").json()
    with sqlite3.connect(ledger_path) as conn:
        recent = conn.execute("SELECT COUNT(*) FROM calls WHERE ts >= ?", (time.time() - 3600,)).fetchone()[0]
    assert sum(row["requests"] for row in summary["traffic"]) == recent
    (failover,) = summary["failovers"]
    assert failover["served_by"] == "backup"
    assert failover["router"] == "main"  # from the call's router:<name> tag
    assert failover["failed"] == [
        {"deployment": "primary", "error_type": "ProviderError", "status_code": 503, "latency_ms": 12.0}
    ]
    by_model = {row["key"]: row for row in summary["usage"]["model"]["30d"]}
    assert by_model["gpt"]["requests"] == 4
    assert by_model["gpt"]["errors"] == 1
    assert by_model["gpt"]["cost_usd"] == pytest.approx(1.15)
    assert by_model[HOSTILE]["cost_usd"] is None  # unknown price: None, shown n/a
    assert by_model[HOSTILE]["unpriced"] == 1
    assert {row["key"] for row in summary["usage"]["model"]["7d"]} == {"gpt", HOSTILE}
    (key_row,) = summary["usage"]["key"]["30d"]
    assert key_row["name"] == f"team-a ({key_id})"
    budgets = {b["owner"]: b for b in summary["budgets"]}
    # Only what was spent in the key's period (since its creation) counts against its budget.
    assert budgets[f"key team-a ({key_id})"]["left_usd"] == pytest.approx(2.0 - 0.4)
    assert budgets["router main"]["limit_usd"] == 3.0
    assert budgets["router main"]["left_usd"] == pytest.approx(3.0)
    (router,) = client.get("/ui/api/deployments").json()["routers"]
    assert router["state"] == {"backend": "memory", "shared": False, "live": True}
    assert router["deployments"][0]["rpm"] == 60
    assert router["deployments"][0]["breaker"] == "closed"


def test_page_draws_hostile_names_as_text_and_unknown_prices_as_na(setup: Any) -> None:
    client, *_ = setup
    _login(client)
    page = client.get("/ui?period=30d").text
    assert HOSTILE not in page
    assert "&lt;img src=x onerror=" in page
    assert ">n/a<" in page
    assert client.get("/ui?period=bogus").status_code == 200  # an unknown period falls back to today


def test_csv_cells_cannot_run_as_formulas(setup: Any) -> None:
    client, *_ = setup
    _login(client)
    response = client.get("/ui/usage.csv")
    assert response.headers["content-disposition"].startswith("attachment;")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    deployments = {r["key"] for r in rows if r["group"] == "deployment"}
    assert "'=cmd" in deployments
    na = [r for r in rows if r["group"] == "model" and r["key"] == HOSTILE]
    assert {r["cost_usd"] for r in na} == {"n/a"}
    assert [csv_cell(v) for v in ("=1+1", "+1", "-2", "@x", "\tx", "ok", -3, 1.5, None)] == [
        "'=1+1", "'+1", "'-2", "'@x", "'\tx", "ok", -3, 1.5, None,
    ]  # fmt: skip


def test_static_files_are_served_from_the_package_and_nothing_else(setup: Any) -> None:
    client, *_ = setup
    assert "fetch(" in client.get("/ui/static/dashboard.js").text
    assert client.get("/ui/static/dashboard.css").headers["content-type"].startswith("text/css")
    assert client.get("/ui/static/..%2F__init__.py").status_code == 404
    assert client.get("/ui/static/web.py").status_code == 404


def test_a_ledger_without_failed_tries_or_a_missing_one_is_said_plainly(tmp_path: Path) -> None:
    old = tmp_path / "old.sqlite3"
    with Ledger(old) as ledger:
        ledger.add(_record(5, "gpt", "a", 0.1, ()))
    with sqlite3.connect(old) as conn:
        conn.execute("DROP TABLE call_attempts")  # as written before failed tries were recorded
    assert LedgerReader(old).failovers(time.time()) == []
    with pytest.raises(LedgerUnavailableError, match="no ledger at"):
        LedgerReader(tmp_path / "none.sqlite3").row_count()
    (tmp_path / "junk.sqlite3").write_text("not a database")
    summary = DashboardSource(ledger_path=tmp_path / "junk.sqlite3").summary()
    assert "cannot read the ledger" in summary["error"]
    assert "no ledger" in DashboardSource().summary()["error"]


def test_charts_escape_names_and_scale_to_the_peak() -> None:
    svg, legend = minute_chart(
        [
            {"minute": 100, "deployment": HOSTILE, "outcome": "ok", "requests": 4},
            {"minute": 100, "deployment": HOSTILE, "outcome": "error", "requests": 2},
            {"minute": 130, "deployment": "b", "outcome": "ok", "requests": 1},
        ],
        first_minute=100,
    )
    assert HOSTILE not in svg
    assert [(s["deployment"], s["outcome"], s["requests"]) for s in legend] == [
        (HOSTILE, "ok", 4),
        ("b", "ok", 1),
        (HOSTILE, "error", 2),
    ]
    bars = bar_chart([("x" * 40, 2.0), ("y", None)], "USD")
    assert "n/a" in bars
    assert "$2.0000" in bars
    assert "nothing recorded" in bar_chart([], "tokens")


def test_cli_dashboard_refuses_a_missing_ledger_or_key_store(tmp_path: Path, capsys: Any) -> None:
    assert main(["dashboard", "--ledger", str(tmp_path / "none.sqlite3")]) == 2
    assert "no ledger at" in capsys.readouterr().err
    Ledger(tmp_path / "u.sqlite3").close()
    assert main(["dashboard", "--ledger", str(tmp_path / "u.sqlite3"), "--keys", str(tmp_path / "k")]) == 2
    assert "no key store" in capsys.readouterr().err


def test_served_dashboard_is_mounted_and_reads_the_gateways_ledger(tmp_path: Path, monkeypatch: Any) -> None:
    from langchain_multigateway.server import build_app

    monkeypatch.setenv("MULTIGATEWAY_MASTER_KEY", MASTER)
    config = tmp_path / "gateway.yaml"
    config.write_text('models:\n  m: {model: "openai:m", base_url: "http://127.0.0.1:9/v1", api_key: none}\n')
    ledger_path = tmp_path / "usage.sqlite3"
    with Ledger(ledger_path) as ledger:
        ledger.add(_record(5, "m", "m", None, ()))
    app = build_app(config, keys_path=tmp_path / "keys.sqlite3", ledger_path=ledger_path)
    with TestClient(app) as client:
        assert client.get("/ui/api/summary").status_code == 401
        bearer = {"authorization": f"Bearer {MASTER}"}
        summary = client.get("/ui/api/summary", headers=bearer).json()
        assert summary["rows"] == 1
        assert [r["router"] for r in client.get("/ui/api/deployments", headers=bearer).json()["routers"]] == ["m"]
    monkeypatch.delenv("MULTIGATEWAY_MASTER_KEY")
    with TestClient(build_app(config, keys_path=tmp_path / "keys.sqlite3")) as client:
        assert client.get("/ui").status_code == 404  # no master key: no page, whatever else is set


def test_sums_of_past_days_are_reused_until_a_row_is_added_to_them(tmp_path: Path) -> None:
    path = tmp_path / "usage.sqlite3"
    with Ledger(path) as ledger:
        ledger.add(_record(3 * 86400, "gpt", "a", 1.0, ()))
    reader = LedgerReader(path)
    now = time.time()
    assert reader.usage(now)["model"]["30d"][0]["cost_usd"] == pytest.approx(1.0)
    with sqlite3.connect(path) as conn:  # a change no ledger would make: shows whether the sums were kept
        conn.execute("UPDATE calls SET cost_usd = 5.0")
    assert reader.usage(now)["model"]["30d"][0]["cost_usd"] == pytest.approx(1.0)
    with Ledger(path) as ledger:  # a late row for a past day (a sidecar imported, another process)
        ledger.add(_record(2 * 86400, "gpt", "a", 0.5, ()))
    (row,) = reader.usage(now)["model"]["30d"]
    assert row["requests"] == 2
    assert row["cost_usd"] == pytest.approx(5.5)


def test_cli_dashboard_serves_the_config_routers_with_the_key_it_prints(
    tmp_path: Path, monkeypatch: Any, capsys: Any
) -> None:
    """``run`` builds the app and hands it to uvicorn; here the app is driven in-process instead of a port."""
    import uvicorn

    config = tmp_path / "gateway.yaml"
    config.write_text('models:\n  m: {model: "openai:m", base_url: "http://127.0.0.1:9/v1", api_key: none}\n')
    keys = KeyStore(tmp_path / "keys.sqlite3")
    keys.create("team-a")
    keys.close()
    ledger_path = tmp_path / "usage.sqlite3"
    with Ledger(ledger_path) as ledger:
        ledger.add(_record(5, "m", "m", None, ()))
    seen: dict[str, Any] = {}

    def serve(app: Any, **options: Any) -> None:
        import os

        seen["printed"] = capsys.readouterr().err
        seen["key"] = os.environ.get("MULTIGATEWAY_MASTER_KEY") or seen["printed"].rsplit(" ", 1)[-1].strip()
        seen["options"] = options
        with TestClient(app) as client:
            assert client.get("/", follow_redirects=False).headers["location"] == "/ui"
            bearer = {"authorization": f"Bearer {seen['key']}"}
            seen["routers"] = [r["router"] for r in client.get("/ui/api/deployments", headers=bearer).json()["routers"]]
            seen["rows"] = client.get("/ui/api/summary", headers=bearer).json()["rows"]

    monkeypatch.setattr(uvicorn, "run", serve)
    monkeypatch.delenv("MULTIGATEWAY_MASTER_KEY", raising=False)
    args = [
        "dashboard",
        "--ledger",
        str(ledger_path),
        "--config",
        str(config),
        "--keys",
        str(tmp_path / "keys.sqlite3"),
    ]
    assert main([*args, "--port", "4199"]) == 0
    assert seen["key"].startswith("mg-dash-")
    assert seen["options"]["host"] == "127.0.0.1"
    assert seen["options"]["port"] == 4199
    assert seen["routers"] == ["m"]
    assert seen["rows"] == 1
    monkeypatch.setenv("MULTIGATEWAY_MASTER_KEY", MASTER)  # when set, it is the key, and it is not printed
    seen.clear()
    assert main(args) == 0
    assert seen["routers"] == ["m"]  # opened with the master key
    assert MASTER not in seen["printed"]
    assert "sign in with $MULTIGATEWAY_MASTER_KEY" in seen["printed"]


def test_failovers_of_a_library_users_ledger_come_from_its_failed_try_rows(tmp_path: Path) -> None:
    """A ``LedgerCallbackHandler`` writes each failed try as an error row under the router's run."""
    from langchain_core.runnables import RunnableLambda

    from langchain_multigateway.errors import ProviderError
    from langchain_multigateway.testing import Step
    from langchain_multigateway.usage import LedgerCallbackHandler, PriceTable

    def failing(n: int = 10) -> ScriptedChatModel:
        return ScriptedChatModel(steps=[Step(error=ProviderError("upstream 503", status_code=503))] * n)

    path = tmp_path / "usage.sqlite3"
    # Its own price table: the process-wide one warns once per model per process, and an earlier test
    # may already have spent the warning for the scripted model.
    with Ledger(path) as ledger, pytest.warns(RuntimeWarning, match="No price known"):
        handler = LedgerCallbackHandler(ledger, prices=PriceTable())
        served = RoutingChatModel(
            deployments=[
                Deployment(model=failing(), name="primary"),
                Deployment(model=ScriptedChatModel(), name="backup"),
            ]
        )
        served.invoke("hi", config={"callbacks": [handler], "tags": ["router:main"]})
        doomed = RoutingChatModel(
            deployments=[Deployment(model=failing(), name="p1"), Deployment(model=failing(), name="p2")]
        )
        with pytest.raises(Exception, match="p2"):
            doomed.invoke("hi", config={"callbacks": [handler]})
        alone = RunnableLambda(lambda text: text) | failing()  # one failed call in a chain: no failover
        with pytest.raises(ProviderError):
            alone.invoke("hi", config={"callbacks": [handler]})
    newest, oldest = LedgerReader(path).failovers(time.time())
    assert (oldest["served_by"], oldest["outcome"], oldest["router"]) == ("backup", "ok", "main")
    assert [(t["deployment"], t["error_type"], t["status_code"]) for t in oldest["failed"]] == [
        ("primary", "ProviderError", None),  # a library ledger does not record the status
        ("primary", "ProviderError", None),
    ]
    assert newest["outcome"] == "error"
    assert [t["deployment"] for t in newest["failed"]] == ["p1", "p1", "p2", "p2"]


def test_a_login_form_trickled_byte_by_byte_is_cut_off(setup: Any, monkeypatch: Any) -> None:
    import socket

    from langchain_multigateway.dashboard import web
    from tests.server.conftest import ThreadedServer

    client, *_ = setup
    monkeypatch.setattr(web, "LOGIN_BODY_SECONDS", 0.5)
    with ThreadedServer(client.app) as server, socket.create_connection(("127.0.0.1", server.config.port)) as sock:
        head = "POST /ui/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        sock.sendall((head + "Content-Length: 100\r\n\r\nk").encode())  # then nothing more
        sock.settimeout(20)
        assert sock.recv(200).startswith(b"HTTP/1.1 408")
