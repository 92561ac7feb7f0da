"""job states and api records

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06 05:50:00

The JSON API's job states and what its answers read:

- ``jobs.status`` and ``job_types.status`` grow from 8 to 16 characters, for
  ``held`` and ``cancelled``;
- ``job_handouts``: each hand-out of a job to a grading server;
- ``job_artifacts``: ``stdout``/``stderr`` sent back beside a result;
- ``idempotency_keys``: ``Idempotency-Key`` headers of ``POST /api/v1/jobs``;
- two indexes for the API's job lists by state, newest first.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
LongText = sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")
Timestamp = (
    sa.DateTime()
    .with_variant(mysql.DATETIME(fsp=6), "mariadb")
    .with_variant(mysql.DATETIME(fsp=6), "mysql")
)


def _status_width(old: int, new: int) -> None:
    if op.get_bind().dialect.name != "sqlite":
        # VARCHAR(8) -> VARCHAR(16) keeps InnoDB's one length byte: in place.
        for table in ("jobs", "job_types"):
            op.alter_column(
                table,
                "status",
                existing_type=sa.String(old),
                type_=sa.String(new),
                existing_nullable=False,
            )
        return
    # SQLite never enforces a VARCHAR's length, so only the declared type in
    # the schema text changes, as SQLite's documentation describes for changes
    # that leave the stored rows as they are. Rebuilding ``jobs`` instead would
    # copy every row, and with foreign keys on, dropping the old table would
    # cascade into results and deliveries.
    bind = op.get_bind()
    version = bind.exec_driver_sql("PRAGMA schema_version").scalar()
    bind.exec_driver_sql("PRAGMA writable_schema=ON")
    bind.exec_driver_sql(
        f"UPDATE sqlite_master SET sql = replace(sql, 'status VARCHAR({old})', "
        f"'status VARCHAR({new})') WHERE type = 'table' AND name IN ('jobs', 'job_types')"
    )
    bind.exec_driver_sql(f"PRAGMA schema_version={int(version) + 1}")
    bind.exec_driver_sql("PRAGMA writable_schema=OFF")


def upgrade() -> None:
    _status_width(8, 16)
    op.create_index("ix_jobs_status_id", "jobs", ["status", "id"])
    op.create_index("ix_jobs_platform_status_id", "jobs", ["platform_id", "status", "id"])
    op.create_table(
        "job_handouts",
        sa.Column("id", Id, nullable=False),
        sa.Column("job_id", Id, nullable=False),
        sa.Column("server_id", sa.BigInteger(), nullable=True),
        sa.Column("time", Timestamp, nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_job_handouts_job_id", "job_handouts", ["job_id"])
    op.create_table(
        "job_artifacts",
        sa.Column("job_id", Id, nullable=False),
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("content", LongText, nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("truncated", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("job_id", "name"),
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("caller", sa.String(length=300), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("answer", sa.Text(), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("caller", "key"),
    )
    op.create_index("ix_idempotency_keys_created_at", "idempotency_keys", ["created_at"])


def downgrade() -> None:
    # 0003 knows neither state: a held job waits as queued, and a cancelled
    # one goes, as the code of 0003 deleted the jobs it cancelled.
    for table in ("jobs", "job_types"):
        op.execute(f"UPDATE {table} SET status = 'queued' WHERE status = 'held'")
    cancelled = "SELECT id FROM jobs WHERE status = 'cancelled'"
    op.execute(
        "DELETE FROM delivery_attempts WHERE delivery_id IN "
        f"(SELECT id FROM deliveries WHERE job_id IN ({cancelled}))"
    )
    for table in ("deliveries", "results", "job_types", "job_artifacts", "job_handouts"):
        op.execute(f"DELETE FROM {table} WHERE job_id IN ({cancelled})")
    op.execute("DELETE FROM jobs WHERE status = 'cancelled'")
    op.drop_index("ix_idempotency_keys_created_at", table_name="idempotency_keys")
    op.drop_table("idempotency_keys")
    op.drop_table("job_artifacts")
    op.drop_table("job_handouts")  # its index goes with it
    op.drop_index("ix_jobs_platform_status_id", table_name="jobs")
    op.drop_index("ix_jobs_status_id", table_name="jobs")
    _status_width(16, 8)
