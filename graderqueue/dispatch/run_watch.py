"""The runs' event streams: one thread per web worker reads every watched run.

As :class:`~graderqueue.dispatch.job_watch.JobWatch` does for jobs, and with
its bounds: however many streams follow runs, one query per
``events_poll_sec`` reads the state and progress of all their runs. A run's
``Seen`` is its state and, as its position, how many roster jobs ended.
"""

from __future__ import annotations

from graderqueue.dispatch.job_watch import JobWatch, Seen
from graderqueue.queue import run_view


class RunWatch(JobWatch):
    def _read(self, ids: list[int]) -> dict[int, Seen]:
        self.reads += 1
        with self._db.reading() as session:
            found = run_view.progress(session, ids)
        return {run_id: Seen(state, ended) for run_id, (state, ended) in found.items()}
