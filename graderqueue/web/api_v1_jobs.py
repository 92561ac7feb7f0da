"""``/api/v1/jobs``: submit, list, read, locate and control jobs (docs/API.md)."""

from __future__ import annotations

from flask import Response, request

from graderqueue.errors import BadRequest, NotFound, UnknownJob
from graderqueue.observability import metrics
from graderqueue.protocol.numbers import json_int, parse_int
from graderqueue.protocol.submissions import INT_MAX
from graderqueue.queue import api_submit, artifacts, control, idempotency, job_view, listing
from graderqueue.queue import position as positions
from graderqueue.web.answers import runtime
from graderqueue.web.api_v1 import bp, caller, json_body, ok, session_for, writer

DEFAULT_PAGE = 50


@bp.post("/jobs")
def submit() -> Response:
    """One job (an object) or a batch (an array); 201 with ``id`` or ``ids``."""
    who = writer()
    rt = runtime()
    body = json_body()
    key = request.headers.get("Idempotency-Key")
    idem = None
    if key is not None:
        digest = idempotency.request_hash(request.get_data(cache=True))
        idem = (who.key, idempotency.check_key(key), digest)
    platform = rt.registry.platform(who.name) if who.platform_id is not None else None
    done = api_submit.submit(
        rt.db,
        rt.registry,
        rt.settings,
        body,
        platform=platform,
        received_via="" if platform else f"api:{who.name}",
        idempotency_key=idem,
        spend=who.spend,
    )
    if done.type_ids:
        rt.jobs_available(done.type_ids)
    metrics.api_jobs_received(who, done)
    headers = {"Idempotent-Replayed": "true"} if done.replayed else {}
    if "id" in done.answer:
        headers["Location"] = f"{bp.url_prefix}/jobs/{done.answer['id']}"
    return ok(done.answer, 201, headers)


def _filter_args() -> dict[str, str]:
    return {k: v for k, v in request.args.items() if k not in ("limit", "cursor")}


@bp.get("/jobs")
def list_jobs() -> Response:
    """Jobs by filter, newest first, a keyset page at a time."""
    who = caller()
    settings = runtime().settings
    limit = parse_int(request.args.get("limit", str(DEFAULT_PAGE)))
    if limit is None or not 1 <= limit <= settings.api_page_max:
        raise BadRequest(f"limit is 1 to {settings.api_page_max}.")
    jobs = listing.JobFilter.parse(_filter_args(), platform_id=who.platform_id)
    cursor = listing.parse_cursor(request.args.get("cursor"))
    if request.args.get("cursor") == "":
        raise BadRequest("cursor is empty: leave it out for the first page.")
    with session_for(who) as session:
        rows, next_id = listing.page(session, jobs, limit=limit, cursor=cursor)
    return ok({"jobs": rows, "next_cursor": str(next_id) if next_id else None})


@bp.get("/jobs/<id:job_id>")
def job(job_id: int) -> Response:
    who = caller()
    with session_for(who) as session:
        found = job_view.detail(session, job_id, who.platform_id)
    if found is None:
        raise UnknownJob(f"No job #{job_id}.")
    return ok(found)


@bp.get("/jobs/<id:job_id>/position")
def position(job_id: int) -> Response:
    who = caller()
    with session_for(who) as session:
        state = job_view.state(session, job_id, who.platform_id)
        if state is None:
            raise UnknownJob(f"No job #{job_id}.")
        return ok({"id": job_id, "state": state, **positions.of_job(session, job_id)})


@bp.get("/jobs/<id:job_id>/artifacts/<name>")
def artifact(job_id: int, name: str) -> Response:
    who = caller()
    with session_for(who) as session:
        if job_view.state(session, job_id, who.platform_id) is None:
            raise UnknownJob(f"No job #{job_id}.")
        found = artifacts.read(session, job_id, name)
    if found is None:
        raise NotFound(f"Job #{job_id} has no artifact {name!r}.")
    media_type, content = found
    return Response(content, mimetype=media_type.split(";")[0], content_type=media_type)


def _priority(body: object) -> int | None:
    if not isinstance(body, dict) or set(body) - {"priority"}:
        raise BadRequest('The body, if any, is {"priority": N}.')
    if "priority" not in body:
        return None
    priority = json_int(body["priority"], 0, INT_MAX)
    if priority is None:
        raise BadRequest(f"priority is an integer from 0 to {INT_MAX}.")
    return priority


@bp.post("/jobs/<id:job_id>/cancel")
@bp.post("/jobs/<id:job_id>/hold")
@bp.post("/jobs/<id:job_id>/release")
@bp.post("/jobs/<id:job_id>/requeue")
def act(job_id: int) -> Response:
    """One job: 409 when its state does not allow the action."""
    action = request.path.rsplit("/", 1)[1]
    who = writer()
    rt = runtime()
    has_body = bool(request.get_data(cache=True).strip())
    priority = _priority(json_body()) if has_body else None
    if action == "cancel" and priority is not None:
        raise BadRequest("cancel takes no priority: a cancelled job is never handed out.")
    with session_for(who, write=True) as session:
        acted = control.act(
            session, job_id, action, actor=who.label, priority=priority, platform_id=who.platform_id
        )
        state = job_view.state(session, job_id, who.platform_id)
    if acted.type_ids:
        rt.jobs_available(sorted(acted.type_ids))
    if acted.runs:
        rt.runs_progressed(acted.runs)
    metrics.jobs_cancelled(rt.db, action, acted.job_ids)
    return ok({"id": job_id, "state": state})


@bp.post("/jobs/actions")
def act_by_filter() -> Response:
    """One action on every job a filter matches (``dry_run``: only count them)."""
    who = writer()
    rt = runtime()
    body = json_body()
    if not isinstance(body, dict) or set(body) - {"action", "filter", "priority", "dry_run"}:
        raise BadRequest('The body is {"action", "filter", "priority"?, "dry_run"?}.')
    action = body.get("action")
    if not isinstance(action, str):
        raise BadRequest(f"action is one of {', '.join(control.ACTIONS)}.")
    priority = _priority({k: v for k, v in body.items() if k == "priority"})
    control.check_action(action)
    raw_filter = body.get("filter", {})
    if not isinstance(raw_filter, dict):
        raise BadRequest("filter is an object.")
    dry_run = body.get("dry_run", False)
    if not isinstance(dry_run, bool):
        raise BadRequest("dry_run is true or false.")
    jobs = listing.JobFilter.parse(raw_filter, platform_id=who.platform_id)
    outcome = control.act_by_filter(
        rt.db,
        jobs,
        action,
        actor=who.label,
        priority=priority,
        dry_run=dry_run,
        limit=rt.settings.api_action_max,
        spend=who.spend,
    )
    if outcome.type_ids:
        rt.jobs_available(sorted(outcome.type_ids))
    metrics.cancelled_by_filter(action, who, jobs, outcome.changed)
    return ok(
        {
            "action": action,
            "dry_run": dry_run,
            "matched": outcome.matched,
            "changed": outcome.changed,
        }
    )
