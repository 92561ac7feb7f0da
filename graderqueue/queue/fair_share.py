"""Fair share: within one priority, senders' jobs are handed out in proportion
to their weights, so one platform's flood cannot starve another.

Each job gets a place in line, ``vstart``, when it is queued (start-time fair
queueing). A sender's jobs follow one another ``STEP / weight`` apart, from
the later of two points: where its last job ended (``fair_share``), and the
line's present, ``V``. ``V`` is the first place still waiting in the job's
server types at its priority; with none waiting, the last place handed out.
So a sender that was quiet starts at the present, never ahead of it with
credit saved up, and one that flooded the queue waits its turn behind
others' new jobs instead of ahead of them.

The claim reads ``ix_job_types_claim`` (type, status, priority DESC, vstart,
job id) in order: the claim is still one index seek, whatever the depth.
With one sender the order is the order of arrival, as before.
"""

from __future__ import annotations

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.orm import Session

from graderqueue.errors import QueueFull
from graderqueue.store.models import FairShare, Job, JobStatus, JobType, Platform

# The place in line one job of weight 1 takes (migration 0005 uses it too).
STEP = 1_000_000
JT = JobType.__table__.c
FS = FairShare.__table__


PLATFORMS = Platform.__table__
JOBS = Job.__table__
# Built once with bound parameters: every sendjob runs them.
_FIRST_WAITING = (
    select(JT.vstart)
    .where(
        JT.type_id == bindparam("type_id"),
        JT.status == JobStatus.QUEUED,
        JT.priority == bindparam("priority"),
    )
    .order_by(JT.vstart)
    .limit(1)
)
_LAST_SERVED = (
    select(JT.vstart)
    .where(
        JT.type_id == bindparam("type_id"),
        JT.status == bindparam("job_status"),
        JT.priority == bindparam("priority"),
    )
    .order_by(JT.vstart.desc())
    .limit(1)
)
_WEIGHT = select(PLATFORMS.c.weight).where(PLATFORMS.c.id == bindparam("platform_id"))
_LAST_FINISH = select(FS.c.last_finish).where(FS.c.sender == bindparam("sender")).with_for_update()
_INSERT_FINISH = insert(FS)
_MOVE_FINISH = (
    update(FS).where(FS.c.sender == bindparam("b_sender")).values(last_finish=bindparam("finish"))
)
_CAP = select(PLATFORMS.c.max_queued).where(PLATFORMS.c.id == bindparam("platform_id"))
_WAITING = (
    select(func.count())
    .select_from(JOBS)
    .where(
        JOBS.c.platform_id == bindparam("platform_id"),
        JOBS.c.status.in_([JobStatus.QUEUED, JobStatus.HELD]),
    )
)


def sender_of(platform_id: int | None) -> int:
    return platform_id if platform_id is not None else 0


def _present(session: Session, type_ids: list[int], priority: int) -> int:
    """``V``: the first waiting place in these types at this priority, else the last served."""
    waiting = [
        session.scalar(_FIRST_WAITING, {"type_id": t, "priority": priority}) for t in type_ids
    ]
    found = [v for v in waiting if v is not None]
    if found:
        return min(found)
    served = [
        session.scalar(_LAST_SERVED, {"type_id": t, "job_status": status, "priority": priority})
        for t in type_ids
        for status in (JobStatus.SENT, JobStatus.DONE)
    ]
    return max((v for v in served if v is not None), default=0)


def place(session: Session, platform_id: int | None, type_ids: list[int], priority: int) -> int:
    """The ``vstart`` of a job this sender queues now; moves the sender's last place on.

    Locks the sender's ``fair_share`` row, so one sender's jobs get distinct
    places even from several nodes at once.
    """
    return place_many(session, platform_id, type_ids, priority, 1)[0]


def place_many(
    session: Session, platform_id: int | None, type_ids: list[int], priority: int, count: int
) -> list[int]:
    """The places of ``count`` jobs this sender queues now, one after another (a
    run's batch): what ``count`` calls of :func:`place` give, in one."""
    sender = sender_of(platform_id)
    weight = 1
    if platform_id is not None:
        weight = session.scalar(_WEIGHT, {"platform_id": platform_id}) or 1
    last = session.scalar(_LAST_FINISH, {"sender": sender})
    start = max(_present(session, type_ids, priority), last or 0)
    step = max(1, STEP // max(1, weight))
    finish = start + count * step
    if last is None:
        # A race with another first job of this sender ends in IntegrityError,
        # which enqueue.submit retries.
        session.execute(_INSERT_FINISH, {"sender": sender, "last_finish": finish})
    else:
        session.execute(_MOVE_FINISH, {"b_sender": sender, "finish": finish})
    return [start + n * step for n in range(count)]


def check_cap(session: Session, platform_id: int | None) -> None:
    """Refuse a job beyond the platform's ``max_queued`` (queued and held jobs count)."""
    if platform_id is None:
        return
    cap = session.scalar(_CAP, {"platform_id": platform_id})
    if cap is None:
        return
    waiting = session.scalar(_WAITING, {"platform_id": platform_id})
    if waiting >= cap:
        raise QueueFull(
            f"Too many jobs waiting: this platform has {waiting} queued, its limit is {cap}."
        )
