"""One chart bar's figures, and the per-process cache of bars that are over.

A bar's counts are exact; its other sums may come from a sample of its
jobs (``sampled`` of ``done``), scaled up where a total is wanted.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, replace
from datetime import datetime

from graderqueue.queue.verdicts import FAILED, PASSED


@dataclass
class Bucket:
    start: datetime
    seconds: float  # elapsed part of the bucket (the last one is still running)
    length: float  # the bucket's full length
    done: int = 0
    sampled: int = 0
    fails: float = 0.0
    wait_sum: float = 0.0
    wait_max: float = 0.0
    grading_sum: float = 0.0
    cpu_ms: float = 0.0
    real_ms: float = 0.0
    success: int = 0
    # Sampled jobs whose result judged the submission (not a grader error):
    # the pass rate's denominator.
    judged: int = 0
    # Exact counts from the event log, by when they happened (not by the
    # jobs that finished in the bar): see activity.FAILED_ATTEMPT.
    failed_attempts: int = 0
    gave_up: int = 0

    def add_sampled(
        self,
        wait: float | None,
        grading: float | None,
        fails: int | None,
        cpu_ms: int | None,
        real_ms: int | None,
        verdict: str | None,
    ) -> None:
        """Add one sampled job; ``wait`` is None when it never started grading."""
        self.sampled += 1
        self.fails += fails or 0
        if wait is not None:
            # Clocks of two nodes may disagree a little: no negative durations.
            wait = max(0.0, float(wait))
            self.wait_sum += wait
            self.wait_max = max(self.wait_max, wait)
            self.grading_sum += max(0.0, float(grading))  # type: ignore[arg-type]
        self.cpu_ms += cpu_ms or 0
        self.real_ms += real_ms or 0
        self.success += 1 if verdict == PASSED else 0
        self.judged += 1 if verdict in (PASSED, FAILED) else 0

    @property
    def scale(self) -> float:
        """Sampled sums times this estimate the bucket's sums."""
        return self.done / self.sampled if self.sampled else 0.0

    @property
    def per_minute(self) -> float:
        # Over the whole bar, so the running bar fills up instead of jumping
        # to a high rate after its first job.
        return self.done * 60.0 / self.length

    @property
    def wait_avg(self) -> float:
        return self.wait_sum / self.sampled if self.sampled else 0.0

    @property
    def grading_avg(self) -> float:
        return self.grading_sum / self.sampled if self.sampled else 0.0

    @property
    def busy_servers(self) -> float:
        """Average number of jobs being graded at once (grading time per elapsed time)."""
        return self.grading_sum * self.scale / self.seconds if self.seconds > 0 else 0.0

    @property
    def queue_length(self) -> float:
        """Average number of jobs waiting, counted by when they finished."""
        return self.wait_sum * self.scale / self.seconds if self.seconds > 0 else 0.0

    @property
    def cpu_per_minute(self) -> float:
        return self.cpu_ms * self.scale / 1000.0 * 60.0 / self.length

    @property
    def real_per_minute(self) -> float:
        return self.real_ms * self.scale / 1000.0 * 60.0 / self.length

    @property
    def failures(self) -> float:
        """Attempts that failed in this bar, whether or not their job is done since."""
        return float(self.failed_attempts)

    @property
    def success_rate(self) -> float:
        """Passed among the judged results: grader errors and jobs without a result
        (cancelled) are neither passes nor failures."""
        return self.success / self.judged if self.judged else 0.0


class BucketCache:
    """Chart bars that are over, per process: they only change when cron deletes old jobs.

    Entries expire after ``max_age`` seconds so such deletions show up
    eventually. One cache per database (per app), never shared between two.
    Unlike :class:`graderqueue.cache.TTLCache` it computes nothing: the
    dashboard computes every missing bar of a chart in one pass, then stores
    those that are over.
    """

    def __init__(self, max_age: float = 3600.0, max_entries: int = 4096) -> None:
        self.max_age = max_age
        self.max_entries = max_entries
        self._entries: dict[tuple[int, datetime], tuple[float, Bucket]] = {}
        self._lock = threading.Lock()

    def get(self, tick: int, start: datetime) -> Bucket | None:
        """A copy of the bar of ``tick`` seconds starting at ``start``, if cached and fresh."""
        with self._lock:
            entry = self._entries.get((tick, start))
        if entry is None or time.monotonic() - entry[0] > self.max_age:
            return None
        return replace(entry[1])

    def put(self, tick: int, bucket: Bucket) -> None:
        with self._lock:
            if len(self._entries) >= self.max_entries:
                self._entries.clear()  # rare: a long-lived process; simplest bound
            self._entries[(tick, bucket.start)] = (time.monotonic(), replace(bucket))
