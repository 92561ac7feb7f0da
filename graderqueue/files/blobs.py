"""File bytes in the database: one blob per platform and content, in 1 MiB chunks.

In the database, not on an app node's disk, so every node serves every file
(docs/API.md "Files (labs)"). A blob is written in one transaction with its
chunks, so no reader ever sees part of one; reads go a chunk at a time, so a
64 MiB file is never held in memory whole.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from graderqueue.errors import BadRequest, TooLarge
from graderqueue.store.db import Database
from graderqueue.store.models import FileBlob, FileChunk, utcnow

# One row per MiB: well below MariaDB's default max_allowed_packet (16 MiB),
# and few rows for a large file.
CHUNK_BYTES = 1024 * 1024
READ_BYTES = 64 * 1024
# Uploads past this wait on disk, not in memory, until they are stored.
SPOOL_MEMORY_BYTES = 1024 * 1024


@dataclass
class Spooled:
    """An upload read to its end: its bytes (in a temporary file) and digests."""

    file: IO[bytes]
    size: int
    sha256: str
    md5: str

    def close(self) -> None:
        self.file.close()


def spool(stream: IO[bytes], max_bytes: int) -> Spooled:
    """Read ``stream`` to its end, hashing; :class:`TooLarge` past ``max_bytes``."""
    # Closed by the caller, through Spooled.close.
    file = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY_BYTES)  # noqa: SIM115
    sha, md5, size = hashlib.sha256(), hashlib.md5(usedforsecurity=False), 0
    try:
        while chunk := stream.read(READ_BYTES):
            size += len(chunk)
            if size > max_bytes:
                raise TooLarge(f"A file is at most {max_bytes} bytes (file_max_bytes).")
            sha.update(chunk)
            md5.update(chunk)
            file.write(chunk)
    except BaseException:
        file.close()
        raise
    file.seek(0)
    return Spooled(file, size, sha.hexdigest(), md5.hexdigest())


def platform_bytes(session: Session, platform_id: int) -> int:
    """What a platform's blobs take, those only jobs still hold included."""
    total = session.scalar(
        select(func.coalesce(func.sum(FileBlob.size), 0)).where(FileBlob.platform_id == platform_id)
    )
    return int(total or 0)


def find(session: Session, platform_id: int, sha256: str) -> int | None:
    return session.scalar(
        select(FileBlob.id).where(FileBlob.platform_id == platform_id, FileBlob.sha256 == sha256)
    )


def store(session: Session, platform_id: int, upload: Spooled, platform_max_bytes: int) -> int:
    """The blob holding the upload's bytes: the platform's existing one, or a new one.

    The caller's transaction covers the blob and its chunks: a failure leaves
    nothing. Two uploads of the same new bytes at once: the second breaks
    the (platform, sha256) key and the caller's retry finds the first.
    """
    known = find(session, platform_id, upload.sha256)
    if known is not None:
        return known
    used = platform_bytes(session, platform_id)
    if used + upload.size > platform_max_bytes:
        raise TooLarge(
            f"This platform's files would take {used + upload.size} bytes; "
            f"at most {platform_max_bytes} (file_platform_max_bytes)."
        )
    blob = FileBlob(
        platform_id=platform_id,
        sha256=upload.sha256,
        md5=upload.md5,
        size=upload.size,
        created_at=utcnow(),
    )
    session.add(blob)
    session.flush()
    upload.file.seek(0)
    seq = 0
    while data := upload.file.read(CHUNK_BYTES):
        session.execute(insert(FileChunk), {"blob_id": blob.id, "seq": seq, "data": data})
        seq += 1
    if seq == 0:  # an empty file still has its one (empty) chunk: reads need no special case
        session.execute(insert(FileChunk), {"blob_id": blob.id, "seq": 0, "data": b""})
    return blob.id


def chunks(db: Database, blob_id: int) -> Iterator[bytes]:
    """The blob's bytes, one chunk per short read: an answer streams while other
    requests use the connection pool between chunks."""
    seq = 0
    while True:
        with db.reading() as session:
            data = session.scalar(
                select(FileChunk.data).where(FileChunk.blob_id == blob_id, FileChunk.seq == seq)
            )
        if data is None:
            return
        yield bytes(data)
        seq += 1


def check_sha256(text: object) -> str:
    if not isinstance(text, str) or len(text) != 64 or set(text) - set("0123456789abcdef"):
        raise BadRequest("sha256 is 64 lowercase hex digits.")
    return text
