"""``api-token``: operators' bearer tokens for the JSON API (/api/v1)."""

from __future__ import annotations

import click
from sqlalchemy import select

from graderqueue.cli import Context, echo_rows, pass_ctx, when
from graderqueue.identity import api_callers
from graderqueue.quoting import quote
from graderqueue.store import events
from graderqueue.store.models import ApiToken


@click.group("api-token")
def api_token() -> None:
    """Bearer tokens for operators of the JSON API.

    An operator's token sees every platform's jobs; scope `read` only looks,
    `write` may also act. Platforms need none: they sign their own bearer
    tokens with their registered key.
    """


@api_token.command("add")
@click.argument("name")
@click.option("--scope", type=click.Choice(api_callers.SCOPES), default="read", show_default=True)
@pass_ctx
def api_token_add(ctx: Context, name: str, scope: str) -> None:
    """Make token NAME and print it, once (only its hash is kept)."""
    with ctx.transaction() as session:
        token = api_callers.add_token(session, name, scope)
        events.log_event(session, events.API_TOKEN_ADDED, message=f"{name} ({scope})")
    click.echo(f"API token {quote(name.strip())} ({scope}) added. Send it as")
    click.echo(f"Authorization: Bearer {token}")


@api_token.command("list")
@pass_ctx
def api_token_list(ctx: Context) -> None:
    """Every API token: name, scope, made, last used."""
    with ctx.transaction() as session:
        rows = session.scalars(select(ApiToken).order_by(ApiToken.name))
        echo_rows(
            (
                f"{row.name}\t{row.scope}\tmade {when(row.created_at)}\t"
                f"last used {when(row.last_used_at)}"
                for row in rows
            ),
            "No API tokens.",
        )


@api_token.command("revoke")
@click.argument("name")
@pass_ctx
def api_token_revoke(ctx: Context, name: str) -> None:
    """Delete token NAME: it is refused from now on."""
    with ctx.transaction() as session:
        api_callers.revoke_token(session, name)
        events.log_event(session, events.API_TOKEN_REVOKED, message=name.strip())
    click.echo(f"API token {quote(name.strip())} revoked.")


def register(cli: click.Group) -> None:
    cli.add_command(api_token)
