"""run_files

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06 10:50:00

The lab files a run's specs name are bound to their content when the run is
submitted, as a job sent alone is; the run makes its jobs later, so it keeps
those blobs from the hourly clean-up until it is purged.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "run_files",
        sa.Column("run_id", ID, nullable=False),
        sa.Column("blob_id", ID, nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["blob_id"], ["file_blobs.id"]),
        sa.PrimaryKeyConstraint("run_id", "blob_id"),
    )
    op.create_index("ix_run_files_blob_id", "run_files", ["blob_id"])


def downgrade() -> None:
    op.drop_table("run_files")
