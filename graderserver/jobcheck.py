"""While jobs run, ask the queue whether it still counts on us for each one.

An admin may cancel or requeue a job this server is grading, or its lease
may run out and the queue hand it to another server. Grading it on would
waste the slot and, for a requeued job, compete with the other server's
run. So one thread asks `/jobstate` about every running job each
`daemon.job_check_interval` seconds, and on a clear "no" calls the job's
`on_gone` (the daemon kills the job's process groups and sends no result).

Only a "no" stops a job. A queue that cannot answer (the PHP original, an
older version of this one: HTTP 404, a page that is not JSON, an errorcode)
is not asked about that job again, logged once at info level; no answer at
all (network failure, 5xx, "try again later") is retried at the next round.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from graderserver.errors import JobStateUnknown, QueueUnavailable

log = logging.getLogger(__name__)


class Watch:
    """One running job being watched; the handle `JobWatcher.forget` takes.

    A handle, not the job id: after a requeue the queue may hand the same job
    to us again while the first run is still being cleaned up.
    """

    def __init__(self, jobid: int, on_gone: Callable[[], object]) -> None:
        self.jobid = jobid
        self.on_gone = on_gone


class JobWatcher:
    """One thread checking every watched job; `holds(jobid)` asks the queue."""

    def __init__(self, holds: Callable[[int], bool], interval: float) -> None:
        if interval <= 0:
            raise ValueError("a job watcher needs an interval > 0")
        self.interval = interval
        self._holds = holds
        self._lock = threading.Lock()
        self._watches: set[Watch] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> JobWatcher:
        self._thread = threading.Thread(target=self._run, name="job-check", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float) -> None:
        """Check no more; wait up to `timeout` s for a check under way to end."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                # Its request times out on its own; the thread acts on nothing after.
                log.debug("The job-state check is still waiting for the queue; leaving it.")

    def watch(self, jobid: int, on_gone: Callable[[], object]) -> Watch:
        """Check `jobid` from now on; `on_gone()` runs (once) if the queue says no."""
        watch = Watch(jobid, on_gone)
        with self._lock:
            self._watches.add(watch)
        return watch

    def forget(self, watch: Watch) -> None:
        """The job is over here: no more checks, and no `on_gone` from now on."""
        with self._lock:
            self._watches.discard(watch)

    def watching(self) -> list[int]:
        """The ids of the jobs still checked."""
        with self._lock:
            return sorted(w.jobid for w in self._watches)

    def check_once(self) -> None:
        """One round: ask about every watched job, act on each "no"."""
        with self._lock:
            watches = list(self._watches)
        for watch in watches:
            if self._stop.is_set():
                return
            holds = self._ask(watch)
            if holds is False and not self._stop.is_set() and self._take(watch):
                log.warning(
                    "Job #%d: the queue cancelled it or took it back; "
                    "its program is killed and no result is sent.",
                    watch.jobid,
                )
                watch.on_gone()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.check_once()
            except Exception:
                # The thread must live on: it is the only one doing this.
                log.exception("Job-state check failed")

    def _take(self, watch: Watch) -> bool:
        """Stop watching; False if the job was over here already (forgotten)."""
        with self._lock:
            if watch not in self._watches:
                return False
            self._watches.discard(watch)
            return True

    def _ask(self, watch: Watch) -> bool | None:
        """The queue's yes or no; None when it gave neither."""
        try:
            return self._holds(watch.jobid)
        except JobStateUnknown as exc:
            if self._take(watch):
                log.info(
                    "Job #%d: the queue cannot tell whether it still wants the job (%s); "
                    "not asking again.",
                    watch.jobid,
                    exc,
                )
        except QueueUnavailable as exc:
            log.debug("Job #%d: no job state (%s); asking again later.", watch.jobid, exc)
        except Exception:
            log.exception("Job #%d: job-state check failed", watch.jobid)
        return None
