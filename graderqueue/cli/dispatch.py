"""``server drain|undrain`` and ``pause|resume``: stop and restart hand-outs, not intake.

Platforms can still send jobs throughout; only their hand-out to grading
servers stops (registry/operations.py). Every node reads the change at its
next claim; undrain and resume also tell waiting polls at once.
"""

from __future__ import annotations

import click

from graderqueue.cli import Context, pass_ctx
from graderqueue.cli.lifecycle_common import CLI, wake
from graderqueue.cli.servers import server
from graderqueue.quoting import quote
from graderqueue.registry import operations


@server.command("drain", short_help="Give a server no new job; the ones it holds finish.")
@click.argument("name")
@pass_ctx
def server_drain(ctx: Context, name: str) -> None:
    """Give server NAME no new job; the jobs it holds finish and report as usual.

    For an upgrade or a reboot: drain, wait until it holds no job (`server
    list`, the admin servers page), stop it, and `server undrain` it once it
    is back.
    """
    with ctx.transaction() as session:
        operations.drain(session, name, on=True, actor=CLI)
    click.echo(f"Server {quote(name)} drained: it gets no new job.")


@server.command("undrain", short_help="Give a drained server jobs again.")
@click.argument("name")
@pass_ctx
def server_undrain(ctx: Context, name: str) -> None:
    """Give server NAME jobs again; if it is waiting in a poll, it gets one at once."""
    with ctx.transaction() as session:
        types = operations.drain(session, name, on=False, actor=CLI)
    click.echo(f"Server {quote(name)} undrained: it gets jobs again.")
    wake(ctx, types)


type_option = click.option(
    "--type", "type_name", default=None, help="Only this server type (default: every type)."
)


@click.command(short_help="Stop handing out jobs (they are still accepted).")
@type_option
@pass_ctx
def pause(ctx: Context, type_name: str | None) -> None:
    """Stop handing jobs out, for every server type or one; `resume` restarts.

    Platforms can still send jobs: they wait in the queue. Jobs being
    graded finish and report as usual. For upgrades and maintenance.
    """
    with ctx.transaction() as session:
        operations.pause(session, type_name, on=True, actor=CLI)
    what = f"server type {quote(type_name)}" if type_name else "every server type"
    click.echo(f"Dispatch paused for {what}: jobs are accepted, none is handed out.")


@click.command(short_help="Hand out jobs again after `pause`.")
@type_option
@pass_ctx
def resume(ctx: Context, type_name: str | None) -> None:
    """Hand jobs out again, to every server type or one.

    `resume` without --type lifts a queue-wide `pause`; a type paused with
    `pause --type` stays paused until `resume --type` names it.
    """
    with ctx.transaction() as session:
        types = operations.pause(session, type_name, on=False, actor=CLI)
    what = f"server type {quote(type_name)}" if type_name else "the queue"
    click.echo(f"Dispatch resumed for {what}.")
    wake(ctx, types)


def register(cli: click.Group) -> None:
    # `server drain|undrain` are on the server group already (decorators above).
    cli.add_command(pause)
    cli.add_command(resume)
