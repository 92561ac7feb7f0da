"""A grading server's poll: claim a job now, or wait for one until the poll's time is up.

The waiting is where dispatch comes together: the poll listens for hints
(:mod:`~graderqueue.dispatch.hints`) naming its server type, claims again
each time one arrives or ``poll_recheck_sec`` passes, and gives up the moment
its client has gone, so a job is never handed to a poll nobody will read.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy.orm import Session

from graderqueue.errors import NoJob
from graderqueue.identity import servers
from graderqueue.queue import states
from graderqueue.queue.claim import Claimed, claim, record_poll
from graderqueue.runtime import Runtime
from graderqueue.store.models import utcnow


def poll(
    rt: Runtime,
    caller: servers.Caller,
    *,
    holds_nothing: bool,
    client_gone: Callable[[], bool],
) -> Claimed:
    """The job for the calling server, or :class:`NoJob` when none came in time.

    ``holds_nothing`` (``nbtasks=0``): the server says it holds no job, so
    whatever the queue thinks it holds goes back to the queue first.
    """
    settings = rt.settings
    skip_locked = rt.db.dialect != "sqlite"
    rt.hints.ensure_listening()
    # Authentication, bookkeeping and the first claim share one short
    # transaction: on SQLite every write transaction queues for one lock.
    with rt.db.transaction() as session:
        server = servers.authenticate_server(session, caller, settings.trusted_proxies)
        seen = rt.hints.generation(server.type_id)
        # The server's row first, then its jobs: every claim locks in that order.
        record_poll(session, server.id, utcnow())
        released = states.release_held(session, server.id) if holds_nothing else []
        released_types = sorted({t for j in released for t in states.type_ids_of(session, j)})

        def claim_one(session: Session) -> Claimed | None:
            return claim(
                session,
                server.id,
                server.type_id,
                max_fails=settings.max_fails,
                skip_locked=skip_locked,
                max_jobs=server.max_concurrent_jobs,
            )

        job = claim_one(session)
    if released_types:
        rt.jobs_available(released_types, wake_servers=False)
    if job is None:
        with rt.poll_slots.hold(server.id) as may_wait:
            if not may_wait:
                raise NoJob()
            job = _wait_for_job(rt, server.type_id, seen, claim_one, client_gone)
    return _hand_over(rt, server.id, job, client_gone)


def _hand_over(
    rt: Runtime, server_id: int, job: Claimed, client_gone: Callable[[], bool]
) -> Claimed:
    """The claimed job, unless the poll's client left while it was claimed (a grading
    server stopping mid-poll): then it goes back to the queue now, not when its
    lease ends, since nobody will read the answer."""
    if not client_gone():
        return job
    with rt.db.transaction() as session:
        back = states.give_back(session, job.id, server_id)
        type_ids = states.type_ids_of(session, job.id) if back else []
    if type_ids:
        rt.jobs_available(type_ids)
    raise NoJob()


def _wait_for_job(
    rt: Runtime,
    type_id: int,
    seen: int,
    claim_one: Callable[[Session], Claimed | None],
    client_gone: Callable[[], bool],
) -> Claimed:
    """Claim again whenever a job of the type may have arrived, until the poll's time is up."""
    settings = rt.settings
    deadline = time.monotonic() + settings.poll_wait_sec
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise NoJob()
        rt.hints.wait(type_id, seen, min(remaining, settings.poll_recheck_sec))
        seen = rt.hints.generation(type_id)
        if client_gone():
            raise NoJob()  # nobody will read it; leave the job for a live poller
        with rt.db.transaction() as session:
            job = claim_one(session)
        if job is not None:
            return job
