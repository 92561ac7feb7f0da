"""Refuse a job that points outside its allowed folders, before anything runs.

The queue already refuses such jobs, but an older queue does not, and only
this machine can resolve symlinks: a link inside platform A's folder that
points into platform B's must not let A's job check out B's repository.
The revision rule is the queue's own (graderqueue/taskpaths.py), repeated
here because the daemon depends on nothing of the queue.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from string import Template
from typing import Any

REVISION_MAX = 200
_REVISION = re.compile(rf"[A-Za-z0-9_][A-Za-z0-9_.~^/@+-]{{0,{REVISION_MAX - 1}}}")


def revision_problem(revision: str) -> str | None:
    """Why ``revision`` may not reach the prepare command, or None."""
    if revision and not _REVISION.fullmatch(revision):
        return f"taskrevision {revision[:80]!r} does not look like a revision"
    return None


def _inside(path: str, roots: Sequence[str]) -> bool:
    real = os.path.realpath(path)
    for root in roots:
        base = os.path.realpath(root)
        if real == base or real.startswith(base.rstrip("/") + "/"):
            return True
    return False


def path_problem(
    jobdata: Mapping[str, Any],
    platform_paths: Sequence[str],
    variables: Mapping[str, str] | None = None,
) -> str | None:
    """Why the job's task folder or solution file may not be used, or None.

    ``variables`` ($ROOT_PATH and the configured ones) are expanded in each
    path first, as the grading program will expand them. When the queue sent the
    platform's restrict paths, each path must lie inside one of them after
    resolving symlinks. (This server's own `paths.restrict` only widens what
    the program may read; it does not confine task paths.)
    """
    if not platform_paths:
        return None
    for root in platform_paths:
        # `$ROOT_PATH` on a server without a root expands to "" (realpath: the
        # working directory; as a prefix: everything), an unknown `$VAR` stays.
        if not os.path.isabs(root) or "$" in root:
            return f"the platform's allowed path {root[:200]!r} is not an absolute path here"
    paths = [("taskPath", jobdata.get("taskPath"))]
    extra = jobdata.get("extraParams")
    if isinstance(extra, Mapping) and extra.get("solutionPath") is not None:
        paths.append(("solutionPath", extra.get("solutionPath")))
    for name, value in paths:
        if value is None or value == "":
            continue
        if isinstance(value, str) and variables:
            value = Template(value).safe_substitute(variables)
        if not isinstance(value, str) or "\0" in value:
            return f"{name} is not a path"
        if not os.path.isabs(value):
            return f"{name} {value[:200]!r} is not an absolute path"
        if not _inside(value, platform_paths):
            return f"{name} {value[:200]!r} is outside the platform's allowed paths"
    return None
