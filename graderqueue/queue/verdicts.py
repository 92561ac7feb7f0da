"""What a saved result says about the submission: passed, failed, or a grader error.

The one place for this rule: ``complete`` stores the verdict with the result
(``results.verdict``), migration 0009 fills it for older results, and the
admin pages filter and count by the stored value.

A result is a **grader error** when it says nothing about the submission
because the grading itself broke:

- ``resultdata.errorcode`` 1: the grading program failed for good (no JSON
  output and an exit code other than 2, the original grading server's
  "fatal" case) or the grading server refused the job. The queue keeps such
  a result (PROTOCOL.md) but no test ran to its end;
- errorcode 0 with taskgrader output where the task's own parts failed: a
  test rejected by the task's sanitizer (a report with a ``sanitizer`` part
  and no ``execution``: the test data is bad, the solution never ran), or a
  checker that exited with a non-zero code (it crashed instead of giving a
  score).

A solution that does not compile, crashes, runs out of time or gets a score
under 100 is the submission's doing: **failed**. Every checker at 100:
**passed** (the rule of ``stats.extract``).
"""

from __future__ import annotations

from typing import Any

from graderqueue.protocol.results import result_errorcode

PASSED = "passed"
FAILED = "failed"
GRADER_ERROR = "grader_error"
VERDICTS = (PASSED, FAILED, GRADER_ERROR)

# resultdata.errorcode of a result the queue keeps although grading failed.
FATAL_GRADER_CODE = 1


def _reports(result: Any) -> list[dict[str, Any]]:
    """Every test report of taskgrader output, skipping whatever is not one."""
    jobdata = result.get("jobdata") if isinstance(result, dict) else None
    executions = jobdata.get("executions") if isinstance(jobdata, dict) else None
    found = []
    for execution in executions if isinstance(executions, list) else []:
        reports = execution.get("testsReports") if isinstance(execution, dict) else None
        if isinstance(reports, list):
            found.extend(r for r in reports if isinstance(r, dict))
    return found


def _task_failed(report: dict[str, Any]) -> bool:
    """The task's sanitizer rejected the test, or its checker crashed."""
    if isinstance(report.get("sanitizer"), dict) and "execution" not in report:
        return True
    checker = report.get("checker")
    if not isinstance(checker, dict):
        return False
    code = checker.get("exitCode", 0)
    return isinstance(code, int) and not isinstance(code, bool) and code != 0


def grader_error(result: dict[str, Any]) -> bool:
    """Whether this kept result (errorcode 0 or 1) is the grader's failure, not a judgement."""
    if result_errorcode(result) == FATAL_GRADER_CODE:
        return True
    return any(_task_failed(report) for report in _reports(result))


def verdict(result: dict[str, Any], is_success: bool) -> str:
    """The verdict of a kept result; ``is_success`` as ``stats.extract`` found it."""
    if grader_error(result):
        return GRADER_ERROR
    return PASSED if is_success else FAILED
