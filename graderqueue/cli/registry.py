"""``tag``, ``type``, ``platform``, ``server`` and ``server-token`` commands."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import click
from sqlalchemy import select

from graderqueue.cli import Context, echo_rows, pass_ctx, when
from graderqueue.config import Settings
from graderqueue.quoting import quote
from graderqueue.registry import actions as registry
from graderqueue.store.models import Platform, Server, ServerToken, ServerType, Tag

SIGNED_WAKEUPS_WARNING = (
    "Warning: wake-ups to {what} are now signed. Only this project's graderserver "
    "(given the same wakeup.secret) understands signed wake-ups; the original grading "
    "server ignores them and would never be woken. To send plain wake-ups again: "
    "graderqueue {command} update {name} --no-wakeup-secret"
)


def _read_key(path: str) -> str:
    try:
        return Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise click.ClickException(f"Cannot read public key file {path}: {exc}") from exc


# -- wake-up secrets --------------------------------------------------------------


def wakeup_secret_options(*, removable: bool) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--wakeup-secret-file`` (``-`` = stdin), ``--wakeup-secret``; to update, also
    ``--no-wakeup-secret``."""

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        options = [
            click.option(
                "--wakeup-secret-file",
                type=click.File("r"),
                default=None,
                metavar="PATH",
                help="Sign wake-ups with the secret in this file (- reads standard input).",
            ),
            click.option(
                "--wakeup-secret",
                default=None,
                metavar="SECRET",
                help="The same, given on the command line: it shows in the process list "
                "and the shell history, prefer --wakeup-secret-file.",
            ),
        ]
        if removable:
            options.append(
                click.option(
                    "--no-wakeup-secret",
                    is_flag=True,
                    help="Send plain wake-ups again (what the original grading server needs).",
                )
            )
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


def _given_secret(
    secret_file: TextIO | None, secret: str | None, remove: bool = False
) -> str | None:
    """The secret asked for: None when no option was given, "" to remove it."""
    given = [secret_file is not None, secret is not None, remove]
    if sum(given) > 1:
        raise click.UsageError(
            "Give only one of --wakeup-secret-file, --wakeup-secret and --no-wakeup-secret."
        )
    if remove:
        return ""
    if secret_file is not None:
        try:
            text = secret_file.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise click.ClickException(f"Cannot read the wake-up secret: {exc}") from exc
        if not text.strip():
            raise click.ClickException("The wake-up secret file is empty.")
        return text
    if secret is not None and not secret.strip():
        raise click.UsageError("--wakeup-secret must not be empty (use --no-wakeup-secret).")
    return secret


def _warn_if_signed(secret: str, what: str, command: str, name: str) -> None:
    if secret:
        click.echo(SIGNED_WAKEUPS_WARNING.format(what=what, command=command, name=name), err=True)


# -- tags and server types --------------------------------------------------------


@click.group()
def tag() -> None:
    """Tags: what a job needs, what types offer.

    A job sent with tags goes only to servers whose type has every one of
    them.
    """


@tag.command("add")
@click.argument("name")
@pass_ctx
def tag_add(ctx: Context, name: str) -> None:
    """Create tag NAME (no commas).

    Platforms name it in a job's tags; give it to the server types that can
    run such jobs with `type add --tags`.
    """
    with ctx.transaction() as session:
        new = registry.add_tag(session, name)
        click.echo(f"Tag {quote(new.name)} added (id {new.id}).")


@tag.command("list")
@pass_ctx
def tag_list(ctx: Context) -> None:
    """Every tag: id and name."""
    with ctx.transaction() as session:
        rows = session.scalars(select(Tag).order_by(Tag.id))
        echo_rows((f"{row.id}\t{row.name}" for row in rows), "No tags.")


@click.group("type")
def type_group() -> None:
    """Server types: the tags their servers handle.

    Every grading server has one type; it gets the jobs whose tags are all
    among its type's tags.
    """


def _untagged_type_note(settings: Settings, name: str) -> str:
    """What a type without tags runs: the rule of routing.resolve, in words."""
    note = (
        f"Server type {quote(name)} has no tags: its servers get only jobs that end up "
        "with no tag at all, sent without tags by a platform that forces none"
    )
    if settings.default_tags:
        defaults = ",".join(settings.default_tags)
        return (
            f"{note}. Since default_tags is set ({defaults}), every job gets a tag: "
            "this type will never get a job. Add tags with --tags."
        )
    return f"{note} (the default_tags setting is empty). Other types can get those jobs too."


@type_group.command("add", short_help="Create a server type with its tags.")
@click.argument("name")
@click.option("--tags", default="", help="Comma-separated tag names.")
@pass_ctx
def type_add(ctx: Context, name: str, tags: str) -> None:
    """Create server type NAME handling the tags given by --tags.

    The tags must exist (`tag add`). Without --tags the type's servers only
    get jobs that carry no tag at all.
    """
    names = [t.strip() for t in tags.split(",") if t.strip()]
    with ctx.transaction() as session:
        new = registry.add_type(session, name, names)
        shown = ", ".join(quote(n) for n in names)
        click.echo(f"Server type {quote(new.name)} added (id {new.id}) with tags {shown}."
                   if names else f"Server type {quote(new.name)} added (id {new.id}).")  # fmt: skip
    if not names:
        click.echo(_untagged_type_note(ctx.settings, name))


@type_group.command("list")
@pass_ctx
def type_list(ctx: Context) -> None:
    """Every server type: id, name and tags."""
    with ctx.transaction() as session:
        rows = session.scalars(select(ServerType).order_by(ServerType.id))
        echo_rows(
            (
                f"{row.id}\t{row.name}\t{','.join(registry.type_tags(session, row.id)) or '-'}"
                for row in rows
            ),
            "No server types.",
        )


# -- platforms ---------------------------------------------------------------------


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
    secret = _given_secret(wakeup_secret_file, wakeup_secret) or ""
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
    _warn_if_signed(secret, f"server {quote(name)}", "server", name)


def _server_changes(
    wakeup_secret_file: TextIO | None, wakeup_secret: str | None, no_wakeup_secret: bool
) -> registry.ServerChanges:
    """What `server update` and `server-token update` were asked to change (never nothing)."""
    changes = registry.ServerChanges(
        wakeup_secret=_given_secret(wakeup_secret_file, wakeup_secret, no_wakeup_secret)
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
    _warn_if_signed(changes.wakeup_secret or "", f"server {quote(name)}", "server", name)


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
    secret = _given_secret(wakeup_secret_file, wakeup_secret) or ""
    with ctx.transaction() as session:
        new = registry.add_server_token(
            session, name, type_name, max_jobs=max_jobs, wakeup_secret=secret
        )
    click.echo(new.token)
    _warn_if_signed(secret, f"servers of token {quote(name)}", "server-token", name)


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
    _warn_if_signed(changes.wakeup_secret or "", what, "server-token", name)


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
    for group in (tag, type_group, platform, server, server_token):
        cli.add_command(group)
