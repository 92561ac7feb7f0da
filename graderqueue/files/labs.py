"""A platform's labs: named sets of files (Tango's labs), each name pointing at a blob.

A platform sees only its own labs; the same name in two platforms' labs are
two files. Replacing a file points its name at another blob: jobs already
submitted keep the blob they were bound to (job_files.py).
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from graderqueue.errors import NotFound
from graderqueue.files import blobs
from graderqueue.store.db import Database
from graderqueue.store.models import FileBlob, LabFile, utcnow


def listing(session: Session, platform_id: int, lab: str) -> dict[str, str]:
    """``{name: md5}`` of a lab's files (an unknown lab is an empty one, as in Tango)."""
    rows = session.execute(
        select(LabFile.name, FileBlob.md5)
        .join(FileBlob, FileBlob.id == LabFile.blob_id)
        .where(LabFile.platform_id == platform_id, LabFile.lab == lab)
        .order_by(LabFile.name)
    ).all()
    return {r.name: r.md5 for r in rows}


def put(
    db: Database,
    platform_id: int,
    lab: str,
    name: str,
    upload: blobs.Spooled,
    *,
    platform_max_bytes: int,
    spend: Callable[[Session], None],
) -> bool:
    """Store the upload as ``lab/name``; True when the name is new in the lab."""
    for attempt in range(2):
        try:
            with db.transaction() as session:
                spend(session)  # a platform token's jti: rolled back with a failed try
                blob_id = blobs.store(session, platform_id, upload, platform_max_bytes)
                row = session.get(LabFile, (platform_id, lab, name))
                if row is None:
                    session.add(
                        LabFile(
                            platform_id=platform_id,
                            lab=lab,
                            name=name,
                            blob_id=blob_id,
                            updated_at=utcnow(),
                        )
                    )
                    return True
                row.blob_id = blob_id
                row.updated_at = utcnow()
                return False
        except IntegrityError:
            # The same bytes or the same name stored by another request just
            # now: the second try finds its row.
            if attempt:
                raise
    raise AssertionError("unreachable")


def remove(session: Session, platform_id: int, lab: str, name: str) -> None:
    """Delete ``lab/name``; its bytes stay while jobs hold them (cleanup.py)."""
    gone = session.execute(
        delete(LabFile).where(
            LabFile.platform_id == platform_id, LabFile.lab == lab, LabFile.name == name
        )
    ).rowcount
    if not gone:
        raise NotFound(f"Lab {lab!r} has no file {name!r}.")
