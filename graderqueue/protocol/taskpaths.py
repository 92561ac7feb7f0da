"""Where a platform's job may point on a grading server, and at which revision.

A platform registered with restrict paths may only send jobs whose task
folder lies inside one of them: otherwise it could have a grading server
check out another platform's repository at any revision. The queue does not
know a grading server's root folder, so ``$ROOT_PATH`` (or ``${ROOT_PATH}``)
is kept as an opaque root: ``$ROOT_PATH/tasks/A`` is inside a restrict path
``$ROOT_PATH/tasks``, never inside ``/srv/tasks``, and ``..`` cannot climb
out of it. The grading server checks again after resolving symlinks.

A revision reaches the grading server's prepare command (usually
``git checkout``); it must look like a revision and never like an option.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Sequence
from typing import Any

from graderqueue.errors import BadRequest

# A leading `$NAME` or `${NAME}`: a folder that only the grading server
# knows ($ROOT_PATH, or a variable of its configuration).
_LEADING_VAR = re.compile(r"\$(?:([A-Za-z_][A-Za-z0-9_]*)|\{([A-Za-z_][A-Za-z0-9_]*)\})")

# Letters, digits and the punctuation of git revisions and branch names
# (`v1.2`, `HEAD~1`, `release/2024`, `main^2`, `a1b2c3`); the first character
# is never `-`, so the revision can never be read as an option.
REVISION_MAX = 200
_REVISION = re.compile(rf"[A-Za-z0-9_][A-Za-z0-9_.~^/@+-]{{0,{REVISION_MAX - 1}}}")


def check_revision(revision: str) -> str:
    """``revision`` if it looks like one (empty: the task folder as it is)."""
    if revision and not _REVISION.fullmatch(revision):
        raise BadRequest(
            "Invalid taskrevision: a revision is letters, digits and `_.~^/@+-`, "
            f"does not start with `-` and has at most {REVISION_MAX} characters."
        )
    return revision


def normalise(path: str) -> str | None:
    """``path`` with ``.`` and ``..`` resolved, or None when it cannot be judged.

    A leading ``$ROOT_PATH`` (or another variable of the grading server) is an
    opaque root: it becomes ``$NAME/...`` and ``..`` may not climb out of it.
    A relative path, a NUL byte or a variable anywhere else cannot be judged.
    """
    # Judged exactly as stored and sent: `/srv/tasks/A\n` is not `/srv/tasks/A`.
    if path != path.strip() or any(ord(c) < 32 or ord(c) == 127 for c in path):
        return None
    match = _LEADING_VAR.match(path)
    if match:
        name = match.group(1) or match.group(2)
        rest = path[match.end() :]
        if rest and not rest.startswith("/"):
            return None  # `$ROOT_PATHS/x` names another variable
        relative = posixpath.normpath("./" + rest)
        if relative == "..":
            return None
        if relative.startswith("../") or "$" in relative:
            return None
        return f"${name}" if relative == "." else f"${name}/{relative}"
    if not path.startswith("/") or "$" in path:
        return None
    # normpath keeps a leading `//`; a root is a root.
    return "/" + posixpath.normpath(path).lstrip("/")


def is_inside(path: str, roots: Sequence[str]) -> bool:
    """Whether ``path`` is one of ``roots`` or below one, after normalising both."""
    target = normalise(path)
    if target is None:
        return False
    for root in roots:
        base = normalise(root)
        if base is None:
            continue
        if target == base or target.startswith(base.rstrip("/") + "/"):
            return True
    return False


def job_paths(job: dict[str, Any]) -> list[tuple[str, Any]]:
    """The fields of a job JSON that name folders or files on the grading server."""
    found = [("taskPath", job.get("taskPath"))]
    extra = job.get("extraParams")
    if isinstance(extra, dict) and "solutionPath" in extra:
        found.append(("solutionPath", extra["solutionPath"]))
    # "" names no path, as for the grading server.
    return [(name, value) for name, value in found if value is not None and value != ""]


def check_job_paths(job: dict[str, Any], restrict_paths: Sequence[str]) -> None:
    """Refuse a job of a restricted platform that points outside its paths.

    A job without a task path names no folder of its own; the grading server
    still confines its program to ``restrictToPaths``.
    """
    if not restrict_paths:
        return
    for name, value in job_paths(job):
        if not isinstance(value, str):
            raise BadRequest(f"Invalid {name}: not a string.")
        if not is_inside(value, restrict_paths):
            raise BadRequest(
                f"{name} `{value[:200]}` is outside this platform's allowed paths "
                f"({', '.join(restrict_paths)})."
            )
