"""The usage table as CSV, safe to open in a spreadsheet.

A cell starting with ``=``, ``+``, ``-``, ``@`` (or a tab, carriage return or line feed,
``|``, ``%``, their full-width forms, or spaces before any of them) could be run as a
formula (or a DDE call) by Excel, LibreOffice and Sheets: a model, deployment or tag
name like ``=HYPERLINK(...)`` could then send the sheet's data elsewhere. Such cells get
a leading ``'``, which spreadsheets show as text. A spreadsheet opening the file with
``;`` as its list separator (most of Europe's locales) splits every line at each ``;``
whatever the quotes say, so ``a;=HYPERLINK(...)`` would become two cells, the second a
formula: a ``'`` goes after such a separator too. Control characters (line breaks) are
written escaped, as ``\\x0a``: a line break inside a cell starts a new line for such a
reader, which may begin with ``=``. Text cells are quoted. Numbers are
written as numbers (a negative number is a number, not a formula). An unknown price is
``n/a``, never 0.
"""

from __future__ import annotations

import csv
import io
import re
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
_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f]")
"""Line breaks and other control characters, written as ``\\x0a``: a cell broken over lines
ends the record for any reader that ignores the quotes, and its next line may start with ``=``."""
_SPLIT_FORMULA = re.compile("([;,\t] *)(?=[=+\\-@|%\uff1d\uff0b\uff0d\uff20])")
"""A separator a spreadsheet may split on (its locale's ``;``, whatever the quotes say) before a
formula mark: ``a;=HYPERLINK(...)`` becomes ``a;'=HYPERLINK(...)``, text in either cell."""
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n", "|", "%", "\uff1d", "\uff0b", "\uff0d", "\uff20")


def csv_cell(value: Any) -> Any:
    """``value`` made inert for spreadsheets (numbers pass through)."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    text = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", str(value))
    text = _SPLIT_FORMULA.sub(r"\1'", text)
    return "'" + text if text.lstrip(" ").startswith(_FORMULA_STARTS) else text


def usage_csv(rows: Iterable[Mapping[str, Any]]) -> str:
    """CSV text of usage rows: ``period``, ``group``, ``key`` (the model, deployment, key id or tag),
    ``name`` (as shown: a key's name with its id) and the figures."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n", quoting=csv.QUOTE_NONNUMERIC)
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
                "n/a" if cost is None else round(cost, 6),
                row["unpriced"],
            ]
        )
    return buffer.getvalue()
