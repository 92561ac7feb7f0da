"""The time windows an operator picks on the dashboard and statistics pages.

Each window is split into chart bars of ``tick`` seconds; the same windows
serve the task statistics, which have no bars.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Window:
    key: str
    label: str
    seconds: int
    tick: int  # seconds per chart bar

    @property
    def buckets(self) -> int:
        return self.seconds // self.tick

    @property
    def tick_label(self) -> str:
        hours, minutes = divmod(self.tick // 60, 60)
        if hours:
            return f"{hours} hour{'s' if hours > 1 else ''}"
        return f"{minutes} minute{'s' if minutes > 1 else ''}"


# The original panel's statistics intervals, with ticks giving 15-48 bars.
WINDOWS: tuple[Window, ...] = (
    Window("15m", "15 minutes", 15 * 60, 60),
    Window("1h", "1 hour", 3600, 2 * 60),
    Window("3h", "3 hours", 3 * 3600, 5 * 60),
    Window("12h", "12 hours", 12 * 3600, 20 * 60),
    Window("1d", "1 day", 86400, 30 * 60),
    Window("1w", "1 week", 7 * 86400, 4 * 3600),
    Window("2w", "2 weeks", 14 * 86400, 8 * 3600),
)


def window_by_key(key: str | None, default: str = "1h") -> Window:
    """The window named ``key``, else the ``default`` one (an unknown key is no error)."""
    for window in WINDOWS:
        if window.key == key:
            return window
    return window_by_key(default)
