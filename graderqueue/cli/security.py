"""``keys rotate|list|retire``, ``platform key add|remove|list``, ``remote-user``.

Key rotation never needs a moment where some tokens fail: the queue
decrypts with every key pair in its key folder (the JWE ``kid`` picks one),
so a new pair is added first, announced to platforms, made active with the
``key_name`` setting, and the old one is retired only once nobody uses it.
See docs/SECURITY.md.
"""

from __future__ import annotations

import re
import sys
from datetime import UTC, datetime

import click
from sqlalchemy import select

from graderqueue.cli import Context, echo_rows, fail_clearly, pass_ctx, when
from graderqueue.cli.lifecycle_common import CLI
from graderqueue.cli.platforms import _read_key, platform
from graderqueue.cli.setup import keys_group
from graderqueue.identity import passwords
from graderqueue.protocol import keys
from graderqueue.quoting import quote
from graderqueue.registry import actions as registry
from graderqueue.registry import lifecycle
from graderqueue.store import events
from graderqueue.store.models import PlatformKey, RemoteUser

RETIRED_DIR = "retired"
_DATED_SUFFIX = re.compile(r"-\d{8}(-\d+)?$")


def _queue_keys(ctx: Context) -> keys.QueueKeys:
    with fail_clearly():
        return keys.QueueKeys(ctx.settings.resolved_key_dir, ctx.settings.key_name)


def _default_new_name(active: str, existing: list[str]) -> str:
    base = _DATED_SUFFIX.sub("", active) + "-" + datetime.now(UTC).strftime("%Y%m%d")
    name, n = base, 1
    while name in existing:
        n += 1
        name = f"{base}-{n}"
    return name


def _setting_hint(name: str) -> str:
    return f'key_name = "{name}" (config file) or GRADERQUEUE_KEY_NAME={name}'


# -- the queue's key pairs ----------------------------------------------------


@keys_group.command("rotate", short_help="Create a new key pair; print the steps.")
@click.option("--name", "new_name", default=None, help="Name (kid) of the new key pair.")
@click.option(
    "--bits", default="2048", show_default=True, type=click.Choice(["2048", "3072", "4096"])
)
@pass_ctx
def keys_rotate(ctx: Context, new_name: str | None, bits: str) -> None:
    """Create a new key pair next to the active one, and print the rotation steps.

    The new pair is not active yet: the queue decrypts with both as soon as
    it restarts, and signs results with the one named by key_name.
    """
    queue_keys = _queue_keys(ctx)
    key_dir = ctx.settings.resolved_key_dir
    old = queue_keys.active_name
    name = new_name or _default_new_name(old, queue_keys.names())
    with fail_clearly():
        if name in queue_keys.names():
            raise keys.KeyProblem(f"A key named {quote(name)} already exists in {key_dir}.")
        if not keys.create_key(key_dir, name, int(bits)):
            raise keys.KeyProblem(f"A key named {quote(name)} already exists in {key_dir}.")
    public = (key_dir / f"{name}.pub.pem").read_text()
    click.echo(f"Created key pair {quote(name)} in {key_dir}; {quote(old)} stays active for now.")
    click.echo("")
    click.echo("Rotation steps:")
    click.echo(
        "  1. Restart or reload the queue (gunicorn: kill -HUP <master pid>) on every node.\n"
        "     From then on it decrypts tokens made for either key: the token's kid picks it."
    )
    click.echo(
        f"  2. Give every platform the new key name {quote(name)} and public key below. Each one\n"
        "     encrypts its requests to it (kid = the new name) whenever it is ready, and\n"
        "     should accept results signed by either key while the rotation lasts."
    )
    click.echo(
        f"  3. Make it active: set {_setting_hint(name)}\n"
        "     and restart again. Results are signed with the new key from then on."
    )
    click.echo(
        f"  4. Once no platform encrypts to {quote(old)} any more: graderqueue keys retire {old}"
    )
    click.echo("")
    click.echo(f"Key name: {name}")
    click.echo(public, nl=False)


@keys_group.command("list", short_help="The queue's key pairs; which one signs.")
@pass_ctx
def keys_list(ctx: Context) -> None:
    """Every key pair the queue decrypts with; the active one signs results."""
    queue_keys = _queue_keys(ctx)
    others = [name for name in queue_keys.names() if name != queue_keys.active_name]
    for name in [queue_keys.active_name, *others]:
        key = queue_keys.for_kid(name)
        mark = "active" if name == queue_keys.active_name else "decrypt only"
        click.echo(f"{name}\t{keys.fingerprint(key.public_pem)[:16]}\t{mark}")


@keys_group.command("retire", short_help="Stop decrypting with a key pair.")
@click.argument("name")
@pass_ctx
def keys_retire(ctx: Context, name: str) -> None:
    """Stop decrypting with key pair NAME: move it to <key_dir>/retired/.

    Refused for the active key. Takes effect when the queue restarts.
    """
    queue_keys = _queue_keys(ctx)
    key_dir = ctx.settings.resolved_key_dir
    if name == queue_keys.active_name:
        raise click.ClickException(
            f"{quote(name)} is the active key (key_name): make another key active first."
        )
    if name not in queue_keys.names():
        raise click.ClickException(f"No key named {quote(name)} in {key_dir}.")
    retired = key_dir / RETIRED_DIR
    retired.mkdir(mode=0o700, exist_ok=True)
    for suffix in (".pem", ".pub.pem"):
        source = key_dir / f"{name}{suffix}"
        if source.exists():
            target = retired / source.name
            if target.exists():
                raise click.ClickException(f"{target} already exists; move it away first.")
            source.rename(target)
    click.echo(
        f"Key pair {quote(name)} moved to {retired}; the queue stops decrypting with it when it "
        "restarts. Delete the private key there once you no longer need it."
    )


# -- platforms' public keys -----------------------------------------------------


@platform.group("key")
def platform_key() -> None:
    """A platform's public keys: add, remove, list.

    Several may be active at once, during a rotation.
    """


@platform_key.command("add", short_help="Accept another key of a platform.")
@click.argument("name")
@click.option("--public-key", "public_key", required=True, type=click.Path(dir_okay=False))
@pass_ctx
def platform_key_add(ctx: Context, name: str, public_key: str) -> None:
    """Accept tokens signed with another key of platform NAME (the old ones stay valid)."""
    pem = _read_key(public_key)
    with ctx.transaction() as session:
        key = registry.add_platform_key(session, name, pem)
        count = _active_count(session, key.platform_id)
        what = f"platform {name}: key {key.fingerprint[:16]} accepted"
        lifecycle.log_change(session, events.PLATFORM_UPDATED, what, CLI)
        click.echo(
            f"Key {key.fingerprint[:16]} active for platform {quote(name)} ({count} active)."
        )


@platform_key.command("remove", short_help="Stop accepting one key of a platform.")
@click.argument("name")
@click.argument("fingerprint_prefix")
@pass_ctx
def platform_key_remove(ctx: Context, name: str, fingerprint_prefix: str) -> None:
    """Stop accepting tokens signed with one key of platform NAME.

    FINGERPRINT_PREFIX: at least 8 hex digits of the fingerprint that
    `platform key list` shows. The platform's last active key cannot go.
    """
    with ctx.transaction() as session:
        key = registry.remove_platform_key(session, name, fingerprint_prefix)
        count = _active_count(session, key.platform_id)
        what = f"platform {name}: key {key.fingerprint[:16]} no longer accepted"
        lifecycle.log_change(session, events.PLATFORM_UPDATED, what, CLI)
        click.echo(
            f"Key {key.fingerprint[:16]} no longer accepted for platform {quote(name)} "
            f"({count} active)."
        )


@platform_key.command("list", short_help="A platform's keys: fingerprint, state, date.")
@click.argument("name")
@pass_ctx
def platform_key_list(ctx: Context, name: str) -> None:
    """Fingerprint (SHA-256 of the public key), state and date added (UTC) of each key."""
    with ctx.transaction() as session:
        row = registry.platform_by_name(session, name)
        for key in session.scalars(
            select(PlatformKey).where(PlatformKey.platform_id == row.id).order_by(PlatformKey.id)
        ):
            state = "active" if key.active else "removed"
            click.echo(f"{key.fingerprint}\t{state}\t{when(key.created_at, '-')}")


def _active_count(session, platform_id: int) -> int:  # type: ignore[no-untyped-def]
    session.flush()
    return len(
        session.scalars(
            select(PlatformKey.id).where(
                PlatformKey.platform_id == platform_id, PlatformKey.active.is_(True)
            )
        ).all()
    )


# -- remote users (rRequest) --------------------------------------------------


@click.group("remote-user")
def remote_user() -> None:
    """Users of plain JSON requests (rRequest).

    They send requests with a user name and password instead of a signed
    token.
    """


def _read_password(password_stdin: bool) -> str:
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    if not password:
        raise click.ClickException("The password must not be empty.")
    return password


def _username(value: str) -> str:
    name = value.strip()
    if not name or len(name) > 255 or name != value:
        raise click.ClickException(f"Invalid user name {quote(value)}.")
    return name


@remote_user.command("add", short_help="Create a remote user.")
@click.argument("username")
@click.option(
    "--password-stdin", is_flag=True, help="Read the password from the first line of stdin."
)
@pass_ctx
def remote_user_add(ctx: Context, username: str, password_stdin: bool) -> None:
    """Create USER; the password is stored as an Argon2id hash, never in clear."""
    name = _username(username)
    password = _read_password(password_stdin)
    with ctx.transaction() as session:
        if session.scalar(select(RemoteUser.id).where(RemoteUser.username == name)) is not None:
            raise click.ClickException(f"Remote user {quote(name)} already exists.")
        session.add(RemoteUser(username=name, password_hash=passwords.hash_password(password)))
    click.echo(f"Remote user {quote(name)} added.")


@remote_user.command("passwd")
@click.argument("username")
@click.option(
    "--password-stdin", is_flag=True, help="Read the password from the first line of stdin."
)
@pass_ctx
def remote_user_passwd(ctx: Context, username: str, password_stdin: bool) -> None:
    """Set a new password for USER."""
    password = _read_password(password_stdin)
    with ctx.transaction() as session:
        user = session.scalars(select(RemoteUser).where(RemoteUser.username == username)).first()
        if user is None:
            raise click.ClickException(f"No remote user {quote(username)}.")
        user.password_hash = passwords.hash_password(password)
    click.echo(f"Password of remote user {quote(username)} changed.")


@remote_user.command("remove")
@click.argument("username")
@pass_ctx
def remote_user_remove(ctx: Context, username: str) -> None:
    """Delete remote user USER.

    Its requests are refused from then on.
    """
    with ctx.transaction() as session:
        user = session.scalars(select(RemoteUser).where(RemoteUser.username == username)).first()
        if user is None:
            raise click.ClickException(f"No remote user {quote(username)}.")
        session.delete(user)
    click.echo(f"Remote user {quote(username)} removed.")


@remote_user.command("list", short_help="Every remote user; those with a PHP md5 hash say so.")
@pass_ctx
def remote_user_list(ctx: Context) -> None:
    """Every remote user: id and name, and whether it still has a PHP queue's md5 hash."""
    with ctx.transaction() as session:
        users = session.scalars(select(RemoteUser).order_by(RemoteUser.id))
        echo_rows((_remote_user_row(user) for user in users), "No remote users.")


def _remote_user_row(user: RemoteUser) -> str:
    row = f"{user.id}\t{user.username}"
    if passwords.is_legacy_md5(user.password_hash):
        row += "\tmd5, not used since the move"  # docs/MIGRATING.md
    return row


def register(cli: click.Group) -> None:
    # keys_group and platform already carry their new subcommands (decorators above).
    cli.add_command(remote_user)
