"""``platform add|list|update|disable|enable|remove``: the platforms that send jobs
(``platform key``: cli.security)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from sqlalchemy import select

from graderqueue.cli import Context, echo_rows, pass_ctx
from graderqueue.cli.lifecycle_common import CLI
from graderqueue.quoting import quote
from graderqueue.registry import actions as registry
from graderqueue.registry import lifecycle
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


@platform.command("list", short_help="Every platform, its state and fair share.")
@pass_ctx
def platform_list(ctx: Context) -> None:
    """Every platform: id, name, return URL, state, fair-share weight, cap on queued jobs."""
    with ctx.transaction() as session:
        rows = session.scalars(select(Platform).order_by(Platform.id))
        echo_rows(
            (
                f"{row.id}\t{row.name}\t{row.return_url or '-'}\t"
                f"{'disabled' if row.disabled else 'enabled'}\tweight {row.weight}\t"
                f"max queued {row.max_queued if row.max_queued is not None else '-'}"
                for row in rows
            ),
            "No platforms.",
        )


@platform.command("update", short_help="Change a platform's settings or keys.")
@click.argument("name")
@click.option("--return-url", default=None, help='Where results go ("" : nowhere).')
@click.option("--restrict-paths", default=None, help='Comma-separated task paths ("" : any).')
@click.option("--force-tag", default=None, help="A tag added to every job of this platform.")
@click.option("--no-force-tag", is_flag=True, help="Force no tag any more.")
@click.option(
    "--require-fresh/--no-require-fresh",
    default=None,
    help="Refuse tokens without exp/iat+jti or date (or stop refusing them).",
)
@click.option("--add-key", "add_keys", multiple=True, type=click.Path(dir_okay=False),
              help="PEM file of another public key to accept (repeatable).")  # fmt: skip
@click.option("--remove-key", "remove_keys", multiple=True, metavar="FINGERPRINT",
              help="Stop accepting the key with this fingerprint prefix (repeatable).")  # fmt: skip
@click.option(
    "--lenient-integers/--strict-integers",
    default=None,
    help='Read /api.php integers as the PHP queue\'s intval() did ("5.7" -> 5), or refuse them.',
)
@click.option("--weight", type=int, default=None, help="Fair-share weight, 1 to 1000.")
@click.option("--max-queued", type=int, default=None, help="Cap on its queued and held jobs.")
@click.option("--no-max-queued", is_flag=True, help="No cap on its queued jobs.")
@click.option("--callback-hosts", default=None,
              help='Hosts callback URLs may name, by commas ("": return URL host).')  # fmt: skip
@pass_ctx
def platform_update(ctx: Context, name: str, **options: Any) -> None:
    """Change platform NAME: only what is given changes.

    Keys given with --add-key are accepted before those of --remove-key
    stop, so one command replaces a key. Jobs already queued keep their tags
    and place in line; a new weight counts for jobs queued from now on.
    """
    changes = _platform_changes(options)
    with ctx.transaction() as session:
        said = lifecycle.update_platform(session, name, changes, actor=CLI)
    if said:
        click.echo(f"Platform {quote(name)} updated: {'; '.join(said)}.")
    else:
        click.echo(f"Platform {quote(name)} unchanged: it already had these settings.")


def _platform_changes(options: dict[str, Any]) -> lifecycle.PlatformChanges:
    if options["force_tag"] is not None and options["no_force_tag"]:
        raise click.UsageError("Give --force-tag or --no-force-tag, not both.")
    force_tag = "" if options["no_force_tag"] else options["force_tag"]
    changes = lifecycle.PlatformChanges(
        return_url=options["return_url"],
        restrict_paths=options["restrict_paths"],
        force_tag=force_tag,
        require_fresh=options["require_fresh"],
        lenient_integers=options["lenient_integers"],
        weight=options["weight"],
        max_queued=options["max_queued"],
        no_max_queued=bool(options["no_max_queued"]),
        callback_hosts=options["callback_hosts"],
        add_keys=tuple(_read_key(path) for path in options["add_keys"]),
        remove_keys=tuple(options["remove_keys"]),
    )
    if changes.is_empty():
        raise click.UsageError("Nothing to change: see --help for what can be changed.")
    return changes


@platform.command("disable", short_help="Refuse a platform's requests; its jobs stay.")
@click.argument("name")
@pass_ctx
def platform_disable(ctx: Context, name: str) -> None:
    """Refuse every request of platform NAME, on /api.php and /api/v1.

    Its queued jobs stay and are still graded, and their results are still
    delivered. `platform enable NAME` undoes it.
    """
    with ctx.transaction() as session:
        changed = lifecycle.set_platform_disabled(session, name, disabled=True, actor=CLI)
    click.echo(f"Platform {quote(name)} {'disabled' if changed else 'was already disabled'}.")


@platform.command("enable", short_help="Accept a disabled platform's requests again.")
@click.argument("name")
@pass_ctx
def platform_enable(ctx: Context, name: str) -> None:
    """Accept the requests of platform NAME again."""
    with ctx.transaction() as session:
        changed = lifecycle.set_platform_disabled(session, name, disabled=False, actor=CLI)
    click.echo(f"Platform {quote(name)} {'enabled' if changed else 'was already enabled'}.")


@platform.command("remove", short_help="Delete a platform, its keys and its jobs.")
@click.argument("name")
@click.option("--cancel-jobs", is_flag=True, help="Cancel its live jobs (else: refused).")
@pass_ctx
def platform_remove(ctx: Context, name: str, cancel_jobs: bool) -> None:
    """Delete platform NAME with its keys and every job it sent.

    Refused while it has live jobs (queued, held or being graded), unless
    --cancel-jobs. Its finished jobs and results still owed to it go too.
    To stop a platform for a while, `platform disable` it instead.
    """
    with ctx.transaction() as session:
        cancelled = lifecycle.remove_platform(session, name, cancel_jobs=cancel_jobs, actor=CLI)
    extra = f"; {cancelled} live job(s) cancelled" if cancelled else ""
    click.echo(f"Platform {quote(name)} removed{extra}.")


def register(cli: click.Group) -> None:
    cli.add_command(platform)
