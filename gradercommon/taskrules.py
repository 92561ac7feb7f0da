"""The rules on a job's revision and paths that the queue and the daemon share.

Each side applies them to its own view of a path: the queue to text it
normalises without touching any file system (``$ROOT_PATH`` kept as an
opaque root), the daemon to paths it has expanded and resolved through
symlinks. What stays the same is written once here.

A revision reaches the grading server's prepare command (usually
``git checkout``); it must look like a revision and never like an option.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

# Letters, digits and the punctuation of git revisions and branch names
# (`v1.2`, `HEAD~1`, `release/2024`, `main^2`, `a1b2c3`); the first character
# is never `-`, so the revision can never be read as an option.
REVISION_MAX = 200
_REVISION = re.compile(rf"[A-Za-z0-9_][A-Za-z0-9_.~^/@+-]{{0,{REVISION_MAX - 1}}}")


def is_revision(revision: str) -> bool:
    """Whether ``revision`` may reach the prepare command ("": the task folder as it is)."""
    return not revision or _REVISION.fullmatch(revision) is not None


def job_paths(job: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """The fields of a job JSON that name a folder or file on the grading server.

    (name, value) pairs, values as sent (not necessarily strings); a field
    that is absent, null or "" names no path and is left out.
    """
    found = [("taskPath", job.get("taskPath"))]
    extra = job.get("extraParams")
    if isinstance(extra, Mapping):
        found.append(("solutionPath", extra.get("solutionPath")))
    return [(name, value) for name, value in found if value is not None and value != ""]


def lies_within(path: str, root: str) -> bool:
    """Whether ``path`` is ``root`` or below it; both already normalised by the caller.

    Compared by whole components: ``/srv/tasks/AB`` is not within ``/srv/tasks/A``.
    """
    return path == root or path.startswith(root.rstrip("/") + "/")
