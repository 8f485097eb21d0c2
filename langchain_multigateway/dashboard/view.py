"""The dashboard's figures, gathered once per request from the routers, the ledger and the key store.

:class:`DashboardSource` names where they come from: ``multigateway serve`` passes its
gateway's routers, ledger file and key store; ``multigateway dashboard`` passes the
routers of a config file (their live state, shared when the config's state is Redis)
and a ledger file. Everything returned is JSON-safe and holds no secret: key ids and
names, never keys; deployment names, never URLs.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from langchain_multigateway.dashboard.live import deployments_snapshot, router_budgets
from langchain_multigateway.dashboard.queries import GROUPS, PERIODS, LedgerReader, LedgerUnavailableError

if TYPE_CHECKING:
    from langchain_multigateway.routing import RoutingChatModel
    from langchain_multigateway.server.keys import KeyStore

__all__ = ["DashboardSource"]


@dataclass
class DashboardSource:
    """Where the dashboard reads from.

    Attributes:
        routers: Routers by name, for the live Deployments panel (may be empty).
        ledger_path: The SQLite ledger, for traffic, failovers, usage and budgets
            (None: those panels say there is no ledger).
        keys: The virtual-key store, for key names and key budgets (None: keys are shown by id).
    """

    routers: Mapping[str, RoutingChatModel] = field(default_factory=dict)
    ledger_path: Path | None = None
    keys: KeyStore | None = None

    @cached_property
    def reader(self) -> LedgerReader | None:
        """One reader for the source's life: it keeps the sums of past days between pages."""
        return None if self.ledger_path is None else LedgerReader(self.ledger_path)

    def deployments(self) -> dict[str, Any]:
        return {"generated_at": time.time(), "routers": deployments_snapshot(self.routers)}

    def _key_names(self) -> dict[str, str]:
        if self.keys is None:
            return {}
        return {k.id: k.name for k in self.keys.list()}

    def summary(self, now: float | None = None) -> dict[str, Any]:
        """Traffic, failovers, usage by group and period, and budgets, as of ``now``."""
        now = time.time() if now is None else now
        out: dict[str, Any] = {"generated_at": now, "ledger": None, "error": None}
        budgets = router_budgets(self.routers)
        reader = self.reader
        if reader is None:
            out["error"] = "no ledger: start the gateway with --ledger FILE (or pass it to multigateway dashboard)"
            out["budgets"] = budgets
            return out
        try:
            names = self._key_names()
            usage = reader.usage(now)
            for rows in usage["key"].values():
                for row in rows:
                    row["name"] = f"{names[row['key']]} ({row['key']})" if row["key"] in names else row["key"]
            for group in GROUPS:
                if group != "key":
                    for rows in usage[group].values():
                        for row in rows:
                            row["name"] = row["key"]
            out.update(
                ledger=str(self.ledger_path),
                rows=reader.row_count(),
                traffic=reader.traffic(now),
                first_minute=int(now // 60) - 59,
                failovers=reader.failovers(now),
                usage=usage,
                budgets=budgets + self._key_budgets(reader, now),
            )
        except LedgerUnavailableError as exc:
            out["error"] = str(exc)
            out["budgets"] = budgets
        return out

    def _key_budgets(self, reader: LedgerReader, now: float) -> list[dict[str, Any]]:
        if self.keys is None:
            return []
        out = []
        for key in self.keys.list():
            if key.budget_usd is None or key.state(now) != "active":
                continue
            since = key.period_start(now)
            spent, unpriced = reader.spent(key.tag, since)
            out.append(
                {
                    "owner": f"key {key.name} ({key.id})",
                    "name": key.name,
                    "period": f"{key.period_seconds / 86400:g}d" if key.period_seconds else "lifetime",
                    "limit_usd": key.budget_usd,
                    "spent_usd": round(spent, 6),
                    "left_usd": round(key.budget_usd - spent, 6),
                    "limit_tokens": None,
                    "spent_tokens": None,
                    "unpriced_calls": unpriced,  # not in spent_usd: shown as "+ n/a", never as $0
                    "left_tokens": None,
                }
            )
        return out


def usage_table(summary: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every usage row of a summary, flat (period, group, name and figures), for the CSV."""
    usage = summary.get("usage") or {}
    rows = []
    for period in PERIODS:
        for group in GROUPS:
            for row in usage.get(group, {}).get(period, []):
                rows.append({"period": period, "group": group, **row})
    return rows
