"""Wake-up secret options shared by ``server`` and ``server-token`` commands.

A secret is given in a file (or on standard input) or on the command line,
or removed by an update. When wake-ups become signed the operator is warned:
only this project's graderserver understands them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TextIO

import click

SIGNED_WAKEUPS_WARNING = (
    "Warning: wake-ups to {what} are now signed. Only this project's graderserver "
    "(given the same wakeup.secret) understands signed wake-ups; the original grading "
    "server ignores them and would never be woken. To send plain wake-ups again: "
    "graderqueue {command} update {name} --no-wakeup-secret"
)


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


def given_secret(
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


def warn_if_signed(secret: str, what: str, command: str, name: str) -> None:
    if secret:
        click.echo(SIGNED_WAKEUPS_WARNING.format(what=what, command=command, name=name), err=True)
