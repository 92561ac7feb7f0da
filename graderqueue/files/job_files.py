"""A job's files and output file: parsed from its spec, bound at submission, fetched
by the grading server that holds it.

A job is bound to the content its files had when it was submitted: each
``{"lab", "name", "dest"}`` becomes the blob the lab's name pointed at then,
so replacing the lab's file later changes no submitted job.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, insert, null, select, union_all
from sqlalchemy.orm import Session

from graderqueue.errors import BadRequest
from graderqueue.files import names
from graderqueue.queue.lookup import held_by
from graderqueue.store.models import FileBlob, JobFile, JobOutput, LabFile

KEYS = ("files", "output_file", "max_kb")
# Files one job may take: a job spec is not a way to copy a whole lab around.
FILES_MAX = 100
MAX_KB_MAX = 1024 * 1024  # 1 GiB: the queue's artifact_max_bytes caps it anyway


@dataclass(frozen=True)
class FileRef:
    lab: str
    name: str
    dest: str


@dataclass(frozen=True)
class Spec:
    """What a job spec says about files; empty for most jobs."""

    files: tuple[FileRef, ...] = field(default_factory=tuple)
    output_file: str | None = None
    max_kb: int | None = None

    def __bool__(self) -> bool:
        return bool(self.files) or self.output_file is not None


def parse_spec(item: dict[str, Any]) -> Spec:
    """Take ``files``, ``output_file`` and ``max_kb`` out of a job spec (a dict), checked."""
    raw = item.pop("files", [])
    if not isinstance(raw, list):
        raise BadRequest('files is a list of {"lab", "name", "dest"}.')
    if len(raw) > FILES_MAX:
        raise BadRequest(f"A job takes at most {FILES_MAX} files.")
    refs: list[FileRef] = []
    for entry in raw:
        if not isinstance(entry, dict) or set(entry) != {"lab", "name", "dest"}:
            raise BadRequest('Each of files is {"lab", "name", "dest"}.')
        refs.append(
            FileRef(
                names.check_lab(entry["lab"]),
                names.check_name(entry["name"]),
                names.check_relative_path(entry["dest"], "dest"),
            )
        )
    dests = [r.dest for r in refs]
    if len(set(dests)) != len(dests):
        raise BadRequest("Two files have the same dest.")
    # Present means given: null is no way to leave a field out (the document
    # says a string, an integer).
    output_file = None
    if "output_file" in item:
        output_file = names.check_relative_path(item.pop("output_file"), "output_file")
    max_kb = None
    if "max_kb" in item:
        max_kb = item.pop("max_kb")
        if isinstance(max_kb, bool) or not isinstance(max_kb, int) or not 1 <= max_kb <= MAX_KB_MAX:
            raise BadRequest(f"max_kb is an integer from 1 to {MAX_KB_MAX}.")
        if output_file is None:
            raise BadRequest("max_kb caps output_file: give output_file too.")
    return Spec(tuple(refs), output_file, max_kb)


def _blob_of(session: Session, platform_id: int | None, ref: FileRef) -> int:
    if platform_id is None:
        raise BadRequest("files name a platform's labs: only a platform may send them.")
    blob_id = session.scalar(
        select(LabFile.blob_id).where(
            LabFile.platform_id == platform_id,
            LabFile.lab == ref.lab,
            LabFile.name == ref.name,
        )
    )
    if blob_id is None:
        raise BadRequest(f"Lab {ref.lab!r} has no file {ref.name!r}.")
    return blob_id


def check(session: Session, platform_id: int | None, spec: Spec) -> None:
    """Refuse a spec naming files that do not exist, before anything is written
    (the binding checks again, in its transaction)."""
    for ref in spec.files:
        _blob_of(session, platform_id, ref)


def bind(session: Session, platform_id: int | None, job_id: int, spec: Spec) -> None:
    """Record what the job takes, replacing what an earlier submission of it said
    (dedup updates a job in place). An unknown lab file is a :class:`BadRequest`,
    raised inside the submission's transaction: nothing of it is kept."""
    session.execute(delete(JobFile).where(JobFile.job_id == job_id))
    session.execute(delete(JobOutput).where(JobOutput.job_id == job_id))
    if spec.files:
        rows = [
            {"job_id": job_id, "dest": ref.dest, "blob_id": _blob_of(session, platform_id, ref)}
            for ref in spec.files
        ]
        session.execute(insert(JobFile), rows)
    if spec.output_file is not None:
        session.execute(
            insert(JobOutput),
            {"job_id": job_id, "output_file": spec.output_file, "max_kb": spec.max_kb},
        )


def resolved(session: Session, platform_id: int | None, spec: Spec) -> dict[str, Any]:
    """A spec with each file bound to its content now, as a run keeps it until
    it makes the job: ``{"files": [[dest, blob id], ...], "output_file", "max_kb"}``."""
    return {
        "files": [[ref.dest, _blob_of(session, platform_id, ref)] for ref in spec.files],
        "output_file": spec.output_file,
        "max_kb": spec.max_kb,
    }


def bind_resolved(session: Session, job_id: int, kept: dict[str, Any]) -> None:
    """Give a new job the files a run bound for it (:func:`resolved`)."""
    if kept["files"]:
        rows = [{"job_id": job_id, "dest": d, "blob_id": b} for d, b in kept["files"]]
        session.execute(insert(JobFile), rows)
    if kept["output_file"] is not None:
        session.execute(
            insert(JobOutput),
            {"job_id": job_id, "output_file": kept["output_file"], "max_kb": kept["max_kb"]},
        )


def for_server(session: Session, job_id: int) -> dict[str, Any]:
    """The poll answer's extra fields for a job: ``files`` to fetch, ``output_file``,
    ``max_kb``; nothing for a job without files, so its answer is the original's.

    One round trip (every hand-out pays for it): the files' rows, then the
    output row, as one UNION ALL.
    """
    files = (
        select(JobFile.dest, FileBlob.sha256, FileBlob.size, null().label("o"), null().label("k"))
        .join(FileBlob, FileBlob.id == JobFile.blob_id)
        .where(JobFile.job_id == job_id)
    )
    output = select(null(), null(), null(), JobOutput.output_file, JobOutput.max_kb).where(
        JobOutput.job_id == job_id
    )
    extra: dict[str, Any] = {}
    listed = []
    for dest, sha256, size, output_file, max_kb in session.execute(union_all(files, output)):
        if dest is not None:
            listed.append({"dest": dest, "sha256": sha256, "size": size})
            continue
        extra["output_file"] = output_file
        if max_kb is not None:
            extra["max_kb"] = max_kb
    if listed:
        extra = {"files": sorted(listed, key=lambda f: f["dest"]), **extra}
    return extra


def output_cap(session: Session, job_id: int) -> int | None:
    """The job's ``max_kb`` in bytes, if it set one."""
    max_kb = session.scalar(select(JobOutput.max_kb).where(JobOutput.job_id == job_id))
    return None if max_kb is None else max_kb * 1024


def blob_for_server(session: Session, server_id: int, job_id: int, sha256: str) -> int | None:
    """The blob a grading server may download: one of the files of a job it holds."""
    if not held_by(session, job_id, server_id):
        return None
    return session.scalar(
        select(JobFile.blob_id)
        .join(FileBlob, FileBlob.id == JobFile.blob_id)
        .where(JobFile.job_id == job_id, FileBlob.sha256 == sha256)
        .limit(1)
    )
