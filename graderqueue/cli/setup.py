"""``init``, ``keys show``, ``serve``."""

from __future__ import annotations

import click

from graderqueue.cli import Context, fail_clearly, pass_ctx
from graderqueue.errors import NotInitialized
from graderqueue.protocol import keys
from graderqueue.store import private_files


@click.command(short_help="Create or upgrade the database and key.")
@click.option(
    "--bits", default=2048, show_default=True, type=click.Choice(["2048", "3072", "4096"])
)
@pass_ctx
def init(ctx: Context, bits: str) -> None:
    """Create or upgrade the schema, and create the queue's key pair if missing."""
    from graderqueue.store import migrate  # Alembic is slow to import; only init needs it

    settings = ctx.settings
    with fail_clearly():
        private_files.private_dir(settings.instance_path)
        migrate.upgrade(ctx.db)
        created = keys.create_key(settings.resolved_key_dir, settings.key_name, int(bits))
        # An instance made before modes were enforced (or copied with a
        # loose umask): take group and other access away, and say so.
        fixed = private_files.fix_modes(
            private_files.queue_paths(
                settings.instance_path, settings.resolved_key_dir, ctx.db.sqlite_file
            )
        )
    for line in fixed:
        click.echo(line)
    click.echo(f"Database ready at revision {migrate.current_revision(ctx.db)}.")
    state = "created" if created else "kept"
    click.echo(f"Queue key {settings.key_name!r} {state} in {settings.resolved_key_dir}.")


@click.group("keys")
def keys_group() -> None:
    """The queue's own key pairs."""


@keys_group.command("show")
@pass_ctx
def keys_show(ctx: Context) -> None:
    """Print the key name and public key that platforms need."""
    with fail_clearly():
        queue_keys = keys.QueueKeys(ctx.settings.resolved_key_dir, ctx.settings.key_name)
    click.echo(f"Key name: {queue_keys.active.name}")
    click.echo(queue_keys.active.public_pem, nl=False)


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@pass_ctx
def serve(ctx: Context, host: str, port: int) -> None:
    """Run the development server (gunicorn in production)."""
    from graderqueue.web import create_app

    try:
        app = create_app(ctx.settings)
    except NotInitialized as exc:
        raise click.ClickException(str(exc)) from exc
    app.run(host=host, port=port, threaded=True)


def register(cli: click.Group) -> None:
    cli.add_command(init)
    cli.add_command(keys_group)
    cli.add_command(serve)
