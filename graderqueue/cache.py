"""A small per-process cache for values that may be a little old.

Used on hot paths for what operators change rarely (platforms and their keys,
tags and server types, the list of listening processes): a change made with
the CLI or the interface takes effect within the cache's time-to-live. The
admin interface keeps its costly task statistics in one too, each answer
with a time-to-live of its own.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Any, TypeGuard


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

    def get(
        self,
        key: Hashable,
        compute: Callable[[], Any],
        *,
        ttl: float | None = None,
        refresh: bool = False,
    ) -> Any:
        """The value kept for ``key`` if younger than ``ttl`` (default: the cache's),
        else a new one from ``compute``; ``refresh`` computes a new one anyway."""
        ttl = self.ttl if ttl is None else ttl
        entry = self._values.get(key)
        if not refresh and _is_fresh(entry, ttl):
            return entry[1]
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            # Another request may have computed it while this one waited.
            entry = self._values.get(key)
            if not refresh and _is_fresh(entry, ttl):
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
        return entry[1] if _is_fresh(entry, self.ttl) else None

    def drop(self, key: Hashable) -> None:
        with self._guard:
            self._values.pop(key, None)

    def clear(self) -> None:
        with self._guard:
            self._values.clear()


def _is_fresh(entry: tuple[float, Any] | None, ttl: float) -> TypeGuard[tuple[float, Any]]:
    """A kept (time kept, value) younger than ``ttl`` seconds."""
    return entry is not None and time.monotonic() - entry[0] < ttl
