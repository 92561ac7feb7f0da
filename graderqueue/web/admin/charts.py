"""Charts as inline SVG, drawn on the server: no script and nothing to vendor.

Colours come from the stylesheet (classes ``s0``, ``s1``); every bar and
point has a ``<title>``, which browsers show on hover.

Drawn 400 units wide and shown at least about 348 px wide (a phone), so the
stylesheet's 14-unit text is never under 12 px on screen: a wider drawing
shrinks its text with it (it was 560 wide, its 10.5-unit labels 8 px).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape

from markupsafe import Markup

WIDTH, HEIGHT = 400, 240
LEFT, RIGHT, TOP, BOTTOM = 58, 10, 56, 28  # LEFT: the least; long axis labels widen it
# Width of one character of the axis and legend text (14 units), about.
CHAR_W = 8.0
PLOT_H = HEIGHT - TOP - BOTTOM


@dataclass(frozen=True)
class Series:
    name: str
    values: Sequence[float | None]  # None: no data for that bar
    kind: str = "line"  # or "bar"
    # Counts (failures, jobs): whole numbers in the tooltips. Otherwise up to
    # two decimals, trailing zeros dropped: "3 failures", never "3.00".
    whole: bool = False


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


def _label(value: float, unit: str = "") -> str:
    """An axis label, with the chart's unit (" s"): the y axis says what it counts."""
    text = f"{value / 1000:g}k" if value >= 1000 else f"{round(value, 6):g}"
    return f"{text}{unit}"


def tip_number(value: float, whole: bool = False) -> str:
    """A value as a tooltip says it: 1,234 / 2.5 / 0.25; counts always whole."""
    if whole or abs(value - round(value)) < 1e-9:
        return f"{round(value):,}"
    return f"{value:,.2f}".rstrip("0").rstrip(".")


def _time_label(moment: datetime, tick_seconds: int) -> str:
    if tick_seconds >= 3600 * 4:
        return moment.strftime("%m-%d %H:%M")
    return moment.strftime("%H:%M")


@dataclass(frozen=True)
class _Frame:
    """Where a bar's slot and a value fall on the plot, in SVG units."""

    count: int  # bars (slots) across
    top: float  # the value at the top of the plot
    left: float = LEFT  # where the plot starts: right of the y axis' labels

    @property
    def plot_w(self) -> float:
        return WIDTH - self.left - RIGHT

    @property
    def slot(self) -> float:
        return self.plot_w / self.count

    def x(self, i: float) -> float:
        return self.left + self.slot * (i + 0.5)

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
    widest = max(len(_label(top * step / 4, unit)) for step in range(5))
    frame = _Frame(count=max(len(starts), 1), top=top, left=max(LEFT, 10 + CHAR_W * widest))
    out = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        f'<text class="chart-title" x="4" y="18">{escape(title)}</text>',
        *_grid(frame, unit),
        *_time_axis(frame, starts, tick_seconds),
        *_legend(series),
    ]
    for index, s in enumerate(series):
        out.extend(_marks(frame, index, s, starts, unit))
    out.append(
        f'<line class="baseline" x1="{frame.left}" x2="{WIDTH - RIGHT}" '
        f'y1="{TOP + PLOT_H}" y2="{TOP + PLOT_H}"/>'
    )
    out.append("</svg>")
    return Markup("".join(out))


def _grid(frame: _Frame, unit: str) -> list[str]:
    """Horizontal grid lines with their value labels."""
    out = []
    for step in range(5):
        value = frame.top * step / 4
        gy = frame.y(value)
        out.append(
            f'<line class="grid" x1="{frame.left}" x2="{WIDTH - RIGHT}" '
            f'y1="{gy:.1f}" y2="{gy:.1f}"/>'
        )
        out.append(
            f'<text class="axis" x="{frame.left - 6}" y="{gy + 4:.1f}" text-anchor="end">'
            f"{_label(value, unit)}</text>"
        )
    return out


def _time_axis(frame: _Frame, starts: Sequence[datetime], tick_seconds: int) -> list[str]:
    """Start times under the bars, as many as fit without touching."""
    sample = _time_label(starts[0], tick_seconds) if starts else "00:00"
    fits = max(1, int(frame.plot_w // (len(sample) * CHAR_W + 14)))
    every = max(1, math.ceil(frame.count / fits))
    return [
        f'<text class="axis" x="{frame.x(i):.1f}" y="{HEIGHT - 8}" text-anchor="middle">'
        f"{_time_label(start, tick_seconds)}</text>"
        for i, start in enumerate(starts)
        if i % every == 0
    ]


def _legend(series: Sequence[Series]) -> list[str]:
    """The series' names on a line of their own under the title, each after a swatch
    of its colour (the name itself is in it too, at AA contrast)."""
    out = []
    legend_x = 4.0
    for index, s in enumerate(series):
        out.append(
            f'<rect class="swatch s{index}" x="{legend_x:.1f}" y="29" width="10" height="10"/>'
            f'<text class="legend s{index}" x="{legend_x + 14:.1f}" y="39">{escape(s.name)}</text>'
        )
        legend_x += 14 + CHAR_W * len(s.name) + 16
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
        tip = (
            f"{starts[i]:%Y-%m-%d %H:%M} UTC: {tip_number(value, s.whole)}{unit} {s.name}"
            if starts
            else ""
        )
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
