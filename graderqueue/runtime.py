"""What one process of the queue holds: settings, database, keys, notifier, waker."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from graderqueue.config import Settings
from graderqueue.dispatch.hints import PollHints, hint_key
from graderqueue.dispatch.job_watch import JobWatch
from graderqueue.dispatch.pollslots import PollSlots
from graderqueue.dispatch.run_watch import RunWatch
from graderqueue.dispatch.wakeups import Waker
from graderqueue.protocol import tokens
from graderqueue.protocol.keys import QueueKeys
from graderqueue.queue import runs_progress
from graderqueue.registry.view import RegistryView
from graderqueue.store.db import Database

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    db: Database
    keys: QueueKeys
    hints: PollHints = field(init=False)
    waker: Waker = field(init=False)
    registry: RegistryView = field(init=False)
    poll_slots: PollSlots = field(init=False)
    job_watch: JobWatch = field(init=False)
    run_watch: RunWatch = field(init=False)
    # Set by the delivery worker when it runs inside this process.
    delivery_kick: Callable[..., None] | None = None  # (callbacks: bool = True)

    def __post_init__(self) -> None:
        self.hints = PollHints(
            self.db, self.settings.notify_host, _hint_key(self.settings), self.settings
        )
        self.waker = Waker(self.db, self.settings)
        self.registry = RegistryView(self.db, self.settings.registry_cache_sec)
        self.poll_slots = PollSlots(
            self.settings.max_polls_per_server, self.settings.max_waiting_polls
        )
        self.job_watch = JobWatch(self.db, self.settings)
        self.run_watch = RunWatch(self.db, self.settings)

    @classmethod
    def create(cls, settings: Settings) -> Runtime:
        tokens.set_size_limit(settings.token_max_bytes)
        db = Database(settings)
        keys = QueueKeys(settings.resolved_key_dir, settings.key_name)
        return cls(settings=settings, db=db, keys=keys)

    def jobs_available(self, type_ids: list[int], *, wake_servers: bool = True) -> None:
        """After a commit that made jobs claimable: wake pollers, then idle servers."""
        self.hints.publish(type_ids)
        if wake_servers:
            self.waker.request(type_ids)

    def results_stored(self, job_id: int, *, callbacks: bool = True) -> None:
        """After a result is committed: let the delivery worker start at once, and the
        callback poster too if a callback is owed (``callbacks``; else it keeps to
        its ``delivery_poll_sec`` rounds, not a database read per result)."""
        if self.delivery_kick is not None:
            self.delivery_kick(callbacks)

    def runs_progressed(self, progress: runs_progress.Progress) -> None:
        """After a commit that moved runs on: wake servers for the new jobs, and make
        the roster jobs still missing on a thread, a batch per transaction (the
        request that started the stage does not wait for 10,000 jobs; cron
        finishes what a restart interrupts)."""
        if progress.type_ids:
            self.jobs_available(sorted(progress.type_ids))
        if progress.runs_to_fill:
            threading.Thread(
                target=self._fill_runs,
                args=(sorted(progress.runs_to_fill),),
                name="gq-run-fill",
                daemon=True,
            ).start()
        if self.delivery_kick is not None:
            self.delivery_kick(True)  # a run's end may owe a callback

    def _fill_runs(self, run_ids: list[int]) -> None:
        try:
            for run_id in run_ids:
                while True:
                    with self.db.transaction() as session:
                        step = runs_progress.fill_batch(session, run_id, self.settings.runs_batch)
                    if step.type_ids:
                        self.jobs_available(sorted(step.type_ids))
                    if run_id not in step.runs_to_fill:
                        break
        except Exception:
            log.warning("making a run's roster jobs failed; cron goes on", exc_info=True)


def _hint_key(settings: Settings) -> bytes:
    """The key of hints between nodes: from secret_key, which every node shares.

    Without a configured secret_key, the one generated into the instance
    folder (nodes on one instance folder, or with a copy of it, agree).
    """
    from graderqueue.web.admin.security import secret_key

    return hint_key(secret_key(settings))
