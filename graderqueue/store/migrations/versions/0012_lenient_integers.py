"""platforms.lenient_integers

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 09:00:00

A per-platform switch for platforms moved from the PHP graderqueue that
relied on its lenient integer parsing (docs/MIGRATING.md): off for every
existing platform, so nothing changes until an operator asks for it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "platforms",
        sa.Column("lenient_integers", sa.Boolean(), nullable=False, server_default=sa.text("0")),
    )


def downgrade() -> None:
    # A plain DROP COLUMN on both databases (SQLite >= 3.35): a batch
    # rebuild of platforms would trip over the foreign keys naming it.
    op.drop_column("platforms", "lenient_integers")
