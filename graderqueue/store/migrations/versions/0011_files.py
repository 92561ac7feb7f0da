"""files

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 08:50:00

Files that travel with jobs (docs/API.md "Files (labs)"):

- ``file_blobs``: one file's bytes per platform, content-addressed by SHA-256;
- ``file_chunks``: those bytes in rows of at most 1 MiB (below MariaDB's
  ``max_allowed_packet``, so a 64 MiB file needs no server setting);
- ``lab_files``: a platform's labs, each name pointing at a blob;
- ``job_files``: the blobs a job was bound to when it was submitted;
- ``job_outputs``: a job's ``output_file`` and ``max_kb``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
LongBlob = sa.LargeBinary().with_variant(mysql.LONGBLOB(), "mysql", "mariadb")
Timestamp = (
    sa.DateTime()
    .with_variant(mysql.DATETIME(fsp=6), "mariadb")
    .with_variant(mysql.DATETIME(fsp=6), "mysql")
)


def upgrade() -> None:
    op.create_table(
        "file_blobs",
        sa.Column("id", Id, nullable=False),
        sa.Column("platform_id", Id, nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("md5", sa.String(length=32), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.ForeignKeyConstraint(["platform_id"], ["platforms.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("platform_id", "sha256", name="uq_file_blobs_platform_sha"),
    )
    op.create_index("ix_file_blobs_platform_id", "file_blobs", ["platform_id"])
    op.create_index("ix_file_blobs_created_at", "file_blobs", ["created_at"])
    op.create_table(
        "file_chunks",
        sa.Column("blob_id", Id, nullable=False),
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("data", LongBlob, nullable=False),
        sa.ForeignKeyConstraint(["blob_id"], ["file_blobs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("blob_id", "seq"),
    )
    op.create_table(
        "lab_files",
        sa.Column("platform_id", Id, nullable=False),
        sa.Column("lab", sa.String(length=100), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("blob_id", Id, nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
        sa.ForeignKeyConstraint(["platform_id"], ["platforms.id"]),
        sa.ForeignKeyConstraint(["blob_id"], ["file_blobs.id"]),
        sa.PrimaryKeyConstraint("platform_id", "lab", "name"),
    )
    op.create_index("ix_lab_files_blob_id", "lab_files", ["blob_id"])
    op.create_table(
        "job_files",
        sa.Column("job_id", Id, nullable=False),
        sa.Column("dest", sa.String(length=255), nullable=False),
        sa.Column("blob_id", Id, nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["blob_id"], ["file_blobs.id"]),
        sa.PrimaryKeyConstraint("job_id", "dest"),
    )
    op.create_index("ix_job_files_blob_id", "job_files", ["blob_id"])
    op.create_table(
        "job_outputs",
        sa.Column("job_id", Id, nullable=False),
        sa.Column("output_file", sa.String(length=255), nullable=False),
        sa.Column("max_kb", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("job_id"),
    )


def downgrade() -> None:
    op.drop_table("job_outputs")
    op.drop_table("job_files")
    op.drop_table("lab_files")
    op.drop_table("file_chunks")
    op.drop_table("file_blobs")
