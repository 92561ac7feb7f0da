"""What a grading server sends back beside a result: its program's stdout and stderr,
and the job's ``output_file`` as ``output`` (docs/API.md "Files (labs)").

The project's graderserver sends them as extra ``sendresults`` fields
(``stdout``, ``stderr``, ``output``, and ``<name>_truncated=1`` when it cut
them itself); ``output`` is also cut to the job's ``max_kb``;
the original grading server sends none. They are kept only with a result that
ends the job, each up to ``artifact_max_bytes``, and read back with
``GET /api/v1/jobs/{id}/artifacts/{name}``. ``result`` is not stored here: it
is the job's result row.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from graderqueue.store.models import Artifact, Result

NAMES = ("stdout", "stderr", "output")
_INSERT = insert(Artifact.__table__)


@dataclass(frozen=True)
class Captured:
    name: str
    content: str
    size: int  # bytes the server sent (UTF-8)
    truncated: bool


def from_form(
    form: Mapping[str, str], max_bytes: int, output_cap: int | None = None
) -> list[Captured]:
    """The artifacts in a ``sendresults`` form, each cut to ``max_bytes`` of UTF-8
    (``output`` also to ``output_cap``, the job's ``max_kb``, if it has one)."""
    found = []
    for name in NAMES:
        text = form.get(name)
        if text is None:
            continue
        limit = max_bytes if name != "output" or output_cap is None else min(max_bytes, output_cap)
        raw = text.encode("utf-8", "replace")
        kept = raw[:limit].decode("utf-8", "ignore")  # never half a character
        cut_by_server = form.get(f"{name}_truncated", "").strip() in ("1", "true")
        found.append(Captured(name, kept, len(raw), cut_by_server or len(raw) > limit))
    return found


def keep(session: Session, job_id: int, captured: list[Captured]) -> None:
    if captured:
        session.execute(
            _INSERT,
            [
                {
                    "job_id": job_id,
                    "name": c.name,
                    "content": c.content,
                    "size": c.size,
                    "truncated": c.truncated,
                }
                for c in captured
            ],
        )


def listing(session: Session, job_id: int) -> list[dict[str, object]]:
    """The names, sizes and cuts of a job's artifacts, ``result`` first if it has one."""
    names: list[dict[str, object]] = []
    result = session.scalar(select(Result.resultdata).where(Result.job_id == job_id))
    if result is not None:
        names.append({"name": "result", "size": len(result.encode()), "truncated": False})
    rows = session.execute(
        select(Artifact.name, Artifact.size, Artifact.truncated)
        .where(Artifact.job_id == job_id)
        .order_by(Artifact.name)
    ).all()
    names.extend({"name": r.name, "size": r.size, "truncated": bool(r.truncated)} for r in rows)
    return names


def read(session: Session, job_id: int, name: str) -> tuple[str, str] | None:
    """(media type, content) of one artifact, or None."""
    if name == "result":
        data = session.scalar(select(Result.resultdata).where(Result.job_id == job_id))
        return None if data is None else ("application/json", data)
    if name not in NAMES:
        return None
    content = session.scalar(
        select(Artifact.content).where(Artifact.job_id == job_id, Artifact.name == name)
    )
    return None if content is None else ("text/plain; charset=utf-8", content)
