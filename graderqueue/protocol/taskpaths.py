"""Where a platform's job may point on a grading server, and at which revision.

A platform registered with restrict paths may only send jobs whose task
folder lies inside one of them: otherwise it could have a grading server
check out another platform's repository at any revision. The queue does not
know a grading server's root folder, so ``$ROOT_PATH`` (or ``${ROOT_PATH}``)
is kept as an opaque root: ``$ROOT_PATH/tasks/A`` is inside a restrict path
``$ROOT_PATH/tasks``, never inside ``/srv/tasks``, and ``..`` cannot climb
out of it. The grading server checks again after resolving symlinks.

The revision rule, which fields of a job name paths, and the "within a
root" comparison are shared with the grading server (gradercommon.taskrules).
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Sequence
from typing import Any

from gradercommon.taskrules import REVISION_MAX, is_revision, job_paths, lies_within
from graderqueue.errors import BadRequest

# A leading `$NAME` or `${NAME}`: a folder that only the grading server
# knows ($ROOT_PATH, or a variable of its configuration).
_LEADING_VAR = re.compile(r"\$(?:([A-Za-z_][A-Za-z0-9_]*)|\{([A-Za-z_][A-Za-z0-9_]*)\})")


def check_revision(revision: str) -> str:
    """``revision`` if it looks like one (empty: the task folder as it is)."""
    if not is_revision(revision):
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
        if lies_within(target, base):
            return True
    return False


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
