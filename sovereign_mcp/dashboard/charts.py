"""Small inline SVG bar charts, built on the server (no chart library, nothing fetched by the browser).

:func:`bar_chart` draws one bar per day (oldest left) with the largest value labelled; :func:`day_series`
turns unix-second events into per-day totals over the last ``days`` days (UTC days, the ``YYYY-MM-DD`` keys
the panels use). Every text put into the SVG is XML-escaped.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from xml.sax.saxutils import escape, quoteattr


def day_key(ts: float) -> str:
    """The UTC day of unix time ``ts`` as ``YYYY-MM-DD``."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")


def last_days(days: int, now: float) -> list[str]:
    """The ``days`` UTC day keys ending with the day of ``now``, oldest first.

    Raises:
        ValueError: ``days`` below 1.
    """
    if days < 1:
        raise ValueError("days must be at least 1")
    today = datetime.fromtimestamp(now, UTC).date()
    return [(today - timedelta(days=back)).strftime("%Y-%m-%d") for back in range(days - 1, -1, -1)]


def day_series(points: Iterable[tuple[float, float]], days: int, now: float) -> list[tuple[str, float]]:
    """Totals per UTC day of ``(unix_ts, value)`` points over the last ``days`` days, oldest first; days
    without points are 0 and points outside the window are left out."""
    keys = last_days(days, now)
    totals = dict.fromkeys(keys, 0.0)
    for ts, value in points:
        key = day_key(ts)
        if key in totals:
            totals[key] += value
    return [(key, totals[key]) for key in keys]


def bar_chart(series: Sequence[tuple[str, float]], *, title: str, unit: str = "", width: int = 320,
              height: int = 90, color: str = "#3b82f6") -> str:
    """An ``<svg>`` element: one bar per ``(label, value)``, a baseline, the maximum written top-left and
    each bar's label and value in its ``<title>`` (hover). ``title`` becomes the accessible name.

    Sizes are CSS pixels; negative values are drawn as 0.

    Raises:
        ValueError: ``width`` or ``height`` too small to draw into (< 40 / < 30).
    """
    if width < 40 or height < 30:
        raise ValueError("chart too small: width >= 40 and height >= 30 pixels")
    top, bottom = 14, 12
    plot = height - top - bottom
    peak = max((max(v, 0.0) for _, v in series), default=0.0)
    n = max(len(series), 1)
    slot = (width - 2) / n
    bar = max(slot * 0.75, 1.0)
    unit_text = f" {unit}" if unit else ""
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" aria-label={quoteattr(title)}>',
             f"<title>{escape(title)}</title>",
             f'<text x="2" y="10" class="chart-max">max {_fmt(peak)}{escape(unit_text)}</text>',
             f'<line x1="0" y1="{top + plot}" x2="{width}" y2="{top + plot}" class="chart-axis"/>']
    for i, (label, value) in enumerate(series):
        h = 0.0 if peak <= 0 else plot * max(value, 0.0) / peak
        x = 1 + i * slot + (slot - bar) / 2
        y = top + plot - h
        parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{max(h, 0.0):.1f}" fill="{color}">'
                     f"<title>{escape(label)}: {_fmt(value)}{escape(unit_text)}</title></rect>")
    if series:
        parts.append(f'<text x="1" y="{height - 1}" class="chart-label">{escape(series[0][0][5:])}</text>')
        parts.append(f'<text x="{width - 1}" y="{height - 1}" class="chart-label" text-anchor="end">'
                     f"{escape(series[-1][0][5:])}</text>")
    parts.append("</svg>")
    return "".join(parts)


def _fmt(value: float) -> str:
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"
