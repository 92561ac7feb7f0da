"""no interface tokens

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 07:10:00

The original admin interface's ``token`` on ``/api.php`` is no longer a way
in (docs/LIFECYCLE.md): its table goes.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

Timestamp = (
    sa.DateTime()
    .with_variant(mysql.DATETIME(fsp=6), "mariadb")
    .with_variant(mysql.DATETIME(fsp=6), "mysql")
)


def upgrade() -> None:
    op.drop_index("ix_interface_tokens_expires_at", table_name="interface_tokens")
    op.drop_table("interface_tokens")


def downgrade() -> None:
    op.create_table(
        "interface_tokens",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("expires_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("token_hash"),
    )
    op.create_index("ix_interface_tokens_expires_at", "interface_tokens", ["expires_at"])
