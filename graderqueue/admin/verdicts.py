"""Verdicts as the admin pages filter, show and count them (the rule: queue/verdicts.py).

A grader error says nothing about the submission, so it is never counted as
a failure: pass rates are passed / (passed + failed).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import exists

from graderqueue.admin.conditions import noindex
from graderqueue.queue.verdicts import FAILED, GRADER_ERROR, PASSED, VERDICTS
from graderqueue.store.models import Job, Result

__all__ = ["FAILED", "GRADER_ERROR", "LABELS", "PASSED", "VERDICTS", "pass_rate", "result_is"]

# The done list's filter and badges say it this way.
LABELS = {PASSED: "passed", FAILED: "failed", GRADER_ERROR: "grader error"}


def result_is(verdict: str = "", task: str = "", language: str = "") -> list[Any]:
    """The job has a result with this verdict, task name and language (each: any when empty).

    One correlated test on the result's primary key, checked on each job a
    list walks along its own index: its cost per job does not depend on how
    common the verdict is.
    """
    conditions = []
    if verdict:
        conditions.append(noindex(Result.verdict) == verdict)
    if task:
        conditions.append(noindex(Result.task_name) == task)
    if language:
        conditions.append(noindex(Result.language) == language)
    if not conditions:
        return []
    return [exists().where(Result.job_id == Job.id, *conditions)]


def pass_rate(passed: int, judged: int) -> float | None:
    """Share of judged results (grader errors left out) where all tests passed."""
    return passed / judged if judged else None
