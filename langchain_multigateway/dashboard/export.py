"""The usage table as CSV, safe to open in a spreadsheet.

A cell starting with ``=``, ``+``, ``-``, ``@`` (or a tab or carriage return) would be
run as a formula by Excel, LibreOffice and Sheets: a model, deployment or tag name
like ``=HYPERLINK(...)`` could then send the sheet's data elsewhere. Such cells get a
leading ``'``, which spreadsheets show as text. Numbers are written as numbers (a
negative number is a number, not a formula). An unknown price is ``n/a``, never 0.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["CSV_COLUMNS", "csv_cell", "usage_csv"]

CSV_COLUMNS = (
    "period",
    "group",
    "key",
    "name",
    "requests",
    "errors",
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "cost_usd",
    "unpriced_calls",
)
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """``value`` made inert for spreadsheets (numbers pass through)."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def usage_csv(rows: Iterable[Mapping[str, Any]]) -> str:
    """CSV text of usage rows: ``period``, ``group``, ``key`` (the model, deployment, key id or tag),
    ``name`` (as shown: a key's name with its id) and the figures."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        cost = row.get("cost_usd")
        writer.writerow(
            [
                csv_cell(row["period"]),
                csv_cell(row["group"]),
                csv_cell(row["key"]),
                csv_cell(row["name"]),
                row["requests"],
                row["errors"],
                row["input_tokens"],
                row["output_tokens"],
                row["total_tokens"],
                "n/a" if cost is None else f"{cost:.6f}",
                row["unpriced"],
            ]
        )
    return buffer.getvalue()
