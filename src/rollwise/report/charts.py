"""Small inline-SVG charts for reports: no JavaScript, no external fonts or URLs, so a report opens
offline, prints, and survives being attached to a ticket.

Lines break where a value is missing (no data is not zero), the x axis is time since the rollout
began, and vertical markers show when traffic moved, so a reader can see a regression line up (or
not) with a step change.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from html import escape

PALETTE = {"canary": "#d9480f", "baseline": "#1c7ed6", "weight": "#7048e8", "grid": "#e9ecef",
           "axis": "#868e96", "text": "#343a40", "marker": "#adb5bd", "bad": "#e03131"}


@dataclass(frozen=True)
class Series:
    name: str
    points: Sequence[tuple[float, float | None]]  # (x seconds, y or None for no data)
    color: str
    dashed: bool = False
    step: bool = False  # hold each value until the next point (weights)


@dataclass(frozen=True)
class Marker:
    x: float
    label: str
    color: str = PALETTE["marker"]


@dataclass
class Chart:
    title: str
    series: list[Series]
    y_format: Callable[[float], str] = field(default=lambda v: f"{v:g}")
    markers: list[Marker] = field(default_factory=list)
    width: int = 760
    height: int = 240
    y_min: float | None = 0.0
    y_max: float | None = None
    x_start: float | None = 0.0  # seconds since the rollout began; None: the first point
    x_end: float | None = None


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering [low, high] (1-2-5 steps)."""
    if not math.isfinite(low) or not math.isfinite(high):
        return [0.0, 1.0]
    if high <= low:
        high = low + (abs(low) or 1.0)
    raw = (high - low) / max(1, count)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    start = math.floor(low / step) * step
    ticks = []
    value = start
    while value <= high + step * 1e-9:
        ticks.append(round(value, 12))
        value += step
    if ticks[-1] < high:
        ticks.append(round(value, 12))
    return ticks


_TIME_STEPS = (1, 2, 5, 10, 15, 20, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)


def time_ticks(low: float, high: float, count: int = 6) -> list[float]:
    """Tick times on clock-friendly steps (10 s, 1 min, 15 min, 1 h …) covering [low, high]."""
    span = max(high - low, 1.0)
    step = next((s for s in _TIME_STEPS if span / s <= count), _TIME_STEPS[-1] * math.ceil(span / 86400 / count))
    first = math.ceil(low / step) * step
    return [first + i * step for i in range(int((high - first) // step) + 1)]


def format_clock(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds >= 3600:
        return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}"
    return f"{int(seconds // 60)}:{int(seconds % 60):02d}"


def render(chart: Chart) -> str:
    """The chart as an ``<svg>`` element with explicit width/height (so it has a size everywhere)."""
    left, right, top, bottom = 64, 16, 34, 30
    width, height = chart.width, chart.height
    plot_w, plot_h = width - left - right, height - top - bottom
    xs = [x for s in chart.series for x, _ in s.points] + [m.x for m in chart.markers]
    ys = [y for s in chart.series for _, y in s.points if y is not None and math.isfinite(y)]
    x_lo = chart.x_start if chart.x_start is not None else (min(xs) if xs else 0.0)
    x_hi = max([*xs, chart.x_end or 0.0]) if xs else 1.0
    if x_hi <= x_lo:
        x_hi = x_lo + 1.0
    y_lo = chart.y_min if chart.y_min is not None else (min(ys) if ys else 0.0)
    y_hi = chart.y_max if chart.y_max is not None else (max(ys) if ys else 1.0)
    if y_hi <= y_lo:
        y_hi = y_lo + (abs(y_lo) or 1.0)
    y_ticks = nice_ticks(y_lo, y_hi * 1.05 if chart.y_max is None else y_hi)
    y_lo, y_hi = y_ticks[0], y_ticks[-1]

    def px(x: float) -> float:
        return left + (x - x_lo) / (x_hi - x_lo) * plot_w

    def py(y: float) -> float:
        return top + plot_h - (y - y_lo) / (y_hi - y_lo) * plot_h

    out = [
        f'<svg class="chart" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(chart.title)}">',
        f"<title>{escape(chart.title)}</title>",
        f'<text x="{left}" y="18" font-size="13" font-weight="600" fill="{PALETTE["text"]}">'
        f"{escape(chart.title)}</text>",
    ]
    for tick in y_ticks:
        y = py(tick)
        out.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="{PALETTE["grid"]}"/>')
        out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" font-size="11" text-anchor="end" '
                   f'fill="{PALETTE["axis"]}">{escape(chart.y_format(tick))}</text>')
    for tick in time_ticks(x_lo, x_hi):
        x = px(tick)
        if x < left - 0.5:
            continue
        if x > left + plot_w + 0.5:
            break
        out.append(f'<text x="{x:.1f}" y="{height - 10}" font-size="11" text-anchor="middle" '
                   f'fill="{PALETTE["axis"]}">{format_clock(tick)}</text>')
    out.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{top + plot_h}" y2="{top + plot_h}" '
               f'stroke="{PALETTE["axis"]}"/>')
    for marker in chart.markers:
        x = px(marker.x)
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{top + plot_h}" stroke="{marker.color}" '
                   'stroke-dasharray="3 3"/>')
        near_end = x > left + plot_w - 8 * len(marker.label)
        anchor = f'x="{x - 3:.1f}" text-anchor="end"' if near_end else f'x="{x + 3:.1f}"'
        out.append(f'<text {anchor} y="{top + 10}" font-size="10" fill="{marker.color}">'
                   f"{escape(marker.label)}</text>")
    for series in chart.series:
        for path in _paths(series, px, py, x_hi):
            dash = ' stroke-dasharray="6 4"' if series.dashed else ""
            out.append(f'<path d="{path}" fill="none" stroke="{series.color}" stroke-width="2"{dash} '
                       'stroke-linejoin="round"/>')
        lone = _isolated(series)
        for x, y in lone:
            out.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="2.5" fill="{series.color}"/>')
    legend_x = left + plot_w
    for series in reversed(chart.series):
        label = escape(series.name)
        legend_x -= 14 + 7 * len(series.name) + 12
        out.append(f'<rect x="{legend_x:.0f}" y="9" width="10" height="10" rx="2" fill="{series.color}"/>')
        out.append(f'<text x="{legend_x + 14:.0f}" y="18" font-size="11" fill="{PALETTE["text"]}">{label}</text>')
    if not ys:
        out.append(f'<text x="{left + plot_w / 2:.0f}" y="{top + plot_h / 2:.0f}" font-size="12" '
                   f'text-anchor="middle" fill="{PALETTE["axis"]}">no data</text>')
    out.append("</svg>")
    return "\n".join(out)


def _paths(series: Series, px: Callable[[float], float], py: Callable[[float], float], x_end: float) -> list[str]:
    paths: list[str] = []
    current: list[str] = []
    points = list(series.points)
    for i, (x, y) in enumerate(points):
        if y is None or not math.isfinite(y):
            if len(current) > 1:
                paths.append(" ".join(current))
            current = []
            continue
        if series.step and current:
            current.append(f"L{px(x):.1f},{float(current[-1].split(',')[1]):.1f}")
        current.append(f"{'L' if current else 'M'}{px(x):.1f},{py(y):.1f}")
        if series.step and i == len(points) - 1:
            current.append(f"L{px(x_end):.1f},{py(y):.1f}")
    if len(current) > 1:
        paths.append(" ".join(current))
    return paths


def _isolated(series: Series) -> list[tuple[float, float]]:
    """Points with no neighbour to draw a line to: shown as dots so a single window is visible."""
    points = list(series.points)
    lone = []
    for i, (x, y) in enumerate(points):
        if y is None or series.step:
            continue
        before = points[i - 1][1] if i > 0 else None
        after = points[i + 1][1] if i + 1 < len(points) else None
        if before is None and after is None:
            lone.append((x, y))
    return lone
