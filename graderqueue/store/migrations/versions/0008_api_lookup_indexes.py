"""api lookup indexes

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 07:20:00

Indexes the JSON API's lists and positions need at a million jobs (measured
by ``scripts/bench/run api``, docs/PERFORMANCE.md): a job list filtered by
``name`` or ``jobusertaskid`` read the whole table (150 ms on SQLite, 1 s on
MariaDB), and the ETA's count of jobs finished in the last minutes went
through every done job on SQLite (0.7 s).
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

INDEXES = {
    "ix_jobs_name": ["name"],
    "ix_jobs_platform_name": ["platform_id", "name"],
    "ix_jobs_usertask": ["jobusertaskid"],
    "ix_jobs_status_end": ["status", "grading_end_time"],
}


def upgrade() -> None:
    for name, columns in INDEXES.items():
        op.create_index(name, "jobs", columns)


def downgrade() -> None:
    for name in INDEXES:
        # MariaDB: an index whose first column is a foreign key's may be the
        # one serving it; ix_jobs_platform_id still does, so this one can go.
        op.drop_index(name, table_name="jobs")
