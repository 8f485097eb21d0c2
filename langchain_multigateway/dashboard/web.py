"""The dashboard's HTTP routes under ``/ui``: the page, its JSON, the CSV, login and logout.

* ``GET /ui`` the page (server-rendered; ``?period=today|7d|30d`` picks the usage period)
* ``GET /ui/login`` · ``POST /ui/login`` (form field ``key``) · ``POST /ui/logout``
* ``GET /ui/api/deployments`` the live Deployments panel, which the page polls
* ``GET /ui/api/summary`` traffic, failovers, usage and budgets as JSON
* ``GET /ui/usage.csv`` the usage table, every period and group
* ``GET /ui/static/…`` the page's CSS and script, from the package

Everything but login needs the master key (cookie or bearer token, see ``auth``).
Read-only: nothing here changes the gateway, its keys or its ledger. Ledger reads run
in a worker thread so the gateway's event loop keeps serving calls meanwhile.
"""

from __future__ import annotations

import heapq
import time
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
import orjson
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from langchain_multigateway.dashboard import charts
from langchain_multigateway.dashboard.auth import Gatekeeper
from langchain_multigateway.dashboard.export import usage_csv
from langchain_multigateway.dashboard.queries import GROUPS, PERIODS
from langchain_multigateway.dashboard.view import DashboardSource, usage_table

__all__ = ["BASE", "REFRESH_SECONDS", "SHOWN_ROWS", "dashboard_routes"]

BASE = "/ui"
REFRESH_SECONDS = 3.0
"""The Deployments panel polls this often: a breaker that opens shows within about 3 s."""
SHOWN_ROWS = 25
"""Rows per usage table and chart on the page: a ledger with thousands of tags or keys drew
every one (tens of MB of HTML, minutes to render); the rest are counted and are in the CSV."""
_STATIC = {"dashboard.css": "text/css", "dashboard.js": "text/javascript"}
_PERIOD_NAMES = {"today": "Today", "7d": "7 days", "30d": "30 days"}
_MAX_LOGIN_BYTES = 4096
LOGIN_BODY_SECONDS = 10.0
"""A login form's body must arrive within this (it is a few dozen bytes)."""
_NONE = "\u2013"  # an en dash: no figure yet
_HEADERS = {
    # Only the package's own script and style run; no page may frame this one.
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self';"
        " form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}


def _clock(ts: float | None) -> str:
    return "" if ts is None else time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts))


def _ms(value: float | None) -> str:
    return _NONE if value is None else f"{value:,.0f} ms"


def _usd(row: dict[str, Any]) -> str:
    cost, unpriced = row.get("cost_usd"), row.get("unpriced") or 0
    if cost is None:
        return "n/a"
    return f"${cost:,.4f}" + (f" + n/a ({unpriced} calls)" if unpriced else "")


def _limit(left: int | None, configured: int | None) -> str:
    return "no limit" if configured is None else f"{left if left is not None else '?'} / {configured}"


def _learned(d: dict[str, Any], kind: str) -> str:
    """A provider's announced budget: "4,990 / 5,000 · resets in 12.3 s"; a dash when none was announced."""
    left, limit, reset = d.get(f"learned_{kind}_left"), d.get(f"learned_{kind}_limit"), d.get(f"learned_{kind}_reset")
    if left is None:
        return _NONE
    text = f"{left:,.0f}" + (f" / {limit:,.0f}" if limit is not None else "")
    return text + (f" · resets in {reset:g} s" if reset is not None else "")


def _budget(row: dict[str, Any], which: str) -> str:
    usd, tokens = row.get(f"{which}_usd"), row.get(f"{which}_tokens")
    unpriced = row.get("unpriced_calls") if which == "spent" else None  # calls of unknown price: never $0
    parts = [f"${usd:,.4f}" + (f" + n/a ({unpriced} calls)" if unpriced else "")] if usd is not None else []
    if tokens is not None:
        parts.append(f"{tokens:,} tokens")
    return " · ".join(parts) or _NONE


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("langchain_multigateway.dashboard", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
    )
    env.filters.update(
        clock=_clock,
        ms=_ms,
        usd=_usd,
        limit=_limit,
        learned=_learned,
        budget=_budget,
        pct=lambda v: f"{v * 100:.1f} %",
        seconds=lambda v: _NONE if v is None else f"{v:g} s",
    )
    return env


def _cross_site(request: Request) -> bool:
    """A form posted from another site's page (login or logout CSRF): the browser says so in
    ``Sec-Fetch-Site``, or (older browsers) in an ``Origin`` that is not this page's host."""
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site not in ("same-origin", "none")
    origin = request.headers.get("origin")
    if origin is None:
        return False  # not a browser's cross-site form (curl, scripts): nothing to forge
    return origin == "null" or urlsplit(origin).netloc.lower() != request.headers.get("host", "").lower()


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=_HEADERS)


def _biggest(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ``SHOWN_ROWS`` rows that cost most (then used most tokens), in name order; the CSV has all."""
    if len(rows) <= SHOWN_ROWS:
        return rows
    top = heapq.nlargest(SHOWN_ROWS, rows, key=lambda r: (r["cost_usd"] or 0.0, r["total_tokens"], r["requests"]))
    return sorted(top, key=lambda r: str(r["key"]))


def _busiest(traffic: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Traffic rows of the ``SHOWN_ROWS`` busiest deployments; the others' requests summed per minute
    and outcome under one name ("(N others)"), so the chart's bars and its legend stay that short."""
    totals: dict[str, int] = {}
    for row in traffic:
        totals[row["deployment"]] = totals.get(row["deployment"], 0) + row["requests"]
    if len(totals) <= SHOWN_ROWS:
        return traffic
    kept = set(heapq.nlargest(SHOWN_ROWS, totals, key=lambda name: (totals[name], name)))
    others = f"({len(totals) - len(kept)} others)"
    folded: dict[tuple[int, str, str], int] = {}
    for row in traffic:
        name = row["deployment"] if row["deployment"] in kept else others
        key = (row["minute"], name, row["outcome"])
        folded[key] = folded.get(key, 0) + row["requests"]
    return [{"minute": m, "deployment": d, "outcome": o, "requests": n} for (m, d, o), n in folded.items()]


def _page_context(source: DashboardSource, period: str) -> dict[str, Any]:
    """Everything the page template needs (run in a worker thread: it reads SQLite)."""
    now = time.time()
    summary = source.summary(now)
    traffic = _busiest(summary.get("traffic") or [])
    svg, legend = charts.minute_chart(traffic, int(summary.get("first_minute") or now // 60))
    usage = summary.get("usage") or {}
    drawn, shown, hidden = {}, {}, {}
    for group in GROUPS:
        rows = usage.get(group, {}).get(period, [])
        shown[group] = top = _biggest(rows)
        hidden[group] = len(rows) - len(top)
        drawn[group] = {
            "tokens": charts.bar_chart([(r["name"], r["total_tokens"]) for r in top], "tokens"),
            "usd": charts.bar_chart([(r["name"], r["cost_usd"]) for r in top], "USD", [r["unpriced"] for r in top]),
        }
    return {
        "summary": summary,
        "deployments": source.deployments(),
        "traffic_svg": svg,
        "traffic_legend": legend,
        "charts": drawn,
        "shown": shown,
        "hidden": hidden,
        "period": period,
        "periods": PERIODS,
        "period_names": _PERIOD_NAMES,
        "groups": GROUPS,
    }


def dashboard_routes(source: DashboardSource, gate: Gatekeeper) -> list[BaseRoute]:
    """The ``/ui`` routes over ``source``, guarded by ``gate``."""
    env = _environment()
    common = {"base": BASE, "refresh_ms": int(REFRESH_SECONDS * 1000)}

    def html(template: str, status: int = 200, **values: Any) -> HTMLResponse:
        body = env.get_template(template).render(**common, **values)
        return HTMLResponse(body, status_code=status, headers=_HEADERS)

    def login_page(status: int = 200, failed: bool = False) -> HTMLResponse:
        return html("login.html", status if gate.enabled else 404, enabled=gate.enabled, failed=failed)

    async def page(request: Request) -> Response:
        if not gate.allows(request):
            if not gate.enabled:
                return login_page()
            return RedirectResponse(f"{BASE}/login", status_code=303, headers=_HEADERS)
        period = request.query_params.get("period", "today")
        if period not in PERIODS:
            period = "today"
        context = await run_in_threadpool(_page_context, source, period)
        return html("dashboard.html", **context)

    async def login_form(request: Request) -> Response:
        return login_page()

    async def login(request: Request) -> Response:
        if not gate.enabled:
            return login_page()
        if _cross_site(request):
            return _json({"error": {"message": "sign in from the dashboard's own page (/ui/login)"}}, 403)
        body = bytearray()
        with anyio.move_on_after(LOGIN_BODY_SECONDS) as reading:  # a form trickled a byte at a time is cut off
            async for piece in request.stream():
                body += piece
                if len(body) > _MAX_LOGIN_BYTES:
                    return login_page(413, failed=True)
        if reading.cancelled_caught:
            return login_page(408, failed=True)
        fields = parse_qs(body.decode("utf-8", "replace"), max_num_fields=4)
        presented = (fields.get("key") or [""])[0].strip()
        if not gate.key_matches(presented):
            return login_page(401, failed=True)
        response = RedirectResponse(BASE, status_code=303, headers=_HEADERS)
        gate.log_in(response, request)
        return response

    async def logout(request: Request) -> Response:
        if _cross_site(request):
            return _json({"error": {"message": "sign out from the dashboard's own page"}}, 403)
        response = RedirectResponse(f"{BASE}/login", status_code=303, headers=_HEADERS)
        gate.log_out(response, request)
        return response

    def denied() -> Response:
        if not gate.enabled:
            return _json({"error": {"message": "no master key is set: the dashboard is off"}}, 404)
        return _json({"error": {"message": "sign in at /ui/login or send the master key as a bearer token"}}, 401)

    async def deployments(request: Request) -> Response:
        if not gate.allows(request):
            return denied()
        return _json(await run_in_threadpool(source.deployments))

    async def summary(request: Request) -> Response:
        if not gate.allows(request):
            return denied()
        return _json(await run_in_threadpool(source.summary))

    async def csv_download(request: Request) -> Response:
        if not gate.allows(request):
            return denied()
        text = usage_csv(usage_table(await run_in_threadpool(source.summary)))
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        headers = {**_HEADERS, "content-disposition": f'attachment; filename="multigateway-usage-{stamp}.csv"'}
        return Response(text, media_type="text/csv; charset=utf-8", headers=headers)

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in _STATIC:
            return Response(status_code=404)
        data = resources.files("langchain_multigateway.dashboard").joinpath("static", name).read_bytes()
        return Response(data, media_type=_STATIC[name], headers={"x-content-type-options": "nosniff"})

    return [
        Route(BASE, page, methods=["GET"]),
        Route(f"{BASE}/", page, methods=["GET"]),
        Route(f"{BASE}/login", login_form, methods=["GET"]),
        Route(f"{BASE}/login", login, methods=["POST"]),
        Route(f"{BASE}/logout", logout, methods=["POST"]),
        Route(f"{BASE}/api/deployments", deployments, methods=["GET"]),
        Route(f"{BASE}/api/summary", summary, methods=["GET"]),
        Route(f"{BASE}/usage.csv", csv_download, methods=["GET"]),
        Route(f"{BASE}/static/{{name}}", static, methods=["GET"]),
    ]
