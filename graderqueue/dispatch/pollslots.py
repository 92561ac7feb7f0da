"""How many long-polls may wait at once in one worker process.

A waiting poll holds one of the worker's threads for up to ``poll_wait_sec``.
Without a bound, one grading server (broken or hostile) opening many polls
at once holds every thread, and platform requests and result posts wait
behind it. So a poll may only wait when its server has fewer than
``max_polls_per_server`` polls waiting here and the worker fewer than
``max_waiting_polls`` in all; otherwise it tries one claim and answers at
once. The bounds are per worker process: see docs/SIZING.md.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class PollSlots:
    def __init__(self, per_server: int, total: int) -> None:
        self.per_server = per_server
        self.total = total
        self._lock = threading.Lock()
        self._by_server: dict[int, int] = {}
        self._waiting = 0

    @contextmanager
    def hold(self, server_id: int) -> Iterator[bool]:
        """Yields True while a slot to wait in is held, False when none is free."""
        with self._lock:
            mine = self._by_server.get(server_id, 0)
            granted = mine < self.per_server and self._waiting < self.total
            if granted:
                self._by_server[server_id] = mine + 1
                self._waiting += 1
        try:
            yield granted
        finally:
            if granted:
                with self._lock:
                    self._waiting -= 1
                    left = self._by_server[server_id] - 1
                    if left:
                        self._by_server[server_id] = left
                    else:
                        # Only servers with a poll waiting take memory here.
                        del self._by_server[server_id]

    def waiting(self, server_id: int | None = None) -> int:
        with self._lock:
            if server_id is None:
                return self._waiting
            return self._by_server.get(server_id, 0)
