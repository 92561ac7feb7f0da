"""admin session stamps and login throttling

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06 01:20:00

``admin_users.session_stamp``: a random value every session cookie of the
account carries; logout, a new password or removal change it, ending them.
``login_throttle``: recent login attempts per account and per address.
Sessions made before this migration carry no stamp and end: admins log in
again once.
"""

from __future__ import annotations

import secrets

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

Timestamp = (
    sa.DateTime()
    .with_variant(mysql.DATETIME(fsp=6), "mariadb")
    .with_variant(mysql.DATETIME(fsp=6), "mysql")
)


def upgrade() -> None:
    with op.batch_alter_table("admin_users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("session_stamp", sa.String(length=64), nullable=True))
    # Each existing account gets its own random stamp, then the column is required.
    admin_users = sa.table("admin_users", sa.column("id"), sa.column("session_stamp"))
    bind = op.get_bind()
    for (user_id,) in bind.execute(sa.select(admin_users.c.id)).all():
        bind.execute(
            admin_users.update()
            .where(admin_users.c.id == user_id)
            .values(session_stamp=secrets.token_urlsafe(24))
        )
    with op.batch_alter_table("admin_users", schema=None) as batch_op:
        batch_op.alter_column("session_stamp", existing_type=sa.String(length=64), nullable=False)

    op.create_table(
        "login_throttle",
        sa.Column("subject", sa.String(length=300), nullable=False),
        sa.Column("window_start", Timestamp, nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("subject"),
    )
    with op.batch_alter_table("login_throttle", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_login_throttle_window_start"), ["window_start"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("login_throttle", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_login_throttle_window_start"))
    op.drop_table("login_throttle")
    with op.batch_alter_table("admin_users", schema=None) as batch_op:
        batch_op.drop_column("session_stamp")
