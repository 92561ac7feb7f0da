"""A job as the platform that sent it reads it back (``getjob``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from graderqueue.errors import UnknownJob
from graderqueue.store.models import Job, JobStatus, Result

# The job's fields, as the original's queue table named them (getjob).
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


def _time(value: datetime | None) -> str | None:
    return value.strftime(TIME_FORMAT) if value is not None else None


def job_row(session: Session, job: Job) -> tuple[str, dict[str, Any]]:
    """A job as ``getjob`` shows it: (origin, row under the original's names)."""
    row: dict[str, Any] = {
        "id": job.id,
        "name": job.name,
        "jobusertaskid": job.jobusertaskid,
        "job_repeats": job.job_repeats,
        "status": job.status,
        "priority": job.priority,
        "timeout_sec": job.timeout_sec,
        "nb_fails": job.nb_fails,
        "received_from": job.platform_id if job.platform_id is not None else -1,
        "received_time": _time(job.received_time),
        "sent_to": job.sent_to if job.sent_to is not None else -1,
        "grading_start_time": _time(job.grading_start_time),
        "tags": job.tags,
        "taskrevision": job.taskrevision,
        "jobdata": job.jobdata,
    }
    if job.status != JobStatus.DONE:
        return "queue", row
    result = session.get(Result, job.id)
    row["jobid"] = job.id  # the original's done table had its own id and this one
    row["grading_end_time"] = _time(job.grading_end_time)
    if result is not None:
        row["resultdata"] = result.resultdata
        row.update(
            cpu_time_ms=result.cpu_time_ms,
            real_time_ms=result.real_time_ms,
            max_real_time_ms=result.max_real_time_ms,
            is_success=int(result.is_success),
            task_path=result.task_path,
            task_name=result.task_name,
            language=result.language,
        )
    return "done", row


def get_for_platform(session: Session, job_id: int, platform_id: int | None, via: str) -> Job:
    """The job if this sender sent it; foreign and unknown ids look the same."""
    job = session.get(Job, job_id)
    if job is None or job.platform_id != platform_id:
        raise UnknownJob()
    if job.status == JobStatus.CANCELLED:
        # The original deleted a cancelled job: its id was unknown from then on.
        raise UnknownJob()
    if platform_id is None and job.received_via != via:
        raise UnknownJob()
    return job


def held_by(session: Session, job_id: int, server_id: int) -> bool:
    """Whether the server holds the job: sent to it, and not taken back since."""
    j = Job.__table__.c
    return (
        session.scalar(
            select(j.id).where(j.id == job_id, j.sent_to == server_id, j.status == JobStatus.SENT)
        )
        is not None
    )
