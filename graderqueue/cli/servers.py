"""``server add|update|list|remove``: grading servers (``server-token``: cli.server_tokens;
``server drain|undrain``: cli.dispatch)."""

from __future__ import annotations

from typing import Any, TextIO

import click
from sqlalchemy import select

from graderqueue.cli import Context, echo_rows, pass_ctx, when
from graderqueue.cli.lifecycle_common import CLI, wake
from graderqueue.cli.wakeup_secrets import given_secret, wakeup_secret_options, warn_if_signed
from graderqueue.quoting import quote
from graderqueue.registry import actions as registry
from graderqueue.registry import fleet
from graderqueue.store.models import Server

# -- servers ---------------------------------------------------------------------


@click.group()
def server() -> None:
    """Grading servers and their settings.

    Servers are known by their client certificate.

    Servers that register themselves with a token are listed here too,
    once they have polled.
    """


@server.command("add", short_help="Register a server by its certificate.")
@click.argument("name")
@click.option("--type", "type_name", required=True, help="Its server type.")
@click.option("--ssl-serial", required=True, help="Certificate serial, hex.")
@click.option("--ssl-dn", required=True, help="Issuer DN, RFC 2253 or /C=../O=.. form.")
@click.option("--wakeup-url", default="", help="udp://HOST:PORT")
@click.option("--max-jobs", default=1, show_default=True, type=int, help="0: no limit.")
@wakeup_secret_options(removable=False)
@pass_ctx
def server_add(
    ctx: Context,
    name: str,
    type_name: str,
    ssl_serial: str,
    ssl_dn: str,
    wakeup_url: str,
    max_jobs: int,
    wakeup_secret_file: TextIO | None,
    wakeup_secret: str | None,
) -> None:
    """Register server NAME, known by its client certificate.

    Without a wake-up secret the queue sends the plain `wakeup` datagram,
    which every grading server understands.
    """
    secret = given_secret(wakeup_secret_file, wakeup_secret) or ""
    with ctx.transaction() as session:
        new = registry.add_server(
            session,
            name,
            type_name,
            ssl_serial=ssl_serial,
            ssl_dn=ssl_dn,
            wakeup_url=wakeup_url,
            max_jobs=max_jobs,
            wakeup_secret=secret,
        )
        click.echo(f"Server {quote(new.name)} added (id {new.id}).")
    warn_if_signed(secret, f"server {quote(name)}", "server", name)


def server_changes(
    wakeup_secret_file: TextIO | None,
    wakeup_secret: str | None,
    no_wakeup_secret: bool,
    **others: Any,
) -> fleet.ServerChanges:
    """What `server update` and `server-token update` were asked to change (never nothing)."""
    changes = fleet.ServerChanges(
        wakeup_secret=given_secret(wakeup_secret_file, wakeup_secret, no_wakeup_secret),
        **others,
    )
    if changes.is_empty():
        raise click.UsageError("Nothing to change: see --help for what can be changed.")
    return changes


@server.command("update", short_help="Change a server: wake-up, max jobs, type, certificate.")
@click.argument("name")
@click.option("--wakeup-url", default=None, help='udp://HOST:PORT ("" : never woken).')
@click.option("--max-jobs", type=int, default=None, help="0: no limit.")
@click.option("--type", "type_name", default=None, help="Another server type.")
@click.option("--ssl-serial", default=None, help="Its new certificate's serial, hex.")
@click.option("--ssl-dn", default=None, help="Its new certificate's issuer DN.")
@wakeup_secret_options(removable=True)
@pass_ctx
def server_update(
    ctx: Context,
    name: str,
    wakeup_secret_file: TextIO | None,
    wakeup_secret: str | None,
    no_wakeup_secret: bool,
    **others: Any,
) -> None:
    """Change server NAME: only what is given changes.

    --no-wakeup-secret goes back to plain wake-ups, which the original
    grading server needs. --ssl-serial and --ssl-dn register a renewed
    certificate (the old one is refused from then on). Jobs it holds stay
    with it; a new type counts for the jobs it takes next.
    """
    changes = server_changes(wakeup_secret_file, wakeup_secret, no_wakeup_secret, **others)
    with ctx.transaction() as session:
        updated, said = fleet.update_server(session, name, changes, actor=CLI)
    if said:
        click.echo(f"Server {quote(updated.name)} updated: {'; '.join(said)}.")
    else:
        click.echo(f"Server {quote(updated.name)} unchanged: it already had these settings.")
    warn_if_signed(changes.wakeup_secret or "", f"server {quote(name)}", "server", name)


@server.command("remove", short_help="Delete a server; the jobs it holds are queued again.")
@click.argument("name")
@pass_ctx
def server_remove(ctx: Context, name: str) -> None:
    """Delete server NAME; the jobs it is grading go back to the queue at once.

    A server registered by a token registers again at its next request:
    revoke the token (`server-token revoke`) to keep it out. To let its
    jobs finish first, `server drain` it and wait until it holds none.
    """
    with ctx.transaction() as session:
        released = fleet.remove_server(session, name, actor=CLI)
    held = released.job_ids
    shown = ", ".join(f"#{j}" for j in held)
    click.echo(
        f"Server {quote(name)} removed"
        + (f"; {len(held)} job(s) it held queued again: {shown}." if held else ".")
    )
    wake(ctx, released.type_ids)


@server.command("list", short_help="Every server, its last poll and wake-ups.")
@pass_ctx
def server_list(ctx: Context) -> None:
    """Every server: type, jobs it holds, last poll, wake-up failures, signed wake-ups,
    and "drained" for a drained one."""
    with ctx.transaction() as session:
        rows = session.scalars(select(Server).order_by(Server.id)).all()
        held = dict(fleet.held_counts(session))
        echo_rows(
            (
                f"{row.id}\t{row.name}\ttype {row.type_id}\tholds {held.get(row.id, 0)}\t"
                f"last poll {when(row.last_poll_time)}\twake-up fails {row.wakeup_fails}\t"
                f"{'signed' if row.wakeup_secret else 'plain'} wake-ups"
                + ("\tdrained" if row.drained else "")
                for row in rows
            ),
            "No servers.",
        )


def register(cli: click.Group) -> None:
    cli.add_command(server)
