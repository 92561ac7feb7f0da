"""What the admin interface keeps per app, so per database: caches of costly figures."""

from __future__ import annotations

from flask import current_app

from graderqueue.admin.buckets import BucketCache
from graderqueue.admin.task_statistics import ANSWER_TTL_MAX
from graderqueue.cache import TTLCache


class AdminState:
    """The caches of one app: never shared between two databases."""

    KEY = "graderqueue_admin"

    def __init__(self) -> None:
        self.buckets = BucketCache()
        # Each answer is looked up with its own time-to-live (answer_ttl), at most this.
        self.task_stats = TTLCache(ttl=ANSWER_TTL_MAX, max_entries=64)


def state() -> AdminState:
    return current_app.extensions[AdminState.KEY]
