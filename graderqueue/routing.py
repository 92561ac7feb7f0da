"""Tags to server types: a job may run on the types that handle all of its tags."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from .errors import BadRequest
from .models import ServerType, Tag, TypeTag


def parse_tags(raw: object) -> list[str]:
    """Comma-separated tag names (a JSON list is accepted too); blanks dropped."""
    if raw is None:
        return []
    if isinstance(raw, list):
        items = [str(item) for item in raw]
    elif isinstance(raw, str | int):
        items = str(raw).split(",")
    else:
        raise BadRequest("Invalid tags.")
    names: list[str] = []
    for item in items:
        name = item.strip()
        if name and name not in names:
            names.append(name)
    return names


def resolve(
    session: Session,
    tag_names: Sequence[str],
    *,
    forced_tag_id: int | None = None,
    default_tags: Sequence[str] = (),
) -> tuple[str, list[int]]:
    """Returns the job's tag string (as stored) and the server types that can run it."""
    names = list(tag_names)
    tag_ids: list[int] = []
    for name in names:
        tag_id = session.scalar(select(Tag.id).where(Tag.name == name))
        if tag_id is None:
            raise BadRequest(f"Tag `{name}` unrecognized.")
        tag_ids.append(tag_id)
    if forced_tag_id is not None and forced_tag_id not in tag_ids:
        forced = session.get(Tag, forced_tag_id)
        if forced is not None:
            tag_ids.append(forced.id)
            names.append(forced.name)
    if not tag_ids and default_tags:
        return resolve(session, default_tags)

    if tag_ids:
        type_ids = list(
            session.scalars(
                select(TypeTag.type_id)
                .where(TypeTag.tag_id.in_(tag_ids))
                .group_by(TypeTag.type_id)
                .having(func.count(TypeTag.tag_id) == len(tag_ids))
                .order_by(TypeTag.type_id)
            )
        )
        if not type_ids:
            raise BadRequest(f"No server type can execute jobs with tags {','.join(names)}.")
    else:
        type_ids = list(session.scalars(select(ServerType.id).order_by(ServerType.id)))
        if not type_ids:
            raise BadRequest("No server type is defined: this job could never run.")
    return ",".join(names), type_ids
