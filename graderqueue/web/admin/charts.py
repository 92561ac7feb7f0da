"""Charts as inline SVG, drawn on the server: no script and nothing to vendor.

Colours come from the stylesheet (classes ``s0``, ``s1``); every bar and
point has a ``<title>``, which browsers show on hover.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape

from markupsafe import Markup

WIDTH, HEIGHT = 560, 210
LEFT, RIGHT, TOP, BOTTOM = 48, 12, 28, 26
PLOT_W, PLOT_H = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM


@dataclass(frozen=True)
class Series:
    name: str
    values: Sequence[float | None]  # None: no data for that bar
    kind: str = "line"  # or "bar"


def nice_ceiling(value: float, steps: int = 4) -> float:
    """An axis top of ``steps`` round steps (1, 2, 2.5 or 5 times a power of ten) >= value."""
    if value <= 0:
        return 1.0
    raw = value / steps
    power = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 2.5, 5, 10):
        if factor * power * steps >= value * (1 - 1e-9):
            return factor * power * steps
    return 10 * power * steps


def _label(value: float) -> str:
    if value >= 1000:
        return f"{value / 1000:g}k"
    return f"{round(value, 6):g}"


def _time_label(moment: datetime, tick_seconds: int) -> str:
    if tick_seconds >= 3600 * 4:
        return moment.strftime("%m-%d %H:%M")
    return moment.strftime("%H:%M")


@dataclass(frozen=True)
class _Frame:
    """Where a bar's slot and a value fall on the plot, in SVG units."""

    count: int  # bars (slots) across
    top: float  # the value at the top of the plot

    @property
    def slot(self) -> float:
        return PLOT_W / self.count

    def x(self, i: float) -> float:
        return LEFT + self.slot * (i + 0.5)

    def y(self, v: float) -> float:
        return TOP + PLOT_H * (1 - min(v, self.top) / self.top)


def line_chart(
    title: str,
    starts: Sequence[datetime],
    series: Sequence[Series],
    *,
    tick_seconds: int,
    unit: str = "",
) -> Markup:
    """An SVG chart of one value per bucket for each series; bars first, lines on top."""
    top = nice_ceiling(max((v for s in series for v in s.values if v is not None), default=0.0))
    frame = _Frame(count=max(len(starts), 1), top=top)
    out = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        f'<text class="chart-title" x="{LEFT}" y="16">{escape(title)}</text>',
        *_grid(frame),
        *_time_axis(frame, starts, tick_seconds),
        *_legend(series),
    ]
    for index, s in enumerate(series):
        out.extend(_marks(frame, index, s, starts, unit))
    out.append(
        f'<line class="baseline" x1="{LEFT}" x2="{WIDTH - RIGHT}" '
        f'y1="{TOP + PLOT_H}" y2="{TOP + PLOT_H}"/>'
    )
    out.append("</svg>")
    return Markup("".join(out))


def _grid(frame: _Frame) -> list[str]:
    """Horizontal grid lines with their value labels."""
    out = []
    for step in range(5):
        value = frame.top * step / 4
        gy = frame.y(value)
        out.append(
            f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{gy:.1f}" y2="{gy:.1f}"/>'
        )
        out.append(
            f'<text class="axis" x="{LEFT - 6}" y="{gy + 4:.1f}" text-anchor="end">'
            f"{_label(value)}</text>"
        )
    return out


def _time_axis(frame: _Frame, starts: Sequence[datetime], tick_seconds: int) -> list[str]:
    """Start times under the bars, at most about six of them."""
    every = max(1, math.ceil(frame.count / 6))
    return [
        f'<text class="axis" x="{frame.x(i):.1f}" y="{HEIGHT - 8}" text-anchor="middle">'
        f"{_time_label(start, tick_seconds)}</text>"
        for i, start in enumerate(starts)
        if i % every == 0
    ]


def _legend(series: Sequence[Series]) -> list[str]:
    """The series' names, right-aligned along the top, in the series' colours."""
    out = []
    legend_x = WIDTH - RIGHT
    for index, s in reversed(list(enumerate(series))):
        label = escape(s.name)
        out.append(
            f'<text class="legend s{index}" x="{legend_x}" y="16" text-anchor="end">{label}</text>'
        )
        legend_x -= 8 + 6.5 * len(s.name)
    return out


def _marks(
    frame: _Frame, index: int, s: Series, starts: Sequence[datetime], unit: str
) -> list[str]:
    """One series' bars, or its lines and dots, each with a hover title."""
    lines: list[str] = []  # drawn first, under the dots
    dots: list[str] = []
    points: list[str] = []
    for i, value in enumerate([*s.values, None]):
        if value is None:
            # No data for this bar (nothing finished): a gap, not a fall to zero.
            if len(points) > 1:
                lines.append(f'<polyline class="line s{index}" points="{" ".join(points)}"/>')
            points = []
            continue
        tip = f"{starts[i]:%Y-%m-%d %H:%M} UTC: {value:,.2f}{unit} {s.name}" if starts else ""
        x, y = frame.x(i), frame.y(value)
        if s.kind == "bar":
            bar_w = max(1.0, frame.slot * 0.7)
            dots.append(
                f'<rect class="bar s{index}" x="{x - bar_w / 2:.1f}" y="{y:.1f}" '
                f'width="{bar_w:.1f}" height="{TOP + PLOT_H - y:.1f}">'
                f"<title>{escape(tip)}</title></rect>"
            )
        else:
            points.append(f"{x:.1f},{y:.1f}")
            dots.append(
                f'<circle class="dot s{index}" cx="{x:.1f}" cy="{y:.1f}" r="2.5">'
                f"<title>{escape(tip)}</title></circle>"
            )
    return lines + dots
