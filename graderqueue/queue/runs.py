"""``POST /api/v1/runs``: many jobs that belong together, and acting on a whole run.

A run is a pre job (optional), one job per roster entry, and a post job
(optional), all specs as ``POST /api/v1/jobs`` takes them
(:func:`graderqueue.queue.api_submit.parse_one`: one parser). ``${VAR}`` in
a spec's strings, keys excepted, at any depth (``jobdata`` too) is the
roster entry's ``VAR``, else ``env``'s; ``$${`` is a literal ``${``. Every
job is rendered and validated at submission, so a run is refused whole (an
unknown variable, a bad tag, a path outside the platform's) or accepted
whole; the rendered jobs are stored with the run and made when their stage
starts (queue/runs_progress.py).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from graderqueue.config import Settings
from graderqueue.delivery import callbacks
from graderqueue.errors import BadRequest, Conflict, NotFound
from graderqueue.files import job_files
from graderqueue.queue import api_submit, control, enqueue, fair_share, run_view, runs_progress
from graderqueue.queue.runs_progress import Progress
from graderqueue.registry.view import PlatformInfo, RegistryView
from graderqueue.store import events
from graderqueue.store.db import Database
from graderqueue.store.models import Job, Run, RunFile, RunState, utcnow

RUNS = Run.__table__
JOBS = Job.__table__
FIELDS = frozenset(
    {"env", "roster", "pre_job", "job", "post_job", "priority", "tags", "callback_url"}
)
ENDED = frozenset({RunState.FINISHED, RunState.FAILED, RunState.CANCELLED})
_VARIABLE = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def render(value: Any, variables: dict[str, str], missing: set[str]) -> Any:
    """``value`` with ``${VAR}`` replaced in every string; unknown names go to ``missing``."""
    if isinstance(value, str):

        def one(match: re.Match[str]) -> str:
            if match.group(0) == "$${":
                return "${"
            name = match.group(1)
            if name not in variables:
                missing.add(name)
                return match.group(0)
            return variables[name]

        return _VARIABLE.sub(one, value)
    if isinstance(value, dict):
        return {k: render(v, variables, missing) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, variables, missing) for v in value]
    return value


def _variables(entry: Any, where: str) -> dict[str, str]:
    if not isinstance(entry, dict):
        raise BadRequest(f"{where} is an object of variables.")
    found = {}
    for name, value in entry.items():
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise BadRequest(f"{where}: {name} is a string or a number.")
        found[name] = str(value)
    return found


@dataclass(frozen=True)
class Parsed:
    roster: list[dict[str, Any]]
    pre: dict[str, Any] | None
    jobs: list[dict[str, Any]]
    post: dict[str, Any] | None
    callback_url: str


def parse(
    body: Any, view: RegistryView, settings: Settings, platform: PlatformInfo | None
) -> Parsed:
    """Every job of the run, rendered, parsed and routed; a refusal names the job."""
    if not isinstance(body, dict):
        raise BadRequest("A run is a JSON object.")
    unknown = sorted(set(body) - FIELDS)
    if unknown:
        raise BadRequest(f"unknown field {', '.join(unknown)}.")
    env = _variables(body.get("env", {}), "env")
    roster = body.get("roster")
    if not isinstance(roster, list) or not roster:
        raise BadRequest("roster is a non-empty list of objects.")
    if len(roster) > settings.runs_roster_max:
        raise BadRequest(f"roster has {len(roster)} entries, over {settings.runs_roster_max}.")
    defaults = {k: body[k] for k in ("priority", "tags") if k in body}
    url = ""
    if "callback_url" in body:
        url = callbacks.check_for(body["callback_url"], platform)

    def job(key: str, spec: Any, variables: dict[str, str], where: str) -> dict[str, Any]:
        if not isinstance(spec, dict):
            raise BadRequest(f"{key} is a job object.")
        if key != "job" and isinstance(spec.get("jobdata"), dict) and "run" in spec["jobdata"]:
            raise BadRequest(f"{key}: jobdata.run is the queue's (the run's roster and outcomes).")
        missing: set[str] = set()
        rendered = render({**defaults, **spec}, variables, missing)
        try:
            if missing:
                raise BadRequest(f"unknown variable {', '.join(sorted(missing))}.")
            return _stored(rendered, view, settings, platform)
        except BadRequest as exc:
            raise BadRequest(f"{where}: {exc.message}") from exc

    entries = [_variables(e, f"roster entry {n}") for n, e in enumerate(roster)]
    return Parsed(
        roster=roster,
        pre=job("pre_job", body["pre_job"], env, "pre_job") if "pre_job" in body else None,
        jobs=[job("job", body.get("job"), env | e, f"job {n}") for n, e in enumerate(entries)],
        post=job("post_job", body["post_job"], env, "post_job") if "post_job" in body else None,
        callback_url=url,
    )


def _stored(
    item: dict[str, Any], view: RegistryView, settings: Settings, platform: PlatformInfo | None
) -> dict[str, Any]:
    """One rendered spec as the run stores it until its stage: the job, routed."""
    one = api_submit.parse_one(item, view, settings, platform)
    sub, url = one.submission, one.callback_url
    new = enqueue.new_job(sub, view, settings, platform.force_tag_id if platform else None)
    return {
        "name": new.name,
        "jobdata": new.jobdata,
        "priority": new.priority,
        "tags": new.tags,
        "type_ids": new.type_ids,
        "jobusertaskid": new.jobusertaskid,
        "taskrevision": new.taskrevision,
        "timeout_sec": new.timeout_sec,
        "callback_url": url,
        # Bound to blobs in the submission's transaction (_bind_files).
        "file_spec": one.files if one.files else None,
    }


@dataclass(frozen=True)
class Started:
    run_id: int
    state: str
    progress: Progress


def submit(
    db: Database,
    view: RegistryView,
    settings: Settings,
    body: Any,
    *,
    platform: PlatformInfo | None,
    received_via: str,
    spend: Callable[[Session], None],
) -> Started:
    """Store the run and start it: its pre job, or its first batch of roster jobs."""
    if view.db is not None:
        # One read of the tags and types for the whole roster, whatever the
        # process's cache setting: this request's own view.
        view = RegistryView(view.db, ttl=3600)
    parsed = parse(body, view, settings, platform)
    platform_id = platform.id if platform else None
    for spec in (parsed.pre, *parsed.jobs, parsed.post):
        if spec is not None:
            spec.update(platform_id=platform_id, received_via=received_via)
    with db.transaction() as session:
        spend(session)
        fair_share.check_cap(session, platform_id)
        blob_ids = _bind_files(session, platform_id, parsed)
        stored = {"roster": parsed.roster, "jobs": parsed.jobs, "post": parsed.post}
        run_id = session.execute(
            insert(RUNS),
            {
                "platform_id": platform_id,
                "received_via": received_via,
                "state": RunState.READY,
                "spec": json.dumps(stored),
                "priority": parsed.jobs[0]["priority"],
                "roster_total": len(parsed.jobs),
                "roster_created": 0,
                "roster_ended": 0,
                "callback_url": parsed.callback_url,
                "created_at": utcnow(),
            },
        ).inserted_primary_key[0]
        if blob_ids:
            session.execute(
                insert(RunFile), [{"run_id": run_id, "blob_id": b} for b in sorted(blob_ids)]
            )
        if parsed.pre is None:
            progress = runs_progress.start_students(
                session, run_id, RunState.READY, settings.runs_batch
            )
        else:
            progress = _start_pre(session, run_id, parsed.pre, parsed.roster)
    return Started(run_id, RunState.STUDENTS if parsed.pre is None else RunState.PRE, progress)


def _bind_files(session: Session, platform_id: int | None, parsed: Parsed) -> set[int]:
    """Bind every spec's lab files to their content now, as a job sent alone is
    bound at its submission: a file replaced later changes none of the run's
    jobs. Returns the blobs, which the run keeps from the clean-up (run_files)."""
    blob_ids: set[int] = set()
    for spec in (parsed.pre, *parsed.jobs, parsed.post):
        if spec is None or spec.get("file_spec") is None:
            continue
        try:
            kept = job_files.resolved(session, platform_id, spec.pop("file_spec"))
        except BadRequest as exc:
            raise BadRequest(f"{spec['name']}: {exc.message}") from exc
        spec["files"] = kept
        blob_ids.update(b for _dest, b in kept["files"])
    return blob_ids


def _start_pre(session: Session, run_id: int, pre: dict[str, Any], roster: list[Any]) -> Progress:
    jobdata = json.loads(pre["jobdata"])
    jobdata["run"] = {"id": run_id, "roster": roster}
    job_id, type_ids = runs_progress.make_job(session, run_id, "pre", pre, jobdata)
    session.execute(
        update(RUNS).where(RUNS.c.id == run_id).values(pre_job_id=job_id, state=RunState.PRE)
    )
    events.log_event(session, events.RUN_STAGE, message=f"run #{run_id}: READY -> {RunState.PRE}")
    return Progress(type_ids=set(type_ids))


@dataclass(frozen=True)
class ActedRun:
    type_ids: set[int]  # server types with jobs newly queued
    status: dict[str, Any]  # the run's status afterwards


def act(
    db: Database,
    run_id: int,
    action: str,
    *,
    platform_id: int | None,
    actor: str,
    spend: Callable[[Session], None],
) -> ActedRun:
    """``cancel``, ``hold`` or ``release`` every job of the run that allows it, in
    batches. A cancelled run starts no stage more: it is marked first, then
    its jobs are cancelled, then its end is owed to its callback URL (once,
    guarded by ``ended_at``)."""
    if action not in ("cancel", "hold", "release"):
        raise BadRequest("A run takes cancel, hold or release.")
    with db.transaction() as session:
        spend(session)
        run = run_view.find(session, run_id, platform_id)
        if run is None:
            raise NotFound(f"No run #{run_id}.")
        if run.state in (RunState.FINISHED, RunState.FAILED) or (
            run.state == RunState.CANCELLED and action != "cancel"
        ):
            raise Conflict(f"Run #{run_id} is {run.state}: it cannot {action}.")
        if action == "cancel":
            cancelled = session.execute(
                update(RUNS)
                .where(RUNS.c.id == run_id, RUNS.c.state.in_(runs_progress.LIVE_STATES))
                .values(state=RunState.CANCELLED)
            )
            if cancelled.rowcount:
                events.log_event(
                    session, events.RUN_STAGE, message=f"run #{run_id}: cancelled by {actor}"
                )
    type_ids = _act_on_jobs(db, run_id, action, actor)
    if action == "cancel":
        finish_cancel(db, run_id)
    with db.reading() as session:
        status = run_view.status(session, run_id, None)
    return ActedRun(type_ids, status or {})


def _act_on_jobs(db: Database, run_id: int, action: str, actor: str) -> set[int]:
    with db.reading() as session:
        ids = list(
            session.scalars(
                select(JOBS.c.id).where(
                    JOBS.c.run_id == run_id, JOBS.c.status.in_(control.ALLOWED_FROM[action])
                )
            )
        )
    type_ids: set[int] = set()
    for start in range(0, len(ids), control.BATCH):
        with db.transaction() as session:
            chunk = ids[start : start + control.BATCH]
            acted = control.act_many(session, chunk, action, actor=actor)
        type_ids |= acted.type_ids | acted.runs.type_ids
    return type_ids


def finish_cancel(db: Database, run_id: int) -> None:
    """A cancelled run's end, once: its callback owed by the one who sets ``ended_at``."""
    with db.transaction() as session:
        ended = session.execute(
            update(RUNS)
            .where(
                RUNS.c.id == run_id,
                RUNS.c.state == RunState.CANCELLED,
                RUNS.c.ended_at.is_(None),
            )
            .values(ended_at=utcnow())
        )
        if ended.rowcount == 1:
            runs_progress.owe_end_callback(session, run_id)


def resume(db: Database, settings: Settings) -> int:
    """What a restart may have left half done (``graderqueue cron``): roster jobs
    still to make, cancels still to finish. Returns the runs moved on."""
    for run_id in runs_progress.unfinished(db):
        runs_progress.continue_runs(db, {run_id}, settings.runs_batch)
    with db.reading() as session:
        cancelling = list(
            session.scalars(
                select(RUNS.c.id).where(
                    RUNS.c.state == RunState.CANCELLED, RUNS.c.ended_at.is_(None)
                )
            )
        )
    for run_id in cancelling:
        _act_on_jobs(db, run_id, "cancel", "cron")
        finish_cancel(db, run_id)
    return len(cancelling)
