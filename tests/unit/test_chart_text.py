"""What the dashboard's charts say: whole counts in tooltips, units on the y axis, and
axis labels that never run into each other or off the drawing."""

from __future__ import annotations

import itertools
import re
from datetime import datetime, timedelta

from graderqueue.web.admin.charts import CHAR_W, WIDTH, Series, line_chart, tip_number

STARTS = [datetime(2026, 12, 6, 8, 0) + timedelta(minutes=2 * i) for i in range(30)]


def test_tooltips_say_counts_as_whole_numbers():
    assert tip_number(3.0) == "3" and tip_number(0.0) == "0" and tip_number(1234.0) == "1,234"
    assert tip_number(2.5) == "2.5" and tip_number(0.125) == "0.12"
    assert tip_number(2.6, whole=True) == "3"
    chart = line_chart(
        "Failed attempts", STARTS, [Series("failures", [3.0] * 30, "bar")], tick_seconds=120
    )
    assert "UTC: 3 failures</title>" in chart and "3.00" not in chart


def test_the_y_axis_carries_the_unit_and_its_labels_fit():
    values = [0.0075 * (i % 3) for i in range(30)]
    chart = str(
        line_chart("Time used", STARTS, [Series("CPU", values)], tick_seconds=120, unit=" s")
    )
    labels = re.findall(
        r'<text class="axis" x="([0-9.]+)" y="[0-9.]+" text-anchor="end">([^<]+)</text>', chart
    )
    assert [text for _x, text in labels][-1].endswith(" s")
    for x, text in labels:
        assert float(x) - CHAR_W * len(text) >= 0, text  # not cut at the left edge
    times = re.findall(
        r'<text class="axis" x="([0-9.]+)" y="[0-9.]+" text-anchor="middle">([^<]+)</text>', chart
    )
    xs = [float(x) for x, _t in times]
    width = CHAR_W * len(times[0][1])
    assert all(b - a >= width for a, b in itertools.pairwise(xs)) and xs[-1] <= WIDTH
