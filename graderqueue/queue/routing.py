"""Tags to server types: a job may run on the types that handle all of its tags."""

from __future__ import annotations

from collections.abc import Sequence

from graderqueue.errors import BadRequest
from graderqueue.registry.view import RegistryView


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
    # dict keeps first-seen order and drops repeats in linear time: a token
    # may carry hundreds of thousands of commas.
    return list(dict.fromkeys(name for item in items if (name := item.strip())))


def resolve(
    view: RegistryView,
    tag_names: Sequence[str],
    *,
    forced_tag_id: int | None = None,
    default_tags: Sequence[str] = (),
) -> tuple[str, list[int]]:
    """Returns the job's tag string (as stored) and the server types that can run it."""
    names = list(tag_names)
    known = view.tags()
    if any(name not in known for name in names):
        known = view.tags(reload=True)  # a tag added a moment ago
    tag_ids: list[int] = []
    for name in names:
        if name not in known:
            raise BadRequest(f"Tag `{name}` unrecognized.")
        tag_ids.append(known[name])
    if forced_tag_id is not None and forced_tag_id not in tag_ids:
        forced_name = view.tag_names().get(forced_tag_id)
        if forced_name is not None:
            tag_ids.append(forced_tag_id)
            names.append(forced_name)
    if not tag_ids and default_tags:
        return resolve(view, default_tags)

    type_ids = view.types_handling(tag_ids)
    if not type_ids:
        if tag_ids:
            raise BadRequest(f"No server type can execute jobs with tags {','.join(names)}.")
        raise BadRequest("No server type is defined: this job could never run.")
    return ",".join(names), type_ids
