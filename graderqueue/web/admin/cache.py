"""A small per-process cache for answers that are costly and may be a little old."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from datetime import datetime
from typing import Any

from flask import current_app

from graderqueue.admin.buckets import BucketCache
from graderqueue.store.models import utcnow


class TTLCache:
    """Values computed by a function, kept for a time-to-live given at each lookup.

    One lock per key: two requests for the same missing answer compute it
    once (the second waits), while different keys compute in parallel.
    """

    def __init__(self, max_entries: int = 64) -> None:
        self.max_entries = max_entries
        self._values: dict[Hashable, tuple[float, datetime, Any]] = {}
        self._locks: dict[Hashable, threading.Lock] = {}
        self._guard = threading.Lock()

    def get(
        self,
        key: Hashable,
        ttl: float,
        compute: Callable[[], Any],
        *,
        refresh: bool = False,
    ) -> tuple[Any, datetime]:
        """(value, when it was computed); recomputed if older than ``ttl`` seconds."""
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            entry = self._values.get(key)
            if entry is not None and not refresh and time.monotonic() - entry[0] < ttl:
                return entry[2], entry[1]
            value = compute()
            computed_at = utcnow()
            with self._guard:
                if len(self._values) >= self.max_entries:
                    oldest = min(self._values, key=lambda k: self._values[k][0])
                    del self._values[oldest]
                self._values[key] = (time.monotonic(), computed_at, value)
            return value, computed_at

    def clear(self) -> None:
        with self._guard:
            self._values.clear()


class AdminState:
    """What the interface keeps per app (so per database): caches of costly figures."""

    KEY = "graderqueue_admin"

    def __init__(self) -> None:
        self.buckets = BucketCache()
        self.task_stats = TTLCache(max_entries=64)


def state() -> AdminState:
    return current_app.extensions[AdminState.KEY]
