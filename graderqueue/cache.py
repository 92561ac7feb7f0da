"""A small per-process cache for lookups that may be a few seconds old.

Used on hot paths for what operators change rarely (platforms and their keys,
tags and server types, the list of listening processes): a change made with
the CLI or the interface takes effect within the cache's time-to-live.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Any


class TTLCache:
    """Values computed by a function and kept for ``ttl`` seconds.

    One lock per key: concurrent requests for the same missing value compute
    it once, while different keys compute in parallel.
    """

    def __init__(self, ttl: float, max_entries: int = 1024) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._values: dict[Hashable, tuple[float, Any]] = {}
        self._locks: dict[Hashable, threading.Lock] = {}
        self._guard = threading.Lock()

    def get(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        entry = self._values.get(key)
        if entry is not None and time.monotonic() - entry[0] < self.ttl:
            return entry[1]
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            entry = self._values.get(key)
            if entry is not None and time.monotonic() - entry[0] < self.ttl:
                return entry[1]
            value = compute()
            with self._guard:
                if len(self._values) >= self.max_entries:
                    self._values.clear()
                    self._locks = {key: lock}
                self._values[key] = (time.monotonic(), value)
            return value

    def peek(self, key: Hashable) -> Any | None:
        """The value if it is cached and fresh, else None; never computes."""
        entry = self._values.get(key)
        if entry is not None and time.monotonic() - entry[0] < self.ttl:
            return entry[1]
        return None

    def drop(self, key: Hashable) -> None:
        with self._guard:
            self._values.pop(key, None)

    def clear(self) -> None:
        with self._guard:
            self._values.clear()
