"""autoscale state: what `graderqueue autoscale` last decided per server type

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07 09:00:00

One small table, ``autoscale_state``: the scale-down delay needs to know
when each type's wanted number of servers last changed, whichever node ran
the command.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

Timestamp = (
    sa.DateTime()
    .with_variant(mysql.DATETIME(fsp=6), "mariadb")
    .with_variant(mysql.DATETIME(fsp=6), "mysql")
)


def upgrade() -> None:
    op.create_table(
        "autoscale_state",
        sa.Column("type_id", sa.BigInteger(), nullable=False, autoincrement=False),
        sa.Column("wanted", sa.Integer(), nullable=True),
        sa.Column("changed_at", Timestamp, nullable=True),
        sa.Column("updated_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("type_id"),
    )


def downgrade() -> None:
    op.drop_table("autoscale_state")
