"""Alembic environment: runs on the connection that graderqueue.migrate passes in."""

from __future__ import annotations

from alembic import context

from graderqueue.store.models import Base

target_metadata = Base.metadata


def run_migrations_online() -> None:
    connection = context.config.attributes["connection"]
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("graderqueue migrations run online only: use `graderqueue init`.")
run_migrations_online()
