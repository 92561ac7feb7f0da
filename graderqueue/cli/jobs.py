"""``job list`` and ``job show``."""

from __future__ import annotations

import contextlib
import json

import click
from sqlalchemy import select

from graderqueue.cli import Context, echo_rows, pass_ctx, when
from graderqueue.errors import UnknownJob
from graderqueue.queue import lookup
from graderqueue.store.models import Job, JobStatus

TIME_FIELDS = ("received_time", "grading_start_time", "grading_end_time")


@click.group()
def job() -> None:
    """Jobs in the queue: list, show, redeliver.

    Times are UTC, like every time the queue stores.
    """


@job.command("list")
@click.option(
    "--status", type=click.Choice([s.value for s in JobStatus]), default=None, help="Only these."
)
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10000))
@pass_ctx
def job_list(ctx: Context, status: str | None, limit: int) -> None:
    """The most recent jobs, newest first.

    One line per job: id, status, priority, failures, time received (UTC)
    and name.
    """
    with ctx.transaction() as session:
        query = select(Job).order_by(Job.id.desc()).limit(limit)
        if status:
            query = query.where(Job.status == status)
        echo_rows(
            (
                f"{row.id}\t{row.status}\tprio {row.priority}\tfails {row.nb_fails}\t"
                f"{when(row.received_time)}\t{row.name}"
                for row in session.scalars(query)
            ),
            f"No jobs with status {status}." if status else "No jobs.",
        )


@job.command("show", short_help="One job, as getjob shows it.")
@click.argument("job_id", type=int)
@pass_ctx
def job_show(ctx: Context, job_id: int) -> None:
    """One job as getjob shows it, JSON fields decoded.

    Times are UTC (the protocol's fields carry no zone; here they say so).
    """
    with ctx.transaction() as session:
        found = session.get(Job, job_id)
        if found is None:
            raise UnknownJob(f"No job #{job_id}.")
        origin, row = lookup.job_row(session, found)
    for key in TIME_FIELDS:
        if isinstance(row.get(key), str):
            row[key] += " UTC"
    for key in ("jobdata", "resultdata"):
        if isinstance(row.get(key), str):
            with contextlib.suppress(ValueError):  # shown as stored if not JSON
                row[key] = json.loads(row[key])
    click.echo(json.dumps({"origin": origin, **row}, indent=2))


def register(cli: click.Group) -> None:
    cli.add_command(job)
