"""The ``graderqueue`` operator command."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property

import click
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from graderqueue.config import Settings, load_settings
from graderqueue.errors import ConfigError, QueueError
from graderqueue.logs import describe_error
from graderqueue.logs import setup as setup_logging
from graderqueue.store.db import Database


@dataclass
class Context:
    """What every command needs; settings are read once, the database opened lazily."""

    settings: Settings

    @cached_property
    def db(self) -> Database:
        return Database(self.settings)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Session]:
        with fail_clearly(), self.db.transaction() as session:
            yield session


@contextlib.contextmanager
def fail_clearly() -> Iterator[None]:
    """Refusals become a one-line error and exit status 1, never a traceback."""
    try:
        yield
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    except QueueError as exc:
        # describe_error: "temporarily unavailable" says nothing; the driver's error does.
        raise click.ClickException(describe_error(exc)) from exc
    except DBAPIError as exc:
        hint = " Has `graderqueue init` been run?" if _missing_schema(exc) else ""
        raise click.ClickException(f"Database error: {exc.orig}.{hint}") from exc


def _missing_schema(exc: DBAPIError) -> bool:
    text = str(exc.orig).lower()
    return "no such table" in text or "doesn't exist" in text


pass_ctx = click.make_pass_decorator(Context)


def when(value: datetime | None, never: str = "never") -> str:
    """A stored time (naive UTC) for people: ISO 8601 date and time, said to be UTC."""
    return f"{value:%Y-%m-%d %H:%M:%S} UTC" if value is not None else never


def echo_rows(rows: Iterable[str], empty: str) -> None:
    """One line per row, or *empty* ("No jobs.") when there is none: never silence."""
    shown = False
    for row in rows:
        click.echo(row)
        shown = True
    if not shown:
        click.echo(empty)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Operate a graderqueue: set-up, platforms, servers, jobs, maintenance.

    Settings come from the TOML file named by GRADERQUEUE_CONFIG, then from
    GRADERQUEUE_* environment variables.
    """
    try:
        ctx.obj = Context(load_settings())
        # Lines of every command carry time, level, pid and this process's id.
        setup_logging(log_format=ctx.obj.settings.log_format)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc


def _register() -> None:
    # Plain imports: a broken module must fail loudly, not hide its commands.
    from graderqueue.cli import (
        admin_users,
        api_tokens,
        autoscale,
        dispatch,
        jobs,
        legacy,
        maintenance,
        platforms,
        security,
        server_tokens,
        servers,
        setup,
        status,
        tags,
    )

    for module in (
        setup,
        tags,
        platforms,
        servers,
        jobs,
        maintenance,
        admin_users,
        security,
        api_tokens,
        server_tokens,
        dispatch,
        status,
        autoscale,
        legacy,
    ):
        module.register(cli)


_register()


def main() -> None:
    cli(prog_name="graderqueue")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
