"""Statistics kept with a done job, read from taskgrader output.

Mirrors what the original computed, and never fails: anything that is not
taskgrader output yields zeros.
"""

from __future__ import annotations

import math
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


# Times are kept in BIGINT columns; anything beyond is nonsense from a broken grader.
INT_MAX = 2**63 - 1


def _int(value: Any) -> int:
    """A non-negative integer from whatever a grader wrote; 0 when it is none."""
    if isinstance(value, bool):
        number = int(value)
    elif isinstance(value, int):
        number = value
    elif isinstance(value, float):
        number = int(value) if math.isfinite(value) else 0
    elif isinstance(value, str) and len(value) <= 40:
        try:
            parsed = float(value.strip())
        except ValueError:
            return 0
        number = int(parsed) if math.isfinite(parsed) else 0
    else:
        return 0
    return min(max(number, 0), INT_MAX)


def _add(total: int, value: Any) -> int:
    return min(total + _int(value), INT_MAX)


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
                cpu = _add(cpu, rep.get("timeTakenMs"))
                real = _add(real, rep.get("realTimeTakenMs"))
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
