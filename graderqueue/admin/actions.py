"""What an administrator can do to jobs: requeue, cancel, send one from the interface.

Plain functions over a session in a transaction, like ``jobs.py`` whose
helpers they reuse, so the ``job_types`` copies of a job's status stay in
step with the job (the claim reads only those). The caller commits, then
calls ``Runtime.jobs_available`` with the returned server types so waiting
pollers and idle servers hear about a requeued or new job.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from graderqueue.config import Settings
from graderqueue.errors import BadRequest, UnknownJob
from graderqueue.identity.platforms import INTERFACE
from graderqueue.protocol import submissions
from graderqueue.queue import jobs, routing
from graderqueue.registry.view import Directory
from graderqueue.store import events
from graderqueue.store.models import Job, JobStatus, JobType

# The send-job form may send the same job several times at once (load tests).
MAX_COPIES = 100


def _live_job(session: Session, job_id: int, action: str) -> Job:
    job = session.scalars(select(Job).where(Job.id == job_id).with_for_update()).first()
    if job is None:
        raise UnknownJob(f"No job #{job_id}.")
    if job.status == JobStatus.DONE:
        raise BadRequest(f"Job #{job_id} is done: there is nothing to {action}.")
    return job


def requeue(session: Session, job_id: int, *, actor: str = "") -> list[int]:
    """Put a queued, sent or error job back in the queue with no failures counted.

    A server that still holds it will have its result refused, as for a job
    whose lease ran out. Returns the job's server types, to wake after commit.
    """
    job = _live_job(session, job_id, "requeue")
    previous, holder, fails = job.status, job.sent_to, job.nb_fails
    session.execute(
        update(Job)
        .where(Job.id == job_id)
        .values(status=JobStatus.QUEUED, sent_to=None, lease_expires=None, nb_fails=0)
    )
    jobs._sync_types(session, job_id, JobStatus.QUEUED)
    events.log_event(
        session,
        events.REQUEUED,
        job_id=job_id,
        server_id=holder,
        message=f"requeued by admin {actor or '?'} (was {previous}, {fails} failures)",
    )
    return jobs.type_ids_of(session, job_id)


def cancel(session: Session, job_id: int, *, actor: str = "") -> None:
    """Remove a job that is not done yet; the event log keeps what it was.

    The platform's ``getjob`` then answers "Invalid jobid." and no result is
    ever delivered; a server still grading it has its result refused.
    """
    job = _live_job(session, job_id, "cancel")
    summary = (
        f"cancelled by admin {actor or '?'}: {job.name!r} (jobusertaskid {job.jobusertaskid!r}, "
        f"platform {job.platform_id if job.platform_id is not None else job.received_via}, "
        f"was {job.status})"
    )
    holder = job.sent_to
    session.execute(delete(JobType).where(JobType.job_id == job_id))
    session.execute(delete(Job).where(Job.id == job_id))
    session.expunge(job)
    events.log_event(session, events.CANCELLED, job_id=job_id, server_id=holder, message=summary)


@dataclass(frozen=True)
class Sent:
    job_ids: list[int]
    type_ids: list[int]


def send_from_interface(
    session: Session,
    settings: Settings,
    fields: dict[str, Any],
    *,
    upload: submissions.Upload | None = None,
    copies: int = 1,
) -> Sent:
    """Queue a ``sendjob``/``sendsolution`` request typed into the admin form.

    Validated by the same code as a platform's request, and queued as sent by
    the interface (no platform, so no result delivery). Without a
    ``jobusertaskid`` each copy gets a fresh one, so sending twice makes two
    jobs, as the original panel did.
    """
    if not 1 <= copies <= MAX_COPIES:
        raise BadRequest(f"Send between 1 and {MAX_COPIES} copies.")
    given_id = str(fields.get("jobusertaskid") or "").strip()
    if given_id and copies > 1:
        raise BadRequest("Copies need distinct jobusertaskids: leave it empty.")
    job_ids: list[int] = []
    type_ids: list[int] = []
    for _ in range(copies):
        request = dict(fields)
        request["jobusertaskid"] = given_id or f"interface-{secrets.token_hex(8)}"
        sub = submissions.parse(request, settings, upload=upload)
        tags, type_ids = routing.resolve(
            Directory.within(session), sub.tag_names, default_tags=settings.default_tags
        )
        job_id, _created = jobs.enqueue(
            session,
            jobs.NewJob(
                name=sub.name,
                jobdata=json.dumps(sub.job),
                priority=sub.priority,
                tags=tags,
                type_ids=type_ids,
                jobusertaskid=sub.jobusertaskid,
                taskrevision=sub.taskrevision,
                timeout_sec=sub.timeout_sec,
            ),
            platform_id=None,
            received_via=INTERFACE,
        )
        job_ids.append(job_id)
    return Sent(job_ids=job_ids, type_ids=type_ids)
