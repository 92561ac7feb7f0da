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


def line_chart(
    title: str,
    starts: Sequence[datetime],
    series: Sequence[Series],
    *,
    tick_seconds: int,
    unit: str = "",
) -> Markup:
    """An SVG chart of one value per bucket for each series; bars first, lines on top."""
    count = max(len(starts), 1)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    top = nice_ceiling(max((v for s in series for v in s.values if v is not None), default=0.0))
    slot = plot_w / count

    def x(i: float) -> float:
        return LEFT + slot * (i + 0.5)

    def y(v: float) -> float:
        return TOP + plot_h * (1 - min(v, top) / top)

    out = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        f'<text class="chart-title" x="{LEFT}" y="16">{escape(title)}</text>',
    ]
    for step in range(5):  # horizontal grid with value labels
        value = top * step / 4
        gy = y(value)
        out.append(
            f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{gy:.1f}" y2="{gy:.1f}"/>'
        )
        out.append(
            f'<text class="axis" x="{LEFT - 6}" y="{gy + 4:.1f}" text-anchor="end">'
            f"{_label(value)}</text>"
        )
    every = max(1, math.ceil(count / 6))
    for i, start in enumerate(starts):
        if i % every == 0:
            out.append(
                f'<text class="axis" x="{x(i):.1f}" y="{HEIGHT - 8}" text-anchor="middle">'
                f"{_time_label(start, tick_seconds)}</text>"
            )
    legend_x = WIDTH - RIGHT
    for index, s in reversed(list(enumerate(series))):
        label = escape(s.name)
        out.append(
            f'<text class="legend s{index}" x="{legend_x}" y="16" text-anchor="end">{label}</text>'
        )
        legend_x -= 8 + 6.5 * len(s.name)
    for index, s in enumerate(series):
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
            if s.kind == "bar":
                bar_w = max(1.0, slot * 0.7)
                dots.append(
                    f'<rect class="bar s{index}" x="{x(i) - bar_w / 2:.1f}" y="{y(value):.1f}" '
                    f'width="{bar_w:.1f}" height="{TOP + plot_h - y(value):.1f}">'
                    f"<title>{escape(tip)}</title></rect>"
                )
            else:
                points.append(f"{x(i):.1f},{y(value):.1f}")
                dots.append(
                    f'<circle class="dot s{index}" cx="{x(i):.1f}" cy="{y(value):.1f}" r="2.5">'
                    f"<title>{escape(tip)}</title></circle>"
                )
        out.extend(lines + dots)
    out.append(
        f'<line class="baseline" x1="{LEFT}" x2="{WIDTH - RIGHT}" '
        f'y1="{TOP + plot_h}" y2="{TOP + plot_h}"/>'
    )
    out.append("</svg>")
    return Markup("".join(out))
