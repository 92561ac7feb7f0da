"""``POST /api/v1/jobs``: one job or a batch, with sendjob's fields and rules.

Each job object goes through the same parser as an encrypted ``sendjob``
(:func:`graderqueue.protocol.submissions.parse`): routing, clamping, path
restrictions and dedup are those of the protocol, in one place. A batch is
queued in one transaction: all its jobs, or none.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from graderqueue.config import Settings
from graderqueue.delivery import callbacks
from graderqueue.errors import BadRequest, QueueError
from graderqueue.files import job_files
from graderqueue.protocol import submissions
from graderqueue.protocol.numbers import json_int
from graderqueue.queue import enqueue, idempotency, job_view
from graderqueue.registry.view import PlatformInfo, RegistryView
from graderqueue.store.db import Database
from graderqueue.store.models import Job

FIELDS = (
    frozenset(
        {"jobname", "jobdata", "tags", "priority", "jobusertaskid", "taskrevision", "timeout"}
    )
    | frozenset(job_files.KEYS)
    | {"callback_url"}
)


@dataclass(frozen=True)
class Submitted:
    answer: dict[str, Any]
    type_ids: list[int]
    replayed: bool = False


class _Replayed(QueueError):
    """The Idempotency-Key was seen: its first answer is given again."""

    def __init__(self, answer: dict[str, Any]) -> None:
        self.answer = answer


def parse_body(
    body: Any, view: RegistryView, settings: Settings, platform: PlatformInfo | None
) -> list[OneJob]:
    """The jobs in a request body (an object, or a non-empty array of them),
    each parsed and routed, so a refusal names the job it is about."""
    items = body if isinstance(body, list) else [body]
    if not items:
        raise BadRequest("An empty batch: send at least one job.")
    if len(items) > settings.api_batch_max:
        raise BadRequest(f"At most {settings.api_batch_max} jobs per batch.")
    jobs = []
    for n, item in enumerate(items):
        where = f"job {n}: " if isinstance(body, list) else ""
        try:
            jobs.append(parse_one(item, view, settings, platform))
        except BadRequest as exc:
            raise BadRequest(where + exc.message) from exc
    return jobs


@dataclass(frozen=True)
class OneJob:
    """One job object of a request, parsed and routed."""

    submission: submissions.Submission
    callback_url: str  # "": none
    files: job_files.Spec  # files, output_file, max_kb (empty for most jobs)


def parse_one(
    item: Any, view: RegistryView, settings: Settings, platform: PlatformInfo | None
) -> OneJob:
    """One job object, as ``POST /api/v1/jobs`` and a run's specs take it."""
    if not isinstance(item, dict):
        raise BadRequest("a job is a JSON object.")
    _check_types(item)
    url = ""
    if "callback_url" in item:
        url = callbacks.check_for(item.pop("callback_url"), platform)
    files = job_files.parse_spec(item)  # takes its keys out of the item
    sub = submissions.parse(
        {**item, "request": "sendjob"},
        settings,
        restrict_paths=platform.restrict_paths if platform else "",
    )
    enqueue.new_job(sub, view, settings, platform.force_tag_id if platform else None)
    return OneJob(sub, url, files)


def _check_types(item: dict[str, Any]) -> None:
    """The JSON API's types, stricter than the protocol's PHP-style reading: the
    OpenAPI document says exactly what is accepted, so nothing else is."""
    unknown = sorted(set(item) - FIELDS)
    if unknown:
        raise BadRequest(f"unknown field {', '.join(unknown)}.")
    if not isinstance(item.get("jobdata"), dict):
        raise BadRequest("jobdata is a JSON object.")
    for key in ("jobname", "jobusertaskid", "taskrevision"):
        if key in item and not isinstance(item[key], str):
            raise BadRequest(f"{key} is a string.")
    tags = item.get("tags", "")
    if not isinstance(tags, str) and not (
        isinstance(tags, list) and all(isinstance(t, str) for t in tags)
    ):
        raise BadRequest("tags is a string (names by commas) or a list of names.")
    for key, minimum in (("priority", 0), ("timeout", 1)):
        if key in item:
            value = json_int(item[key], minimum, submissions.INT_MAX)
            if value is None:
                raise BadRequest(f"{key} is an integer from {minimum} to {submissions.INT_MAX}.")
            item[key] = value


def _check_files(
    db: Database, platform: PlatformInfo | None, specs: list[job_files.Spec], batch: bool
) -> None:
    """Refuse unknown lab files before the platform token's jti is spent."""
    if not any(spec.files for spec in specs):
        return
    with db.reading() as session:
        for n, spec in enumerate(specs):
            try:
                job_files.check(session, platform.id if platform else None, spec)
            except BadRequest as exc:
                raise BadRequest((f"job {n}: " if batch else "") + exc.message) from exc


def _bind_files(
    session: Session,
    platform: PlatformInfo | None,
    job_ids: list[int],
    specs: list[job_files.Spec],
    batch: bool,
) -> None:
    for n, (job_id, spec) in enumerate(zip(job_ids, specs, strict=True)):
        # Only jobs with files pay for binding them: batches of plain jobs
        # stay as fast as before.
        if spec:
            try:
                job_files.bind(session, platform.id if platform else None, job_id, spec)
            except BadRequest as exc:
                raise BadRequest((f"job {n}: " if batch else "") + exc.message) from exc


def callbacks_to(session: Session, job_ids: list[int], urls: list[str]) -> None:
    """Each job's callback URL, for the jobs sent with one (an UPDATE only for those)."""
    for job_id, url in zip(job_ids, urls, strict=True):
        if url:
            session.execute(update(Job).where(Job.id == job_id).values(callback_url=url))


def submit(
    db: Database,
    view: RegistryView,
    settings: Settings,
    body: Any,
    *,
    platform: PlatformInfo | None,
    received_via: str,
    idempotency_key: tuple[str, str, str] | None,
    spend: Callable[[Session], None],
) -> Submitted:
    """Queue the body's jobs; ``idempotency_key`` is (caller, key, request hash)."""
    jobs = parse_body(body, view, settings, platform)
    subs = [j.submission for j in jobs]
    specs = [j.files for j in jobs]
    batch = isinstance(body, list)
    _check_files(db, platform, specs, batch)
    with db.transaction() as session:
        spend(session)  # a platform token's jti: spent even if the key replays
    answer: dict[str, Any] = {}

    def before(session: Session) -> None:
        if idempotency_key is not None:
            prior = idempotency.replay(session, *idempotency_key)
            if prior is not None:
                raise _Replayed(prior)

    def after(session: Session, job_ids: list[int]) -> None:
        _bind_files(session, platform, job_ids, specs, batch)
        answer.clear()
        callbacks_to(session, job_ids, [j.callback_url for j in jobs])
        if batch:
            answer["ids"] = job_ids
        else:
            status = session.scalar(select(Job.status).where(Job.id == job_ids[0]))
            answer.update(id=job_ids[0], state=job_view.STATE_OF[status])
        if idempotency_key is not None:
            idempotency.remember(session, *idempotency_key, answer)

    try:
        queued = enqueue.submit(
            db,
            view,
            settings,
            subs,
            platform_id=platform.id if platform else None,
            received_via=received_via,
            forced_tag_id=platform.force_tag_id if platform else None,
            before=before,
            after=after,
        )
    except _Replayed as replayed:
        return Submitted(replayed.answer, [], replayed=True)
    return Submitted(dict(answer), queued.type_ids)
