"""A read-only dashboard page: deployments' health, traffic and failovers, usage and cost.

Setup:
    ``pip install 'langchain-multigateway[server]'`` (Starlette, uvicorn, Jinja2).

Open it:
    .. code-block:: bash

        export MULTIGATEWAY_MASTER_KEY=$(openssl rand -hex 24)
        multigateway serve --config gateway.yaml          # then open http://127.0.0.1:4000/ui
        multigateway dashboard --ledger usage.sqlite3 --config gateway.yaml   # a library user's ledger

Panels: Deployments (per router: breaker, EWMA latency and time to first token, error
rate, in flight, rpm/tpm left, the limits providers announced, whether the state is
shared and live; refreshed every 3 s), Traffic and failovers (requests per minute by deployment and outcome over the
last hour; recent failovers with each failed try), Usage and cost (tokens and USD by
model, deployment, key and tag for today, 7 and 30 days, as SVG charts and a CSV;
budgets and what is left). Only the master key opens it. Modules: ``queries`` (SQL
over the ledger), ``failovers`` (the failed tries of recent calls), ``live`` (router
health), ``view`` (the figures of one request), ``charts`` (SVG), ``export`` (CSV),
``auth`` (login), ``web`` (routes).
"""

from langchain_multigateway.dashboard.auth import Gatekeeper
from langchain_multigateway.dashboard.view import DashboardSource
from langchain_multigateway.dashboard.web import dashboard_routes

__all__ = ["DashboardSource", "Gatekeeper", "dashboard_routes"]
