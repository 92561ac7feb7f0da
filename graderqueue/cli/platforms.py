"""``platform add|list``: the platforms that send jobs (``platform key``: cli.security)."""

from __future__ import annotations

from pathlib import Path

import click
from sqlalchemy import select

from graderqueue.cli import Context, echo_rows, pass_ctx
from graderqueue.quoting import quote
from graderqueue.registry import actions as registry
from graderqueue.store.models import Platform


def _read_key(path: str) -> str:
    """The text of a public key file; `platform key add` (cli.security) reads keys too."""
    try:
        return Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise click.ClickException(f"Cannot read public key file {path}: {exc}") from exc


@click.group()
def platform() -> None:
    """Platforms that send jobs.

    A platform signs its requests with its private key; the queue checks
    them with the public keys registered here.
    """


@platform.command("add")
@click.argument("name")
@click.option(
    "--public-key",
    "public_key",
    required=True,
    type=click.Path(dir_okay=False),
    help="PEM file of the platform's public key.",
)
@click.option("--return-url", default="", help="Where results are posted (http or https).")
@click.option("--restrict-paths", default="", help="Comma-separated task paths it may use.")
@click.option("--force-tag", default=None, help="A tag added to every job of this platform.")
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
    """Register platform NAME with its public key."""
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
        click.echo(f"Platform {quote(new.name)} added (id {new.id}).")


@platform.command("list")
@pass_ctx
def platform_list(ctx: Context) -> None:
    """Every platform: id, name and return URL."""
    with ctx.transaction() as session:
        rows = session.scalars(select(Platform).order_by(Platform.id))
        echo_rows((f"{row.id}\t{row.name}\t{row.return_url or '-'}" for row in rows),
                  "No platforms.")  # fmt: skip


def register(cli: click.Group) -> None:
    cli.add_command(platform)
