"""Refuse a job that points outside its allowed folders, before anything runs.

The queue already refuses such jobs, but an older queue does not, and only
this machine can resolve symlinks: a link inside platform A's folder that
points into platform B's must not let A's job check out B's repository.
The revision rule, which fields of a job name paths, and the "within a
root" comparison are the queue's too (gradercommon.taskrules); this side
adds expanding the server's variables and resolving symlinks.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from string import Template
from typing import Any

from gradercommon.taskrules import is_revision, job_paths, lies_within


def revision_problem(revision: str) -> str | None:
    """Why ``revision`` may not reach the prepare command, or None."""
    if not is_revision(revision):
        return f"taskrevision {revision[:80]!r} does not look like a revision"
    return None


def _inside(path: str, roots: Sequence[str]) -> bool:
    real = os.path.realpath(path)
    return any(lies_within(real, os.path.realpath(root)) for root in roots)


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
    for name, value in job_paths(jobdata):
        if isinstance(value, str) and variables:
            value = Template(value).safe_substitute(variables)
        if not isinstance(value, str) or "\0" in value:
            return f"{name} is not a path"
        if not os.path.isabs(value):
            return f"{name} {value[:200]!r} is not an absolute path"
        if not _inside(value, platform_paths):
            return f"{name} {value[:200]!r} is outside the platform's allowed paths"
    return None
