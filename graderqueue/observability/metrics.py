"""Every metric of the queue, defined once, and the one-line calls that count them.

Counters and histograms count what this process did: the web views, the
delivery worker and the waker call the functions below after their work is
committed. Under gunicorn each worker is a process of its own, so with
``PROMETHEUS_MULTIPROC_DIR`` set (examples/gunicorn.conf.py sets it up)
prometheus_client keeps every process's values in files there and a scrape
of any worker adds them all up. Without it (one process: ``graderqueue
serve``, tests) the values live in this process.

What describes the shared queue (waiting jobs, servers, the delivery
backlog) is not counted here: :mod:`~graderqueue.observability.queue_gauges`
reads it from the database at each scrape, so every node reports the same.

A metric must never break the work it counts: each function logs a failure
once and carries on.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, ParamSpec

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)
from prometheus_client.registry import Collector

from graderqueue.errors import ConfigError
from graderqueue.observability import job_facts

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from graderqueue.config import Settings
    from graderqueue.delivery.outbox import Finished, Recorded
    from graderqueue.identity.api_callers import ApiCaller
    from graderqueue.queue.api_submit import Submitted
    from graderqueue.queue.claim import Claimed
    from graderqueue.queue.complete import Completion
    from graderqueue.queue.listing import JobFilter
    from graderqueue.registry.view import RegistryView
    from graderqueue.store.db import Database

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# The classic text format, which every Prometheus since 2.0 reads.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# The multiprocess files keep no creation times: a single process shows none
# either, so a scrape reads the same whichever way the app runs.
disable_created_metrics()
# This process's metrics; a scrape in multiprocess mode reads the files instead.
REGISTRY = CollectorRegistry(auto_describe=True)

JOBS_RECEIVED = Counter(
    "graderqueue_jobs_received",
    "Jobs accepted from senders (a job sent again under its jobusertaskid counts again).",
    ["platform"],
    registry=REGISTRY,
)
JOBS_HANDED_OUT = Counter(
    "graderqueue_jobs_handed_out",
    "Jobs handed to a grading server, by the server's type and the job's platform.",
    ["type", "platform"],
    registry=REGISTRY,
)
JOBS_COMPLETED = Counter(
    "graderqueue_jobs_completed",
    "Results stored (errorcode 0 or 1): the job is done.",
    ["type", "platform"],
    registry=REGISTRY,
)
JOBS_FAILED = Counter(
    "graderqueue_jobs_failed",
    "Results that reported a failure (another errorcode): the job went back to the queue.",
    ["type", "platform"],
    registry=REGISTRY,
)
JOBS_CANCELLED = Counter(
    "graderqueue_jobs_cancelled",
    "Jobs cancelled through the JSON API.",
    ["platform"],
    registry=REGISTRY,
)
DISPATCH_LATENCY = Histogram(
    "graderqueue_dispatch_latency_seconds",
    "From a job's arrival to its first hand-out, by the type of the server that took it.",
    ["type"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
    registry=REGISTRY,
)
JOB_DURATION = Histogram(
    "graderqueue_job_duration_seconds",
    "From a job's hand-out to its result (grading start to end), for done jobs.",
    ["type"],
    buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600),
    registry=REGISTRY,
)
DELIVERY_ATTEMPTS = Counter(
    "graderqueue_delivery_attempts",
    "Posts of a result to a platform's return URL.",
    ["platform"],
    registry=REGISTRY,
)
DELIVERY_FAILURES = Counter(
    "graderqueue_delivery_failures",
    "Posts of a result that the platform did not accept (retried with backoff).",
    ["platform"],
    registry=REGISTRY,
)
DELIVERIES_GIVEN_UP = Counter(
    "graderqueue_deliveries_given_up",
    "Results whose delivery was given up (delivery_give_up_after_sec).",
    ["platform"],
    registry=REGISTRY,
)
WAKEUPS_SENT = Counter(
    "graderqueue_wakeups_sent", "UDP wake-ups sent to grading servers.", registry=REGISTRY
)
WAKEUPS_FAILED = Counter(
    "graderqueue_wakeups_failed",
    "Wake-ups that got no 'ok' from the server.",
    registry=REGISTRY,
)

P = ParamSpec("P")
_complained: set[str] = set()


def _never_fails(fn: Callable[P, None]) -> Callable[P, None]:
    @functools.wraps(fn)
    def counting(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            fn(*args, **kwargs)
        except Exception:
            if fn.__name__ not in _complained:  # once: a broken metric must not flood the log
                _complained.add(fn.__name__)
                log.warning(
                    "metrics: %s failed; the work itself is done", fn.__name__, exc_info=True
                )

    return counting


# -- the calls, one line each where the work is done ---------------------------


@_never_fails
def jobs_received(platform_id: int | None, name: str, count: int) -> None:
    """``count`` jobs queued for a sender (``name`` is a platform's when ``platform_id``)."""
    if count > 0:
        JOBS_RECEIVED.labels(platform=name if platform_id is not None else "").inc(count)


@_never_fails
def api_jobs_received(who: ApiCaller, done: Submitted) -> None:
    """POST /api/v1/jobs: the jobs it queued (a replayed answer queued none)."""
    if not done.replayed:
        count = len(done.answer["ids"]) if "ids" in done.answer else 1
        jobs_received(who.platform_id, who.name, count)


@_never_fails
def handed_out(registry: RegistryView, job: Claimed) -> None:
    """A poll got ``job``: count it, and its wait if this is its first hand-out."""
    type_name = registry.type_name(job.type_id)
    JOBS_HANDED_OUT.labels(type=type_name, platform=registry.platform_name(job.platform_id)).inc()
    if job.waited_sec is not None:
        DISPATCH_LATENCY.labels(type=type_name).observe(job.waited_sec)


@_never_fails
def result_taken(registry: RegistryView, type_id: int, done: Completion) -> None:
    """A result was stored (the job is done) or sent the job back."""
    counter = JOBS_COMPLETED if done.accepted else JOBS_FAILED
    type_name = registry.type_name(type_id)
    counter.labels(type=type_name, platform=registry.platform_name(done.platform_id)).inc()
    if done.duration_sec is not None:
        JOB_DURATION.labels(type=type_name).observe(done.duration_sec)


@_never_fails
def jobs_cancelled(db: Database, action: str, job_ids: Sequence[int]) -> None:
    """After an action on jobs by id: count them if it was a cancel."""
    if action != "cancel" or not job_ids:
        return
    with db.reading() as session:
        by_platform = job_facts.platforms_of(session, job_ids)
    for platform, count in by_platform.items():
        JOBS_CANCELLED.labels(platform=platform).inc(count)


@_never_fails
def cancelled_by_filter(action: str, who: ApiCaller, jobs: JobFilter, changed: int) -> None:
    """After an action by filter: the platform is the caller's or the filter's, else ""."""
    if action != "cancel" or changed <= 0:
        return
    platform = who.name if who.platform_id is not None else (jobs.platform_name or "")
    JOBS_CANCELLED.labels(platform=platform).inc(changed)


@_never_fails
def deliveries_recorded(tried: Sequence[Finished], recorded: Sequence[Recorded]) -> None:
    """Posts the delivery worker just recorded (``recorded[i]`` is ``tried[i]``'s row)."""
    for done, row in zip(tried, recorded, strict=False):
        platform = done.due.platform_name
        DELIVERY_ATTEMPTS.labels(platform=platform).inc()
        if not done.outcome.ok:
            DELIVERY_FAILURES.labels(platform=platform).inc()
        if row.state == "given_up":
            DELIVERIES_GIVEN_UP.labels(platform=platform).inc()


@_never_fails
def wakeup_sent(ok: bool) -> None:
    WAKEUPS_SENT.inc()
    if not ok:
        WAKEUPS_FAILED.inc()


# -- the scrape -----------------------------------------------------------------


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


def check_setup() -> None:
    """At start: a multiprocess directory that is named must exist (else every count fails)."""
    path = multiprocess_dir()
    if path is not None and not os.path.isdir(path):
        raise ConfigError(f"{MULTIPROC_ENV}={path} is not a directory (docs/METRICS.md)")


class _ThisProcess(Collector):
    """The counters as this process holds them (no multiprocess directory)."""

    def collect(self) -> Iterable[Metric]:
        return REGISTRY.collect()


def exposition(db: Database, settings: Settings) -> bytes:
    """The text a scrape gets: every process's counters, then the queue's gauges."""
    from graderqueue.observability.queue_gauges import QueueGauges

    registry = CollectorRegistry(auto_describe=False)
    if multiprocess_dir() is not None:
        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(_ThisProcess())
    registry.register(QueueGauges(db, settings))
    return generate_latest(registry)
