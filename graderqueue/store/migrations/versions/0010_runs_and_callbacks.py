"""runs and callbacks

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 08:45:00

Runs of many jobs (queue/runs.py): the ``runs`` table, each job's run, role
and whether its end was counted; callback URLs (delivery/callbacks.py): the
platforms' allowed callback hosts, a job's callback URL and the callbacks'
outbox.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIMESTAMP = (
    sa.DateTime()
    .with_variant(mysql.DATETIME(fsp=6), "mariadb")
    .with_variant(mysql.DATETIME(fsp=6), "mysql")
)
LONGTEXT = (
    sa.Text().with_variant(mysql.LONGTEXT(), "mariadb").with_variant(mysql.LONGTEXT(), "mysql")
)


def upgrade() -> None:
    # Plain ADD COLUMN and CREATE INDEX, never a batch rebuild: on SQLite a
    # rebuild drops and re-creates jobs, and with foreign keys on, dropping
    # jobs deletes every result, handout and artifact through ON DELETE CASCADE.
    op.add_column(
        "platforms", sa.Column("callback_hosts", sa.Text(), nullable=False, server_default="")
    )
    op.add_column("jobs", sa.Column("run_id", sa.BigInteger(), nullable=True))
    op.add_column("jobs", sa.Column("run_role", sa.String(length=8), nullable=True))
    op.add_column(
        "jobs", sa.Column("run_ended", sa.Boolean(), nullable=False, server_default=sa.text("0"))
    )
    op.add_column(
        "jobs",
        sa.Column("callback_url", sa.String(length=1000), nullable=False, server_default=""),
    )
    op.create_index("ix_jobs_run", "jobs", ["run_id", "run_role", "status"])
    _create_runs()
    _create_callbacks()


def _create_runs() -> None:
    op.create_table(
        "runs",
        sa.Column("id", ID, nullable=False),
        sa.Column("platform_id", sa.BigInteger(), nullable=True),
        sa.Column("received_via", sa.String(length=255), nullable=False),
        sa.Column("state", sa.String(length=32), nullable=False),
        sa.Column("spec", LONGTEXT, nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("roster_total", sa.Integer(), nullable=False),
        sa.Column("roster_created", sa.Integer(), nullable=False),
        sa.Column("roster_ended", sa.Integer(), nullable=False),
        sa.Column("pre_job_id", sa.BigInteger(), nullable=True),
        sa.Column("post_job_id", sa.BigInteger(), nullable=True),
        sa.Column("callback_url", sa.String(length=1000), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("ended_at", TIMESTAMP, nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_runs_platform_id", "runs", ["platform_id"])
    op.create_index("ix_runs_state", "runs", ["state"])


def _create_callbacks() -> None:
    op.create_table(
        "callbacks",
        sa.Column("id", ID, nullable=False),
        sa.Column("platform_id", sa.BigInteger(), nullable=False),
        sa.Column("url", sa.String(length=1000), nullable=False),
        sa.Column("job_id", sa.BigInteger(), nullable=True),
        sa.Column("run_id", sa.BigInteger(), nullable=True),
        sa.Column("body", LONGTEXT, nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", TIMESTAMP, nullable=False),
        sa.Column("last_attempt_at", TIMESTAMP, nullable=True),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("delivered_at", TIMESTAMP, nullable=True),
        sa.Column("locked_by", sa.String(length=255), nullable=True),
        sa.Column("locked_until", TIMESTAMP, nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_callbacks_job_id", "callbacks", ["job_id"])
    op.create_index("ix_callbacks_run_id", "callbacks", ["run_id"])
    op.create_index("ix_callbacks_due", "callbacks", ["state", "next_attempt_at"])


def downgrade() -> None:
    op.drop_table("callbacks")
    op.drop_table("runs")
    op.drop_index("ix_jobs_run", table_name="jobs")
    for column in ("callback_url", "run_ended", "run_role", "run_id"):
        op.drop_column("jobs", column)  # in place on SQLite too (>= 3.35), as upgrade()
    op.drop_column("platforms", "callback_hosts")
