"""operations: drain, pause, disable, fair share

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06 06:20:00

- ``servers.drained``, ``server_types.paused``, ``queue_flags`` (queue-wide
  pause): dispatch can stop while jobs are still accepted;
- ``platforms.disabled``, ``platforms.weight``, ``platforms.max_queued``;
- fair share: ``job_types.vstart`` (a job's place in line within its
  priority, in the claim index) and ``fair_share`` (each sender's last
  place). Jobs already queued keep their order: ``vstart`` is their id times
  the step of weight 1, and each sender's last place follows its last job.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

Timestamp = (
    sa.DateTime()
    .with_variant(mysql.DATETIME(fsp=6), "mariadb")
    .with_variant(mysql.DATETIME(fsp=6), "mysql")
)
# queue/fair_share.py STEP: the place in line one job of weight 1 takes.
STEP = 1_000_000


def _claim_index(columns: list, old_columns: list) -> None:
    """Swap ``ix_job_types_claim`` for one on ``columns``.

    On MariaDB the index also serves the foreign key on ``type_id`` and
    cannot be dropped before another one leads with that column: the new one
    is made under a temporary name, then renamed.
    """
    if op.get_bind().dialect.name == "sqlite":
        op.drop_index("ix_job_types_claim", table_name="job_types")
        op.create_index("ix_job_types_claim", "job_types", columns)
        return
    op.create_index("ix_job_types_claim_new", "job_types", columns)
    op.drop_index("ix_job_types_claim", table_name="job_types")
    op.execute("ALTER TABLE job_types RENAME INDEX ix_job_types_claim_new TO ix_job_types_claim")


CLAIM_BEFORE = ["type_id", "status", sa.literal_column("priority DESC"), "job_id"]
CLAIM_AFTER = ["type_id", "status", sa.literal_column("priority DESC"), "vstart", "job_id"]
NEW_COLUMNS = [
    ("servers", sa.Column("drained", sa.Boolean(), nullable=False, server_default=sa.text("0"))),
    (
        "server_types",
        sa.Column("paused", sa.Boolean(), nullable=False, server_default=sa.text("0")),
    ),
    ("platforms", sa.Column("disabled", sa.Boolean(), nullable=False, server_default=sa.text("0"))),
    ("platforms", sa.Column("weight", sa.Integer(), nullable=False, server_default=sa.text("1"))),
    ("platforms", sa.Column("max_queued", sa.Integer(), nullable=True)),
    (
        "job_types",
        sa.Column("vstart", sa.BigInteger(), nullable=False, server_default=sa.text("0")),
    ),
]


def upgrade() -> None:
    # Plain ADD COLUMN (no table rebuild) on both databases.
    for table, column in NEW_COLUMNS:
        op.add_column(table, column)
    op.execute(f"UPDATE job_types SET vstart = job_id * {STEP}")
    _claim_index(CLAIM_AFTER, CLAIM_BEFORE)
    op.create_table(
        "fair_share",
        sa.Column("sender", sa.BigInteger(), nullable=False),
        sa.Column("last_finish", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("sender"),
    )
    op.execute(
        "INSERT INTO fair_share (sender, last_finish) "
        f"SELECT COALESCE(platform_id, 0), (MAX(id) + 1) * {STEP} FROM jobs "
        "GROUP BY COALESCE(platform_id, 0)"
    )
    op.create_table(
        "queue_flags",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    op.drop_table("queue_flags")
    op.drop_table("fair_share")
    _claim_index(CLAIM_BEFORE, CLAIM_AFTER)
    # SQLite (3.35+) and MariaDB both drop a plain column in place.
    for table, column in reversed(NEW_COLUMNS):
        op.execute(f"ALTER TABLE {table} DROP COLUMN {column.name}")
