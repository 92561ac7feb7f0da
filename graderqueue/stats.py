"""Statistics kept with a done job, read from taskgrader output.

Mirrors what the original computed, and never fails: anything that is not
taskgrader output yields zeros.
"""

from __future__ import annotations

import posixpath
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class TaskStats:
    cpu_time_ms: int = 0
    real_time_ms: int = 0
    max_real_time_ms: int = 0
    is_success: bool = False
    task_path: str = ""
    task_name: str = ""
    language: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _int(value: Any) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    if isinstance(value, str):
        try:
            return int(float(value.strip()))
        except ValueError:
            return 0
    return 0


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def extract(jobdata: Any, result: Any) -> TaskStats:
    """Statistics of a result (``{"errorcode", "jobdata": taskgrader output}``)."""
    job = _dict(jobdata)
    task_path = job.get("taskPath") if isinstance(job.get("taskPath"), str) else ""
    language = _dict(job.get("extraParams")).get("solutionLanguage")
    language = language if isinstance(language, str) else ""

    cpu = real = max_real = 0
    success = True
    checked = 0
    for execution in _list(_dict(_dict(result).get("jobdata")).get("executions")):
        for report in _list(_dict(execution).get("testsReports")):
            report = _dict(report)
            checker = report.get("checker")
            if isinstance(checker, dict):
                checked += 1
                score = _dict(checker.get("stdout")).get("data", "")
                if _int(score) != 100:
                    success = False
            for part in ("execution", "checker", "sanitizer"):
                rep = _dict(report.get(part))
                cpu += _int(rep.get("timeTakenMs"))
                real += _int(rep.get("realTimeTakenMs"))
            if isinstance(report.get("execution"), dict):
                max_real = max(max_real, _int(report["execution"].get("timeTakenMs")))
    return TaskStats(
        cpu_time_ms=cpu,
        real_time_ms=real,
        max_real_time_ms=max_real,
        # A result with no checker report proves nothing: not a success.
        is_success=success and checked > 0,
        task_path=task_path[:1000],
        task_name=posixpath.basename(task_path.rstrip("/"))[:255],
        language=language[:64],
    )
