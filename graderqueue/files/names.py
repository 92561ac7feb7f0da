"""What a lab, a file's name in a lab, and a path in a job's working folder may be.

One rule for each, so the JSON API, the job spec and the grading server's
download agree: no way out of the lab or the job's folder, nothing a shell
or a filesystem could read as something else.
"""

from __future__ import annotations

import re

from graderqueue.errors import BadRequest

LAB_MAX = 100
NAME_MAX = 255
PATH_MAX = 255
# Letters, digits and ._- ; not starting with a dot (no ".", "..", hidden files).
_SEGMENT = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*$")


def _segment_problem(text: object, what: str, max_len: int) -> str | None:
    if not isinstance(text, str) or not text:
        return f"{what} is a non-empty string."
    if len(text) > max_len:
        return f"{what} is at most {max_len} characters."
    if not _SEGMENT.match(text):
        return (
            f"{what} {text!r} may hold letters, digits and ._- only, and does not start with a dot."
        )
    return None


def check_lab(lab: object) -> str:
    problem = _segment_problem(lab, "a lab's name", LAB_MAX)
    if problem:
        raise BadRequest(problem)
    return lab  # type: ignore[return-value]


def check_name(name: object) -> str:
    """A file's name in a lab: one segment, no slashes."""
    problem = _segment_problem(name, "a file's name", NAME_MAX)
    if problem:
        raise BadRequest(problem)
    return name  # type: ignore[return-value]


def check_relative_path(path: object, what: str) -> str:
    """A path under the job's working folder: relative, segments as names, no ``..``."""
    if not isinstance(path, str) or not path:
        raise BadRequest(f"{what} is a non-empty relative path.")
    if len(path) > PATH_MAX:
        raise BadRequest(f"{what} is at most {PATH_MAX} characters.")
    if path.startswith("/"):
        raise BadRequest(f"{what} {path!r} is relative: no leading slash.")
    for segment in path.split("/"):
        problem = _segment_problem(segment, f"each part of {what}", PATH_MAX)
        if problem:
            raise BadRequest(f"{problem} ({what} {path!r})")
    return path
