"""``graderqueue cron --hourly``: delete blobs no lab and no kept job refers to.

Only blobs older than ``file_grace_sec``: a blob just stored for a lab whose
name was replaced a moment later, or one a submission is about to bind, is
left for the next run. Purged jobs take their ``job_files`` rows with them
(maintenance/purge.py), which is what frees their blobs here.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, exists, select
from sqlalchemy.orm import Session

from graderqueue.store.db import Database
from graderqueue.store.models import FileBlob, FileChunk, JobFile, LabFile, RunFile, utcnow

BATCH = 100


def _unreferenced(cutoff: object) -> object:
    return (
        (FileBlob.created_at < cutoff)
        & ~exists().where(LabFile.blob_id == FileBlob.id)
        & ~exists().where(JobFile.blob_id == FileBlob.id)
        & ~exists().where(RunFile.blob_id == FileBlob.id)
    )


def remove_unreferenced(db: Database, grace_sec: float) -> int:
    """Delete unreferenced blobs past their grace period, with their chunks; how many."""
    cutoff = utcnow() - timedelta(seconds=grace_sec)
    removed = 0
    while True:
        with db.transaction() as session:
            query = select(FileBlob.id).where(_unreferenced(cutoff)).limit(BATCH)
            if db.dialect != "sqlite":
                query = query.with_for_update(skip_locked=True)
            ids = list(session.scalars(query))
            if ids:
                _delete(session, ids)
        removed += len(ids)
        if len(ids) < BATCH:
            return removed


def _delete(session: Session, ids: list[int]) -> None:
    # No new reference can appear meanwhile: the rows are locked (MariaDB; a
    # lab or job row naming one waits on its foreign key, then fails and is
    # retried with a new blob), or the database is (SQLite's one writer).
    # Chunks explicitly, not by ON DELETE CASCADE: the same on every engine.
    session.execute(delete(FileChunk).where(FileChunk.blob_id.in_(ids)))
    session.execute(
        delete(FileBlob).where(FileBlob.id.in_(ids)).execution_options(synchronize_session=False)
    )
