"""``import-legacy-config`` and ``import-legacy``: the PHP graderqueue's settings,
key and data, carried over (docs/MIGRATING.md)."""

from __future__ import annotations

import os
from pathlib import Path

import click

from graderqueue.cli import Context, fail_clearly, pass_ctx
from graderqueue.config import load_settings
from graderqueue.legacy import config_import, importer
from graderqueue.legacy.php_config import PhpConfigError, parse_php_config
from graderqueue.protocol import keys
from graderqueue.store import private_files
from graderqueue.store.db import Database

SETTINGS_FILE = "graderqueue.toml"


@click.command("import-legacy-config", short_help="Carry over the PHP queue's config.inc.php.")
@click.argument("path", type=click.Path(dir_okay=False, exists=True))
@click.option(
    "--instance",
    type=click.Path(file_okay=False),
    default=None,
    help="Instance folder to write to (default: the instance_path setting).",
)
@click.option("--dry-run", is_flag=True, help="Print what would be written; write nothing.")
@click.option("--force", is_flag=True, help=f"Replace an existing {SETTINGS_FILE}.")
@pass_ctx
def import_legacy_config(
    ctx: Context, path: str, instance: str | None, dry_run: bool, force: bool
) -> None:
    """Read the PHP graderqueue's config.inc.php PATH (never running it) and write
    INSTANCE/graderqueue.toml and the queue's key pair under its old key name,
    so that platforms change nothing. Secrets go only into those files (0600).
    """
    folder = Path(instance) if instance is not None else ctx.settings.instance_path
    folder = folder.resolve()  # the settings file may be read from any directory
    key_dir = folder / "keys"
    settings_path = folder / SETTINGS_FILE
    plan = _plan(path, folder)
    try:
        if settings_path.exists() and not force:
            raise config_import.LegacyConfigError(
                [f"{settings_path} exists: give --force to replace it."]
            )
        config_import.check_key(key_dir, plan.key)
        fingerprint = keys.fingerprint(plan.key.public_pem.decode())
        if dry_run:
            click.echo(f"Would write {settings_path} (secrets hidden here):")
            click.echo(config_import.render_toml(plan, path, redact=True), nl=False)
            click.echo(f"Would install the key {plan.key.name!r} in {key_dir} ({fingerprint}).")
        else:
            private_files.private_dir(folder)  # 0700 before the key folder is made in it
            state = config_import.install_key(key_dir, plan.key)
            text = config_import.render_toml(plan, path)
            config_import.write_settings(settings_path, text, force)
            click.echo(f"Key {plan.key.name!r} {state} in {key_dir} ({fingerprint}).")
            click.echo(f"Settings written to {settings_path}.")
    except config_import.LegacyConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    _report(plan, settings_path)


def _plan(path: str, folder: Path) -> config_import.ImportPlan:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise click.ClickException(f"{path}: not UTF-8 text (byte {exc.start}).") from exc
    except OSError as exc:
        raise click.ClickException(f"Cannot read {path}: {exc.strerror}.") from exc
    try:
        return config_import.plan_import(parse_php_config(text), folder)
    except PhpConfigError as exc:
        lines = "\n".join(f"{path}: {problem}" for problem in exc.problems)
        raise click.ClickException(f"Nothing written; cannot read:\n{lines}") from exc
    except config_import.LegacyConfigError as exc:
        raise click.ClickException(f"Nothing written:\n{exc}") from exc


def _report(plan: config_import.ImportPlan, settings_path: Path) -> None:
    if plan.notes:
        click.echo("Not carried over:")
        for note in plan.notes:
            click.echo(f"  {note}")
    for warning in plan.warnings:
        click.echo(warning, err=True)
    click.echo(
        f"Next: give database_url in {settings_path} the new queue's database, then run "
        f"`GRADERQUEUE_CONFIG={settings_path} graderqueue init` (docs/MIGRATING.md)."
    )


@click.command("import-legacy", short_help="Carry over the PHP queue's jobs, registry and log.")
@click.option(
    "--from",
    "url",
    required=True,
    metavar="URL",
    help="The PHP queue's database: mysql+pymysql://USER:PW@HOST/DB (only read).",
)
@click.option(
    "--timezone",
    required=True,
    metavar="ZONE",
    help="The PHP server's time zone (e.g. Europe/Paris): its times were local.",
)
@click.option("--dry-run", is_flag=True, help="Read and count per table; write nothing.")
@click.option(
    "--instance",
    type=click.Path(file_okay=False, exists=True),
    default=None,
    help="Instance folder whose graderqueue.toml names the database to import into.",
)
@click.option("--batch", default=5000, show_default=True, type=click.IntRange(1, 100000))
@pass_ctx
def import_legacy(
    ctx: Context, url: str, timezone: str, dry_run: bool, instance: str | None, batch: int
) -> None:
    """Import the PHP graderqueue's database at URL into this queue's database:
    tags, types, platforms, servers, server tokens, remote users, the queue,
    the done jobs and the log. Ids are kept; times go from ZONE to UTC.
    Safe to run again: what is already here is left alone.
    """
    db = ctx.db
    if instance is not None:
        folder = Path(instance).resolve()
        environ = {**os.environ, "GRADERQUEUE_CONFIG": str(folder / SETTINGS_FILE)}
        db = Database(load_settings({"instance_path": str(folder)}, environ=environ))
    options = importer.Options(url, timezone, dry_run=dry_run, batch=batch)
    with fail_clearly():
        report = importer.run(db, options)
    for line in report.lines(dry_run):
        click.echo(line)
    click.echo("Dry run: nothing written." if dry_run else "Import finished.")


def register(cli: click.Group) -> None:
    cli.add_command(import_legacy_config)
    cli.add_command(import_legacy)
