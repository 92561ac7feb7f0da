"""What a counted cancel needs to know of its jobs, read after the cancel's commit.

Hand-outs and results are counted from what ``claim`` and ``complete``
already read in their own transactions (no second read per job); a cancel
by id reads its jobs' platforms here.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from graderqueue.store.models import Job, Platform

JOBS = Job.__table__
PLATFORMS = Platform.__table__


def platforms_of(session: Session, job_ids: Sequence[int]) -> Counter[str]:
    """How many of these jobs each platform sent ("" for jobs without a platform)."""
    found: Counter[str] = Counter()
    for start in range(0, len(job_ids), 500):
        rows = session.execute(
            select(PLATFORMS.c.name, func.count())
            .select_from(JOBS.outerjoin(PLATFORMS, PLATFORMS.c.id == JOBS.c.platform_id))
            .where(JOBS.c.id.in_(list(job_ids[start : start + 500])))
            .group_by(PLATFORMS.c.name)
        )
        for name, count in rows:
            found[name or ""] += count
    return found
