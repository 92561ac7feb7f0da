"""result verdicts

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 08:40:00

``results.verdict``: passed, failed or grader_error (``queue/verdicts.py``),
so that the admin's done list filters by result and the pass rates leave
grader errors out without reading each result's JSON. Filled here for the
results already stored: passed where all tests passed, then every result is
read once (in batches, by primary key) to find the grader errors, with the
same rule ``complete`` applies to new results.
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

from graderqueue.queue.verdicts import FAILED, GRADER_ERROR, PASSED, grader_error

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# Results read per query while looking for grader errors: results may be
# megabytes each, so a batch stays small.
BATCH = 200


def upgrade() -> None:
    op.add_column(
        "results",
        sa.Column("verdict", sa.String(length=16), nullable=False, server_default=FAILED),
    )
    op.execute(f"UPDATE results SET verdict = '{PASSED}' WHERE is_success")
    _mark_grader_errors()
    op.create_index("ix_results_verdict", "results", ["verdict", "job_id"])


def _mark_grader_errors() -> None:
    bind = op.get_bind()
    results = sa.table(
        "results", sa.column("job_id", sa.BigInteger), sa.column("resultdata", sa.Text)
    )
    last = -1
    while True:
        rows = bind.execute(
            sa.select(results.c.job_id, results.c.resultdata)
            .where(results.c.job_id > last)
            .order_by(results.c.job_id)
            .limit(BATCH)
        ).all()
        if not rows:
            return
        last = rows[-1].job_id
        found = [job_id for job_id, text in rows if _is_grader_error(text)]
        if found:
            bind.execute(
                sa.text("UPDATE results SET verdict = :v WHERE job_id IN :ids").bindparams(
                    sa.bindparam("ids", expanding=True)
                ),
                {"v": GRADER_ERROR, "ids": found},
            )


def _is_grader_error(text: str) -> bool:
    try:
        result = json.loads(text)
    except (ValueError, RecursionError):
        return False
    return isinstance(result, dict) and grader_error(result)


def downgrade() -> None:
    op.drop_index("ix_results_verdict", table_name="results")
    # SQLite (3.35+) and MariaDB both drop a plain column in place.
    op.execute("ALTER TABLE results DROP COLUMN verdict")
