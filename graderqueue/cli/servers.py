"""``server`` and ``server-token`` commands: grading servers and how they register."""

from __future__ import annotations

from typing import TextIO

import click
from sqlalchemy import select

from graderqueue.cli import Context, echo_rows, pass_ctx, when
from graderqueue.cli.wakeup_secrets import given_secret, wakeup_secret_options, warn_if_signed
from graderqueue.quoting import quote
from graderqueue.registry import actions as registry
from graderqueue.store.models import Server, ServerToken

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


def _server_changes(
    wakeup_secret_file: TextIO | None, wakeup_secret: str | None, no_wakeup_secret: bool
) -> registry.ServerChanges:
    """What `server update` and `server-token update` were asked to change (never nothing)."""
    changes = registry.ServerChanges(
        wakeup_secret=given_secret(wakeup_secret_file, wakeup_secret, no_wakeup_secret)
    )
    if changes.is_empty():
        raise click.UsageError("Nothing to change: see --help for what can be changed.")
    return changes


@server.command("update", short_help="Change a server's wake-up secret.")
@click.argument("name")
@wakeup_secret_options(removable=True)
@pass_ctx
def server_update(
    ctx: Context,
    name: str,
    wakeup_secret_file: TextIO | None,
    wakeup_secret: str | None,
    no_wakeup_secret: bool,
) -> None:
    """Change server NAME: for now its wake-up secret.

    --no-wakeup-secret goes back to plain wake-ups, which the original
    grading server needs.
    """
    changes = _server_changes(wakeup_secret_file, wakeup_secret, no_wakeup_secret)
    with ctx.transaction() as session:
        updated = registry.update_server(session, name, changes)
    click.echo(f"Server {quote(updated.name)} updated: {_secret_state(changes)}.")
    warn_if_signed(changes.wakeup_secret or "", f"server {quote(name)}", "server", name)


def _secret_state(changes: registry.ServerChanges) -> str:
    return "wake-ups signed" if changes.wakeup_secret else "plain wake-ups"


@server.command("list", short_help="Every server, its last poll and wake-ups.")
@pass_ctx
def server_list(ctx: Context) -> None:
    """Every server: type, last poll, wake-up failures, signed wake-ups."""
    with ctx.transaction() as session:
        rows = session.scalars(select(Server).order_by(Server.id))
        echo_rows(
            (
                f"{row.id}\t{row.name}\ttype {row.type_id}\tlast poll {when(row.last_poll_time)}\t"
                f"wake-up fails {row.wakeup_fails}\t"
                f"{'signed' if row.wakeup_secret else 'plain'} wake-ups"
                for row in rows
            ),
            "No servers.",
        )


# -- server tokens ---------------------------------------------------------------


@click.group("server-token")
def server_token() -> None:
    """Tokens for servers to register themselves.

    A grading server that presents such a token is registered at its first
    request, with the token's type, max jobs and wake-up secret.
    """


@server_token.command("add")
@click.argument("name")
@click.option("--type", "type_name", required=True, help="Type of the servers it registers.")
@click.option("--max-jobs", default=1, show_default=True, type=int, help="0: no limit.")
@wakeup_secret_options(removable=False)
@pass_ctx
def server_token_add(
    ctx: Context,
    name: str,
    type_name: str,
    max_jobs: int,
    wakeup_secret_file: TextIO | None,
    wakeup_secret: str | None,
) -> None:
    """Create token NAME and print it, only once.

    The queue keeps only its hash: copy it into the grading servers'
    configuration now.
    """
    secret = given_secret(wakeup_secret_file, wakeup_secret) or ""
    with ctx.transaction() as session:
        new = registry.add_server_token(
            session, name, type_name, max_jobs=max_jobs, wakeup_secret=secret
        )
    click.echo(new.token)
    warn_if_signed(secret, f"servers of token {quote(name)}", "server-token", name)


@server_token.command("update", short_help="Change a token and its servers.")
@click.argument("name")
@wakeup_secret_options(removable=True)
@pass_ctx
def server_token_update(
    ctx: Context,
    name: str,
    wakeup_secret_file: TextIO | None,
    wakeup_secret: str | None,
    no_wakeup_secret: bool,
) -> None:
    """Change token NAME and the servers it registered.

    For now its wake-up secret; the servers already registered with the
    token get the same change.
    """
    changes = _server_changes(wakeup_secret_file, wakeup_secret, no_wakeup_secret)
    with ctx.transaction() as session:
        token, servers = registry.update_server_token(session, name, changes)
    click.echo(
        f"Server token {quote(token.name)} and its {servers} registered server(s) updated: "
        f"{_secret_state(changes)}."
    )
    what = f"servers of token {quote(name)}"
    warn_if_signed(changes.wakeup_secret or "", what, "server-token", name)


@server_token.command("list", short_help="Every server token.")
@pass_ctx
def server_token_list(ctx: Context) -> None:
    """Every token: id, name, type, max jobs, signed wake-ups."""
    with ctx.transaction() as session:
        rows = session.scalars(select(ServerToken).order_by(ServerToken.id))
        echo_rows(
            (
                f"{row.id}\t{row.name}\ttype {row.type_id}\tmax jobs {row.max_concurrent_jobs}\t"
                f"{'signed' if row.wakeup_secret else 'plain'} wake-ups"
                for row in rows
            ),
            "No server tokens.",
        )


def register(cli: click.Group) -> None:
    for group in (server, server_token):
        cli.add_command(group)
