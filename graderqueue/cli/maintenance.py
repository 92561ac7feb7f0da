"""``cron``, ``deliver`` and ``job redeliver``: maintenance and result delivery."""

from __future__ import annotations

import os
import signal
import sys
import threading
from datetime import datetime
from types import FrameType

import click

from graderqueue import logs
from graderqueue.cli import Context, fail_clearly, pass_ctx
from graderqueue.cli.jobs import job
from graderqueue.delivery import callbacks, redelivery
from graderqueue.delivery.worker import Worker
from graderqueue.maintenance import cron as maintenance
from graderqueue.protocol.keys import QueueKeys
from graderqueue.registry import actions as registry

TIME_FORMATS = ["%Y-%m-%d", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S"]


verbose_option = click.option(
    "-v", "--verbose", is_flag=True, help="Log debug messages and full tracebacks."
)


@click.command(short_help="Periodic maintenance (each minute, hourly).")
@click.option("--hourly", is_flag=True, help="Also purge old rows and send the hourly alerts.")
@verbose_option
@pass_ctx
def cron(ctx: Context, hourly: bool, verbose: bool) -> None:
    """Periodic maintenance: run every minute, and with --hourly once an hour.

    Every minute: jobs that failed too often are put in error, failed
    wake-ups are tried again, and the admins are e-mailed about stuck jobs
    and undelivered results. Hourly: old jobs, results and events are
    deleted, dead token-registered servers removed, expired tokens dropped.

    Safe to run on several nodes at once. Each step runs on its own: a step
    that fails (database down, SMTP down) prints one line to stderr and the
    others still run; the exit status is then 1. Tracebacks only with -v.
    """
    logs.setup(verbose=verbose, tracebacks=verbose)
    with fail_clearly():
        report = maintenance.run(ctx.db, ctx.settings, hourly=hourly)
    for line in report.lines():
        click.echo(line)
    for problem in report.problems:
        click.echo(f"error: {problem}", err=True)
    if report.problems:
        sys.exit(1)


@click.command(short_help="Post results to the platforms (a service).")
@click.option("--once", is_flag=True, help="Try every delivery due now once, then exit.")
@verbose_option
@pass_ctx
def deliver(ctx: Context, once: bool, verbose: bool) -> None:
    """Post results to the platforms' return URLs (for a systemd service).

    The web app does this too unless delivery_enabled is false; any number of
    workers may run at once. SIGTERM finishes and records the posts under way
    and exits; a second SIGTERM exits at once.

    During a database outage it logs one line when the outage starts and
    then one a minute (with the traceback only with -v), and carries on.
    """
    logs.setup(verbose=verbose, tracebacks=verbose)
    with fail_clearly():
        keys = QueueKeys(ctx.settings.resolved_key_dir, ctx.settings.key_name)
        worker = Worker(ctx.db, ctx.settings, keys)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        if worker.stopping.is_set():
            # At once, as promised: the interpreter would otherwise wait for
            # the post threads. Rows still claimed go out again when their
            # lease ends.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(128 + signum)
        worker.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with fail_clearly():
        if once:
            try:
                counts = worker.run_pass()
            finally:
                worker.close()
            posted = callbacks.Poster(ctx.db, ctx.settings, keys).run_pass()
            if posted:
                counts["callbacks"] = posted
            summary = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
            click.echo(f"deliveries tried: {sum(counts.values())} ({summary or 'none due'})")
        else:
            # Callback URLs on a thread of their own, as in the web app.
            poster = callbacks.Poster(ctx.db, ctx.settings, keys)
            threading.Thread(target=poster.run_forever, name="gq-callbacks", daemon=True).start()
            worker.run_forever()
            poster.stop()


@click.command("redeliver", short_help="Send results to their platform again.")
@click.argument("job_id", type=int, required=False)
@click.option("--platform", "platform_name", help="Every done job of this platform, done...")
@click.option("--since", type=click.DateTime(TIME_FORMATS), help="... done at or after (UTC).")
@click.option("--until", type=click.DateTime(TIME_FORMATS), help="... done before (UTC).")
@pass_ctx
def redeliver(
    ctx: Context,
    job_id: int | None,
    platform_name: str | None,
    since: datetime | None,
    until: datetime | None,
) -> None:
    """Send results to their platform again: one job, or a platform's jobs by time.

    Times are UTC, like every time the queue stores.
    The delivery workers pick them up within delivery_poll_sec seconds.
    """
    if (job_id is None) == (platform_name is None):
        raise click.UsageError("Give either a JOB_ID or --platform NAME.")
    if job_id is not None and (since or until):
        raise click.UsageError("--since and --until go with --platform.")
    with ctx.transaction() as session:
        if job_id is not None:
            redelivery.redeliver_job(session, job_id)
            count = 1
        else:
            platform = registry.platform_by_name(session, platform_name or "")
            count = redelivery.redeliver_matching(session, platform, since, until)
    click.echo(f"{count} result(s) queued for delivery.")


def register(cli: click.Group) -> None:
    cli.add_command(cron)
    cli.add_command(deliver)
    job.add_command(redeliver)
