"""``server-token add|update|list|revoke|rotate``: how grading servers register themselves."""

from __future__ import annotations

from typing import TextIO

import click

from graderqueue.cli import Context, echo_rows, pass_ctx, when
from graderqueue.cli.lifecycle_common import CLI, wake
from graderqueue.cli.servers import server_changes
from graderqueue.cli.wakeup_secrets import given_secret, wakeup_secret_options, warn_if_signed
from graderqueue.quoting import quote
from graderqueue.registry import actions as registry
from graderqueue.registry import fleet


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
    changes = server_changes(wakeup_secret_file, wakeup_secret, no_wakeup_secret)
    with ctx.transaction() as session:
        token, servers = fleet.update_server_token(session, name, changes, actor=CLI)
    state = "wake-ups signed" if changes.wakeup_secret else "plain wake-ups"
    click.echo(
        f"Server token {quote(token.name)} and its {servers} registered server(s) updated: {state}."
    )
    what = f"servers of token {quote(name)}"
    warn_if_signed(changes.wakeup_secret or "", what, "server-token", name)


@server_token.command("list", short_help="Every server token.")
@pass_ctx
def server_token_list(ctx: Context) -> None:
    """Every token: id, name, type, max jobs, wake-ups, servers registered, created (UTC).

    The tokens themselves are not kept, so never shown.
    """
    with ctx.transaction() as session:
        rows = fleet.token_rows(session)
    echo_rows(
        (
            f"{row.id}\t{row.name}\ttype {row.type_name}\tmax jobs {row.max_jobs}\t"
            f"{'signed' if row.signed_wakeups else 'plain'} wake-ups\t"
            f"{row.servers} server(s)\tcreated {when(row.created_at)}"
            for row in rows
        ),
        "No server tokens.",
    )


@server_token.command("revoke", short_help="Delete a token and the servers it registered.")
@click.argument("name")
@pass_ctx
def server_token_revoke(ctx: Context, name: str) -> None:
    """Delete token NAME: it stops working at once, and so do the servers it registered.

    Those servers are removed (their only credential was the token); the
    jobs they were grading go back to the queue. For a leaked token.
    """
    with ctx.transaction() as session:
        released = fleet.revoke_token(session, name, actor=CLI)
    gone = ", ".join(quote(s) for s in released.servers) or "none"
    click.echo(
        f"Server token {quote(name)} revoked. Servers removed: {gone}; "
        f"{len(released.job_ids)} job(s) they held queued again."
    )
    wake(ctx, released.type_ids)


@server_token.command("rotate", short_help="A new token in place of the old one.")
@click.argument("name")
@pass_ctx
def server_token_rotate(ctx: Context, name: str) -> None:
    """Give token NAME a new secret and print it, only once; the old one stops at once.

    Its servers stay registered (with the jobs they hold) and authenticate
    again once their configuration has the new token.
    """
    with ctx.transaction() as session:
        new = fleet.rotate_token(session, name, actor=CLI)
    click.echo(new.token)


def register(cli: click.Group) -> None:
    cli.add_command(server_token)
