"""Plain inline SVG charts, drawn on the server: no charting library, no CDN, no build step.

Every name drawn is escaped (``markupsafe``), so a hostile model or tag name is text.
Charts scale with their container (``viewBox`` plus ``width: 100%`` in the CSS).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from markupsafe import Markup, escape

__all__ = ["bar_chart", "minute_chart", "series_colour"]

_OK = ("#2f6fdf", "#1a9e77", "#7b5cd6", "#d98c1a", "#0b8fb3", "#9c6b3a", "#5a7d2a", "#c2439b")
_ERROR = ("#d7263d", "#f46036", "#b5179e", "#ff7b9c")


def series_colour(index: int, outcome: str) -> str:
    palette = _OK if outcome == "ok" else _ERROR
    return palette[index % len(palette)]


def minute_chart(traffic: Sequence[dict[str, Any]], first_minute: int, minutes: int = 60) -> tuple[Markup, list[Any]]:
    """Requests per minute stacked by deployment and outcome; returns the SVG and its legend.

    ``traffic`` rows: ``minute`` (epoch minute), ``deployment``, ``outcome``, ``requests``.
    """
    series = sorted({(r["deployment"], r["outcome"]) for r in traffic}, key=lambda s: (s[1] != "ok", s))
    deployments = sorted({d for d, _ in series})
    colours = {s: series_colour(deployments.index(s[0]), s[1]) for s in series}
    columns: dict[int, dict[tuple[str, str], int]] = {}
    totals: dict[tuple[str, str], int] = dict.fromkeys(series, 0)
    for row in traffic:
        key = (row["deployment"], row["outcome"])
        columns.setdefault(row["minute"] - first_minute, {})[key] = row["requests"]
        totals[key] += row["requests"]
    peak = max((sum(c.values()) for c in columns.values()), default=0)
    width, height, left, bottom = 1000, 190, 34, 18
    plot_w, plot_h = width - left - 4, height - bottom - 6
    step = plot_w / minutes
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-label="requests per minute, last hour">',
        f'<line x1="{left}" y1="{6 + plot_h}" x2="{width - 4}" y2="{6 + plot_h}" class="axis"/>',
        f'<text x="{left - 4}" y="12" class="tick" text-anchor="end">{peak}</text>',
        f'<text x="{left - 4}" y="{6 + plot_h}" class="tick" text-anchor="end">0</text>',
        f'<text x="{left}" y="{height - 3}" class="tick">-60 min</text>',
        f'<text x="{width - 4}" y="{height - 3}" class="tick" text-anchor="end">now</text>',
    ]
    for offset, counts in sorted(columns.items()):
        if not 0 <= offset < minutes:
            continue
        y = 6.0 + plot_h
        for key in series:
            n = counts.get(key, 0)
            if not n:
                continue
            h = plot_h * n / peak
            y -= h
            label = escape(f"{key[0]} {key[1]}: {n} at -{minutes - 1 - offset} min")
            parts.append(
                f'<rect x="{left + offset * step + 0.5:.1f}" y="{y:.1f}" width="{max(step - 1, 1):.1f}"'
                f' height="{h:.1f}" fill="{colours[key]}"><title>{label}</title></rect>'
            )
    parts.append("</svg>")
    legend = [{"deployment": d, "outcome": o, "colour": colours[(d, o)], "requests": totals[(d, o)]} for d, o in series]
    return Markup("".join(parts)), legend


def bar_chart(rows: Sequence[tuple[str, float | None]], unit: str, unpriced: Sequence[int] = ()) -> Markup:
    """Horizontal bars, one per ``(name, value)``; a None value (unknown price) is drawn as "n/a", and a
    bar whose ``unpriced`` count is not 0 (some calls of unknown price) says "+ n/a" after its figure."""
    if not rows:
        return Markup('<p class="empty">nothing recorded in this period</p>')
    peak = max((v for _, v in rows if v), default=0.0)
    row_h, label_w, width = 22, 136, 400
    height = row_h * len(rows) + 4
    parts = [f'<svg class="chart bars" viewBox="0 0 {width} {height}" role="img" aria-label="{escape(unit)}">']
    for i, (name, value) in enumerate(rows):
        y = 2 + i * row_h
        shown = name if len(name) <= 18 else name[:17] + "…"
        parts.append(
            f'<text x="{label_w - 6}" y="{y + 15}" class="label" text-anchor="end">{escape(shown)}'
            f"<title>{escape(name)}</title></text>"
        )
        if value is None:
            parts.append(f'<text x="{label_w + 4}" y="{y + 15}" class="value na">n/a</text>')
            continue
        bar_w = (width - label_w - 80) * (value / peak) if peak else 0.0
        text = f"${value:,.4f}" if unit == "USD" else f"{int(value):,}"
        if i < len(unpriced) and unpriced[i]:
            text += " + n/a"
        parts.append(
            f'<rect x="{label_w}" y="{y + 3}" width="{bar_w:.1f}" height="{row_h - 6}" class="bar"/>'
            f'<text x="{label_w + bar_w + 4:.1f}" y="{y + 15}" class="value">{escape(text)}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))
