"""The main loop: poll for jobs, grade them in worker threads, post results.

The main thread only polls; each job runs in its own worker thread, at most
`concurrency` at once. The daemon never exits on a network failure (capped
exponential backoff with jitter, so many servers do not hammer a recovering
queue in step); it exits on errorcode 2 or 3 from poll, as PROTOCOL.md asks.

Shutdown: the first SIGTERM/SIGINT is warm (finish running jobs and post
their results, take no new ones); the second is cold (kill the programs'
process groups and leave; the queue gets those jobs back from their lease or
from our next `nbtasks=0` poll).

While jobs run, a `JobWatcher` thread asks the queue whether it still wants
each one; a job it cancelled or took back has its programs killed and no
result sent, which frees its slot for the next poll.
"""

from __future__ import annotations

import functools
import logging
import random
import signal
import threading
import time
from typing import Any, Protocol

from graderserver.client import Job, QueueClient
from graderserver.config import Config
from graderserver.errors import AuthenticationFailed, QueueRejected, QueueUnavailable
from graderserver.files import FileCache, grade_with_files
from graderserver.health import HealthChecker
from graderserver.jobcheck import JobWatcher
from graderserver.prepare import TaskPreparer
from graderserver.results import send_results
from graderserver.runner import (
    ProcessGroups,
    grade_program,
    make_result,
    platform_restrictions,
    prepare_jobdata,
)
from graderserver.taskpaths import path_problem, revision_problem
from graderserver.wakeup import WakeupListener

log = logging.getLogger(__name__)

# -T behaviours, as the original daemon numbered them (PROTOCOL.md).
TEST_NORMAL, TEST_DROP, TEST_DELAY, TEST_FATAL, TEST_TEMPORARY, TEST_NO_RESULT, TEST_CAT = range(7)
TEST_DELAY_SECONDS = 60.0
# Joins during shutdown are short so the main thread keeps handling signals.
JOIN_STEP_SECONDS = 0.5


class HealthCheck(Protocol):
    """What the daemon needs of a health checker (see `graderserver.health`)."""

    def check(self) -> tuple[bool, list[str]]: ...


class ColdShutdown(BaseException):
    """Second stop signal: leave now. A BaseException so no handler swallows it."""


class PollAbandoned(BaseException):
    """Stop signal while waiting on a long-poll: stop waiting. A job the queue
    hands to the abandoned poll comes back to the queue, as after a kill."""


class Daemon:
    """One grading server. `run()` must be called from the main thread for signals."""

    def __init__(
        self,
        config: Config,
        *,
        client: QueueClient | None = None,
        once: bool = False,
        listen: bool = False,
        test_behaviour: int = TEST_NORMAL,
        health: HealthCheck | None = None,
    ) -> None:
        if not TEST_NORMAL <= test_behaviour <= TEST_CAT:
            raise ValueError(f"test behaviour must be 0..6, not {test_behaviour}")
        self.config = config
        self.client = client or QueueClient(config)
        self.once = once
        self.listen = listen
        self.test_behaviour = test_behaviour
        self.command = ("cat",) if test_behaviour == TEST_CAT else config.command
        self.groups = ProcessGroups()
        self.health: HealthCheck = health or HealthChecker(
            max_steal_percent=config.max_cpu_steal_percent,
            min_free_memory_mib=config.min_free_memory_mib,
            min_free_disk_mib=config.min_free_disk_mib,
            disk_path=config.disk_path,
        )
        self.preparer = TaskPreparer(config.prepare_command, config.prepare_timeout, self.groups)
        self.files = FileCache(config.cache_dir, config.files_cache_max_mib * 1024 * 1024)
        self.listener: WakeupListener | None = None
        self.watcher: JobWatcher | None = None
        if config.job_check_interval > 0:
            self.watcher = JobWatcher(self.client.job_holds, config.job_check_interval)
        self.exit_code = 0

        self._lock = threading.Lock()
        self._held = 0  # jobs taken and not yet reported
        self._workers: set[threading.Thread] = set()
        self._unhealthy = False
        self._poll_failures = 0
        self._stopping = threading.Event()  # warm shutdown asked
        self._cold = threading.Event()  # cold shutdown asked
        self._wakeup = threading.Event()  # a UDP wake-up, or a stop
        self._slot = threading.Event()  # a worker finished, or a stop
        self._polling = False  # the main thread waits on a poll: a stop cuts it short

    # -- control ---------------------------------------------------------

    @property
    def held(self) -> int:
        """Jobs taken from the queue whose result is not posted yet."""
        with self._lock:
            return self._held

    def willing(self) -> bool:
        """Whether a wake-up gets `ok`: healthy and not shutting down."""
        return not self._stopping.is_set() and not self._unhealthy

    def request_stop(self) -> bool:
        """First call: warm shutdown. Later calls: cold. Returns True when cold."""
        if not self._stopping.is_set():
            self._stopping.set()
            self._wakeup.set()
            self._slot.set()
            log.warning(
                "Stopping: finishing %d running job(s), taking no new ones "
                "(signal again to stop at once).",
                self.held,
            )
            return False
        if not self._cold.is_set():
            self._cold.set()
            killed = self.groups.kill_all()
            log.warning("Stopping at once: killed %d running program(s).", killed)
        return True

    def install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT: warm, then cold shutdown."""

        def handler(signum: int, frame: Any) -> None:
            if self.request_stop():
                raise ColdShutdown
            if self._polling:
                # A long-poll may wait 20 s for a job we would no longer take.
                raise PollAbandoned

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    def run(self) -> int:
        """Poll and grade until stopped (or, with `once`, until the queue is empty)."""
        healthy, reasons = self.health.check()  # an unhealthy server says no from the start
        if not healthy:
            self._mark_unhealthy(reasons)
        if self.listen:
            self.listener = WakeupListener(
                self.config.wakeup_host,
                self.config.wakeup_port,
                on_wakeup=self._wakeup.set,
                is_willing=self.willing,
                secret=self.config.wakeup_secret,
            ).start()
        if self.watcher is not None:
            self.watcher.start()
        try:
            self._main_loop()
            self._drain()
        except ColdShutdown:
            log.warning("Cold shutdown: unfinished jobs go back to the queue.")
        finally:
            if self.listener is not None:
                self.listener.stop()
            if self.watcher is not None:
                # Warm: after the drain, nothing is left to watch. Cold: the
                # programs are dead already; a check under way acts on nothing.
                self.watcher.stop(JOIN_STEP_SECONDS)
        log.info("Exiting (code %d).", self.exit_code)
        return self.exit_code

    # -- main thread -------------------------------------------------------

    def _main_loop(self) -> None:
        while self._wait_for_slot():
            if not self._check_health_before_poll():
                continue
            nbtasks = self.held
            started = time.monotonic()
            try:
                self._polling = not self._stopping.is_set()
                try:
                    job = self.client.poll(nbtasks)
                finally:
                    # Before any handler below runs: a stop during a backoff
                    # wait is a plain warm shutdown, not an abandoned poll.
                    self._polling = False
            except PollAbandoned:
                log.info("Stopped waiting for a job.")
                return
            except QueueUnavailable as exc:
                self._backoff(exc)
                continue
            except (AuthenticationFailed, QueueRejected) as exc:
                log.critical("%s; stopping.", exc)
                self.exit_code = 1
                self._stopping.set()
                return
            self._poll_failures = 0
            if job is None:
                if self.once:
                    log.info("No job available: burst finished.")
                    return
                # A long-polling queue has already waited; only a queue that
                # answers at once makes us wait here, cut short by a wake-up.
                self._pause(self.config.min_poll_interval - (time.monotonic() - started))
                continue
            self._start_job(job)

    def _wait_for_slot(self) -> bool:
        """Wait until fewer than `concurrency` jobs are held; False when stopping."""
        while True:
            self._slot.clear()
            if self._stopping.is_set():
                return False
            if self.held < self.config.concurrency:
                return True
            self._slot.wait(JOIN_STEP_SECONDS * 2)

    def _pause(self, seconds: float) -> None:
        """Sleep, cut short by a wake-up or a stop."""
        if seconds > 0:
            self._wakeup.wait(seconds)
        self._wakeup.clear()

    def _backoff(self, exc: Exception) -> None:
        self._poll_failures += 1
        cap = min(
            self.config.backoff_max,
            self.config.backoff_initial * 2 ** min(self._poll_failures - 1, 30),
        )
        # Jitter so servers cut off together do not all come back in step.
        delay = cap * random.uniform(0.5, 1.0)
        log.warning("Queue unavailable (%s); next poll in %.1f s.", exc, delay)
        self._pause(delay)

    def _check_health_before_poll(self) -> bool:
        """Take no job while unhealthy: it would only bounce back with a failure."""
        healthy, reasons = self.health.check()
        if healthy:
            if self._unhealthy:
                log.warning("Server health is back to normal.")
                self._unhealthy = False
            return True
        self._mark_unhealthy(reasons)
        self._stopping.wait(self.config.health_recheck_seconds)
        return False

    def _mark_unhealthy(self, reasons: list[str]) -> None:
        if not self._unhealthy:
            log.warning("Server unhealthy (%s): no jobs until it recovers.", "; ".join(reasons))
        self._unhealthy = True

    def _start_job(self, job: Job) -> None:
        log.info("Received job %r (#%d).", job.jobname, job.jobid)
        if self.test_behaviour == TEST_DROP:
            log.warning("Test behaviour 1: dropping job #%d.", job.jobid)
            return
        worker = threading.Thread(
            target=self._work, args=(job,), name=f"job-{job.jobid}", daemon=True
        )
        with self._lock:
            self._held += 1
            self._workers.add(worker)
        worker.start()

    def _drain(self) -> None:
        """Warm shutdown: wait for the workers, their results posted."""
        while True:
            with self._lock:
                workers = list(self._workers)
            if not workers:
                return
            for worker in workers:
                worker.join(JOIN_STEP_SECONDS)

    # -- worker threads ----------------------------------------------------

    def _work(self, job: Job) -> None:
        # The job's own process groups: what the watcher kills if the queue
        # cancels or takes back the job.
        groups = ProcessGroups(parent=self.groups)
        try:
            resultdata, artifacts = self._grade_watched(job, groups)
            if self._cold.is_set() or groups.closed:
                return  # the queue gets it back, or no longer wants it
            if self.test_behaviour == TEST_NO_RESULT:
                log.warning("Test behaviour 5: sending results without resultdata.")
                resultdata = None
            send_results(
                self.client,
                self.config,
                job.jobid,
                resultdata,
                artifacts=artifacts,
                cold=self._cold,
            )
        except Exception:
            log.exception("Job #%d: could not report the result", job.jobid)
        finally:
            with self._lock:
                self._held -= 1
                self._workers.discard(threading.current_thread())
            self._slot.set()

    def _grade_watched(
        self, job: Job, groups: ProcessGroups
    ) -> tuple[dict[str, Any], dict[str, str]]:
        """Grade, while the watcher asks the queue whether it still wants the job."""
        watch = self.watcher.watch(job.jobid, groups.close) if self.watcher else None
        try:
            return self._grade(job, groups)
        except Exception as exc:
            log.exception("Job #%d: internal error", job.jobid)
            return make_result(2, f"Temporary error: grading server failure: {exc}"), {}
        finally:
            if watch is not None and self.watcher is not None:
                self.watcher.forget(watch)

    def _grade(self, job: Job, groups: ProcessGroups) -> tuple[dict[str, Any], dict[str, str]]:
        if self.test_behaviour == TEST_DELAY:
            log.warning("Test behaviour 2: waiting %g s before grading.", TEST_DELAY_SECONDS)
            self._cold.wait(TEST_DELAY_SECONDS)
        healthy, reasons = self.health.check()
        if not healthy:
            self._mark_unhealthy(reasons)
            return make_result(3, f"Server health is not okay ({'; '.join(reasons)})."), {}
        result, artifacts = self._check_and_run(job, groups)
        healthy, reasons = self.health.check()
        if not healthy:
            # Timings taken on a starved machine are not trustworthy.
            self._mark_unhealthy(reasons)
            result = make_result(
                3, f"Server health degraded during grading ({'; '.join(reasons)})."
            )
        if self.test_behaviour == TEST_FATAL:
            result = {**result, "errorcode": 1, "errormsg": "Test behaviour 3: fatal error."}
        elif self.test_behaviour == TEST_TEMPORARY:
            result = {**result, "errorcode": 2, "errormsg": "Test behaviour 4: temporary error."}
        if not groups.closed:  # else the watcher has said what happened
            log.info("Job #%d graded: errorcode %d.", job.jobid, result["errorcode"])
        return result, artifacts

    def _check_and_run(
        self, job: Job, groups: ProcessGroups
    ) -> tuple[dict[str, Any], dict[str, str]]:
        """Refuse a job that leaves its platform's folders; else check it out and run it."""
        cfg = self.config
        jobdata = prepare_jobdata(job.jobdata, cfg.root_path, cfg.path_vars, cfg.restrict_paths)
        platform_paths = platform_restrictions(job.jobdata, cfg.root_path, cfg.path_vars) or []
        variables = {"ROOT_PATH": cfg.root_path, **cfg.path_vars}
        problem = revision_problem(job.taskrevision) or path_problem(
            jobdata, platform_paths, variables
        )
        if problem is not None:
            # Fatal, not temporary: no server may run it, so it must not be requeued.
            log.warning("Job #%d refused: %s.", job.jobid, problem)
            return make_result(1, f"Refused by the grading server: {problem}."), {}
        task_dir = jobdata.get("taskPath")
        task_dir = task_dir if isinstance(task_dir, str) else ""
        artifacts: dict[str, str] = {}
        with self.preparer.checkout(task_dir, job.taskrevision) as error:
            # Again after the checkout: the revision may have made a path of
            # the job into a symlink that leaves the platform's folders.
            problem = None if error else path_problem(jobdata, platform_paths, variables)
            if error is not None:
                result = make_result(2, f"Temporary error: {error}")
            elif problem is not None:
                log.warning("Job #%d refused after its checkout: %s.", job.jobid, problem)
                result = make_result(1, f"Refused by the grading server: {problem}.")
            else:
                grade = functools.partial(
                    grade_program,
                    self.command,
                    jobdata,
                    timeout=cfg.timeout,
                    max_output_bytes=cfg.max_output_bytes,
                    artifact_max_bytes=cfg.artifact_max_bytes,
                    groups=groups,
                )
                result, artifacts = grade_with_files(job, self.files, cfg, self.client, grade)
        return result, artifacts
