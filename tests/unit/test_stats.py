"""Statistics of results: taskgrader output gives figures, anything else zeros."""

from __future__ import annotations

import pytest

from graderqueue.queue.stats import extract

JOB = {"taskPath": "$ROOT_PATH/tasks/sum/", "extraParams": {"solutionLanguage": "cpp"}}


def report(score="100", cpu=10, real=15):
    return {
        "execution": {"timeTakenMs": cpu, "realTimeTakenMs": real},
        "checker": {"stdout": {"data": score}, "timeTakenMs": 1, "realTimeTakenMs": 2},
        "sanitizer": {"timeTakenMs": 3, "realTimeTakenMs": 4},
    }


def test_figures_of_taskgrader_output():
    result = {
        "errorcode": 0,
        "jobdata": {"executions": [{"testsReports": [report(), report(cpu=40)]}]},
    }
    stats = extract(JOB, result)
    assert stats.cpu_time_ms == (10 + 1 + 3) + (40 + 1 + 3)
    assert stats.real_time_ms == (15 + 2 + 4) * 2
    assert stats.max_real_time_ms == 40
    assert stats.is_success
    assert (stats.task_path, stats.task_name, stats.language) == (
        "$ROOT_PATH/tasks/sum/",
        "sum",
        "cpp",
    )


def test_one_failed_checker_fails_the_job():
    result = {"jobdata": {"executions": [{"testsReports": [report(), report(score="0")]}]}}
    assert not extract(JOB, result).is_success


@pytest.mark.parametrize(
    "result",
    [
        None,
        [],
        "text",
        {"jobdata": "x"},
        {"jobdata": {"executions": "x"}},
        {"jobdata": {"executions": [{"testsReports": [None, 3, {"execution": "x"}]}]}},
    ],
)
def test_anything_else_gives_zeros(result):
    stats = extract({"taskPath": 5}, result)
    assert (stats.cpu_time_ms, stats.real_time_ms, stats.max_real_time_ms) == (0, 0, 0)
    assert not stats.is_success
    assert stats.task_path == ""
