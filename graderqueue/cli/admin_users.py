"""``admin add``, ``passwd``, ``remove``, ``unlock`` and ``list``: web interface accounts."""

from __future__ import annotations

import sys

import click
from sqlalchemy import select

from graderqueue.admin import accounts
from graderqueue.cli import Context, pass_ctx, when
from graderqueue.cli.lifecycle_common import CLI
from graderqueue.identity import login_throttle, passwords
from graderqueue.quoting import quote
from graderqueue.store.models import AdminUser

PASSWORD_MIN = 8
USERNAME_MAX = 255


def _read_password(from_stdin: bool) -> str:
    """From the first line of stdin (scripts), else a hidden prompt asked twice."""
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    if len(password) < PASSWORD_MIN:
        raise click.ClickException(f"The password needs at least {PASSWORD_MIN} characters.")
    return password


def _username(value: str) -> str:
    name = value.strip()
    if not name or len(name) > USERNAME_MAX:
        raise click.ClickException(f"Invalid user name {quote(value)}.")
    return name


password_stdin = click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the password from the first line of standard input instead of prompting.",
)


@click.group("admin")
def admin() -> None:
    """Accounts of the admin web interface.

    Passwords are stored as Argon2id hashes.
    """


@admin.command("add")
@click.argument("username")
@password_stdin
@pass_ctx
def admin_add(ctx: Context, username: str, password_stdin: bool) -> None:
    """Create an admin account."""
    name = _username(username)
    password = _read_password(password_stdin)
    with ctx.transaction() as session:
        if session.scalar(select(AdminUser.id).where(AdminUser.username == name)) is not None:
            raise click.ClickException(
                f"Admin {quote(name)} already exists (change its password with `admin passwd`)."
            )
        session.add(AdminUser(username=name, password_hash=passwords.hash_password(password)))
    click.echo(f"Admin {quote(name)} added.")


@admin.command("passwd", short_help="Set an admin's password; ends its sessions.")
@click.argument("username")
@password_stdin
@pass_ctx
def admin_passwd(ctx: Context, username: str, password_stdin: bool) -> None:
    """Set a new password for an admin account; its open sessions end."""
    name = _username(username)
    password = _read_password(password_stdin)
    with ctx.transaction() as session:
        user = session.scalars(select(AdminUser).where(AdminUser.username == name)).first()
        if user is None:
            raise click.ClickException(f"No admin {quote(name)}.")
        user.password_hash = passwords.hash_password(password)
        user.end_sessions()
    click.echo(f"Password of {quote(name)} changed; its sessions are ended.")


@admin.command("remove", short_help="Delete an admin account.")
@click.argument("username")
@pass_ctx
def admin_remove(ctx: Context, username: str) -> None:
    """Delete an admin account; its open sessions end at their next request.

    Logged in the event log.

    A session is tied to the account's random session stamp, not to its
    name: an account made again under the same name does not revive them.
    """
    name = _username(username)
    with ctx.transaction() as session:
        accounts.remove_account(session, name, actor=CLI)
    click.echo(f"Admin {quote(name)} removed.")


@admin.command("unlock", short_help="Lift the login throttle of an account.")
@click.argument("username")
@pass_ctx
def admin_unlock(ctx: Context, username: str) -> None:
    """Forget the failed logins counted against an account (see docs/ADMIN.md)."""
    name = _username(username)
    with ctx.transaction() as session:
        forgotten = login_throttle.forget_account(session, name)
    click.echo(
        f"Login attempts of {quote(name)} forgotten."
        if forgotten
        else f"{quote(name)} was not throttled."
    )


@admin.command("list")
@pass_ctx
def admin_list(ctx: Context) -> None:
    """Admin accounts, with their last login."""
    with ctx.transaction() as session:
        users = session.scalars(select(AdminUser).order_by(AdminUser.username)).all()
        if not users:
            click.echo("No admin accounts.")
        for user in users:
            click.echo(
                f"{user.username}\tcreated {when(user.created_at)}\t"
                f"last login {when(user.last_login)}"
            )


def register(cli: click.Group) -> None:
    cli.add_command(admin)
