"""``tag``, ``type``, ``platform``, ``server`` and ``server-token`` commands."""

from __future__ import annotations

from pathlib import Path

import click
from sqlalchemy import select

from .. import registry
from ..models import Platform, Server, ServerType, Tag
from . import Context, pass_ctx


def _read_key(path: str) -> str:
    try:
        return Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise click.ClickException(f"Cannot read public key file {path}: {exc}") from exc


@click.group()
def tag() -> None:
    """Tags: capabilities a job needs and server types offer."""


@tag.command("add")
@click.argument("name")
@pass_ctx
def tag_add(ctx: Context, name: str) -> None:
    with ctx.transaction() as session:
        new = registry.add_tag(session, name)
        click.echo(f"Tag {new.name!r} added (id {new.id}).")


@tag.command("list")
@pass_ctx
def tag_list(ctx: Context) -> None:
    with ctx.transaction() as session:
        for row in session.scalars(select(Tag).order_by(Tag.id)):
            click.echo(f"{row.id}\t{row.name}")


@click.group("type")
def type_group() -> None:
    """Server types: the set of tags their servers handle."""


@type_group.command("add")
@click.argument("name")
@click.option("--tags", default="", help="Comma-separated tag names.")
@pass_ctx
def type_add(ctx: Context, name: str, tags: str) -> None:
    names = [t.strip() for t in tags.split(",") if t.strip()]
    with ctx.transaction() as session:
        new = registry.add_type(session, name, names)
        click.echo(f"Server type {new.name!r} added (id {new.id}) with tags {names}.")


@type_group.command("list")
@pass_ctx
def type_list(ctx: Context) -> None:
    with ctx.transaction() as session:
        for row in session.scalars(select(ServerType).order_by(ServerType.id)):
            click.echo(f"{row.id}\t{row.name}\t{','.join(registry.type_tags(session, row.id))}")


@click.group()
def platform() -> None:
    """Platforms that send jobs."""


@platform.command("add")
@click.argument("name")
@click.option("--public-key", "public_key", required=True, type=click.Path(dir_okay=False))
@click.option("--return-url", default="")
@click.option("--restrict-paths", default="", help="Comma-separated paths.")
@click.option("--force-tag", default=None)
@click.option("--require-fresh", is_flag=True, help="Refuse tokens without exp/iat+jti or date.")
@pass_ctx
def platform_add(
    ctx: Context,
    name: str,
    public_key: str,
    return_url: str,
    restrict_paths: str,
    force_tag: str | None,
    require_fresh: bool,
) -> None:
    pem = _read_key(public_key)
    with ctx.transaction() as session:
        new = registry.add_platform(
            session,
            name,
            pem,
            return_url=return_url,
            restrict_paths=restrict_paths,
            force_tag=force_tag,
            require_fresh=require_fresh,
        )
        click.echo(f"Platform {new.name!r} added (id {new.id}).")


@platform.command("list")
@pass_ctx
def platform_list(ctx: Context) -> None:
    with ctx.transaction() as session:
        for row in session.scalars(select(Platform).order_by(Platform.id)):
            click.echo(f"{row.id}\t{row.name}\t{row.return_url or '-'}")


@click.group()
def server() -> None:
    """Grading servers identified by a client certificate."""


@server.command("add")
@click.argument("name")
@click.option("--type", "type_name", required=True)
@click.option("--ssl-serial", required=True, help="Certificate serial, hex.")
@click.option("--ssl-dn", required=True, help="Issuer DN, RFC 2253 or /C=../O=.. form.")
@click.option("--wakeup-url", default="", help="udp://HOST:PORT")
@click.option("--max-jobs", default=1, show_default=True, type=int)
@click.option("--wakeup-secret", default="", help="Sign wake-ups with this shared secret.")
@pass_ctx
def server_add(
    ctx: Context,
    name: str,
    type_name: str,
    ssl_serial: str,
    ssl_dn: str,
    wakeup_url: str,
    max_jobs: int,
    wakeup_secret: str,
) -> None:
    with ctx.transaction() as session:
        new = registry.add_server(
            session,
            name,
            type_name,
            ssl_serial=ssl_serial,
            ssl_dn=ssl_dn,
            wakeup_url=wakeup_url,
            max_jobs=max_jobs,
            wakeup_secret=wakeup_secret,
        )
        click.echo(f"Server {new.name!r} added (id {new.id}).")


@server.command("list")
@pass_ctx
def server_list(ctx: Context) -> None:
    with ctx.transaction() as session:
        for row in session.scalars(select(Server).order_by(Server.id)):
            last = row.last_poll_time.isoformat(" ", "seconds") if row.last_poll_time else "never"
            click.echo(
                f"{row.id}\t{row.name}\ttype {row.type_id}\tlast poll {last}\t"
                f"wake-up fails {row.wakeup_fails}"
            )


@click.group("server-token")
def server_token() -> None:
    """Tokens with which grading servers register themselves."""


@server_token.command("add")
@click.argument("name")
@click.option("--type", "type_name", required=True)
@click.option("--max-jobs", default=1, show_default=True, type=int)
@click.option("--wakeup-secret", default="", help="Sign wake-ups with this shared secret.")
@pass_ctx
def server_token_add(
    ctx: Context, name: str, type_name: str, max_jobs: int, wakeup_secret: str
) -> None:
    """Create a token and print it (only once: the queue keeps only its hash)."""
    with ctx.transaction() as session:
        new = registry.add_server_token(
            session, name, type_name, max_jobs=max_jobs, wakeup_secret=wakeup_secret
        )
    click.echo(new.token)


def register(cli: click.Group) -> None:
    for group in (tag, type_group, platform, server, server_token):
        cli.add_command(group)
