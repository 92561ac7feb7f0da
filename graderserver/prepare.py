"""Bring a task folder to the job's `taskrevision` before the job runs.

The operator configures the command (e.g. `git -C {task_dir} checkout
{revision}`); this replaces the original's built-in SVN code. With several
jobs at once, two jobs on the same task at different revisions must not
overlap: a checkout under a running job would change its files. Jobs at the
same revision share the folder freely.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from graderserver.runner import ProcessGroups, run_program, snippet
from graderserver.taskpaths import revision_problem

log = logging.getLogger(__name__)

# A chatty checkout must not be killed for its output; it is only logged.
PREPARE_OUTPUT_CAP = 16 * 1024 * 1024


@dataclass
class _FolderState:
    revision: str | None = None  # what the folder holds, None if unknown
    users: int = 0  # jobs running on it now (including one preparing it)
    preparing: bool = False


class TaskPreparer:
    """Runs the prepare command at most once per folder and revision change."""

    def __init__(
        self, command: Sequence[str], timeout: float, groups: ProcessGroups | None = None
    ) -> None:
        self.command = tuple(command)
        self.timeout = timeout
        self.groups = groups
        self._cond = threading.Condition()
        self._folders: dict[str, _FolderState] = {}

    @contextmanager
    def checkout(self, task_dir: str, revision: str) -> Iterator[str | None]:
        """Hold `task_dir` at `revision` for the duration of the block.

        Yields None when the folder is ready, or an error message when the
        prepare command failed (the caller reports a temporary error).
        """
        if not self.command or not revision or not task_dir:
            yield None
            return
        key = os.path.normpath(task_dir)
        with self._cond:
            state = self._folders.setdefault(key, _FolderState())
            while state.preparing or (state.users and state.revision != revision):
                self._cond.wait()
            state.users += 1
            must_prepare = state.revision != revision
            state.preparing = must_prepare
        error = None
        try:
            if must_prepare:
                error = self._run(task_dir, revision)
                with self._cond:
                    state.preparing = False
                    # After a failure the folder's state is unknown: redo next time.
                    state.revision = revision if error is None else None
                    self._cond.notify_all()
            yield error
        finally:
            with self._cond:
                state.users -= 1
                self._cond.notify_all()

    def _run(self, task_dir: str, revision: str) -> str | None:
        problem = revision_problem(revision)
        if problem is not None:
            # The daemon refuses such jobs before this; never hand git an option.
            return f"Could not prepare {task_dir}: {problem}"
        argv = [arg.format(task_dir=task_dir, revision=revision) for arg in self.command]
        log.info("Preparing %s at revision %r: %s", task_dir, revision, argv)
        run = run_program(
            argv,
            b"",
            timeout=self.timeout,
            max_output_bytes=PREPARE_OUTPUT_CAP,
            groups=self.groups,
        )
        if run.start_error is not None:
            problem = run.start_error
        elif run.timed_out:
            problem = f"timed out after {self.timeout:g} s"
        elif run.returncode != 0:
            problem = f"exit code {run.returncode}: {snippet(run.stderr).strip()}"
        else:
            return None
        message = f"Could not prepare {task_dir} at revision {revision!r}: {problem}"
        log.warning("%s", message)
        return message
