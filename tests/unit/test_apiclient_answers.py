"""The client's typed answers, made from JSON as docs/API.md writes it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from graderqueue.apiclient import FILTERS, JobDetail, ServerStatus, _filters, format_time

DETAIL = {
    "id": 12,
    "state": "FINISHED",
    "name": "add-1",
    "jobusertaskid": "sub-42",
    "platform": "first",
    "received_via": None,
    "tags": ["c"],
    "types": ["t-c", "t-java"],
    "priority": 4,
    "timeout": 300,
    "failures": 0,
    "received_at": "2026-12-06T05:00:00.123456Z",
    "started_at": "2026-12-06T05:00:01.000000Z",
    "finished_at": "2026-12-06T05:00:02.500000Z",
    "server": "grader-1",
    "taskrevision": "r7",
    "jobdata": {"taskPath": "/t"},
    "result": {"errorcode": 0},
    "timeline": [
        {"at": "2026-12-06T05:00:00.123456Z", "event": "received"},
        {"at": "2026-12-06T05:00:01.000000Z", "event": "handed_out", "server": "grader-1"},
        {"at": "2026-12-06T05:00:03.000000Z", "event": "delivery_attempt", "detail": "HTTP 502"},
    ],
    "artifacts": [{"name": "stdout", "size": 9, "truncated": False}],
    "a_field_of_a_newer_queue": True,
}


def test_a_job_with_its_timeline_and_artifacts():
    job = JobDetail.from_json(DETAIL)
    assert job.received_at == datetime(2026, 12, 6, 5, 0, 0, 123456, tzinfo=UTC)
    assert job.finished_at - job.started_at == timedelta(seconds=1.5)  # type: ignore[operator]
    assert (job.tags, job.types) == (("c",), ("t-c", "t-java"))
    assert [(e.event, e.server, e.detail) for e in job.timeline] == [
        ("received", None, None),
        ("handed_out", "grader-1", None),
        ("delivery_attempt", None, "HTTP 502"),
    ]
    assert job.artifacts[0].name == "stdout" and job.artifacts[0].size == 9
    assert job.result == {"errorcode": 0} and job.jobdata == {"taskPath": "/t"}
    hash(job.timeline)  # frozen all the way down


def test_a_missing_field_is_an_error_not_a_silent_none():
    with pytest.raises(TypeError, match="last_poll"):
        ServerStatus.from_json({"name": "s", "type": "t", "alive": True, "busy": False,
                                "jobs_held": 0, "max_jobs": 4, "jobs_done": 1})  # fmt: skip


def test_filter_times_are_written_as_the_api_writes_them():
    paris = timezone(timedelta(hours=1))
    assert format_time(datetime(2026, 12, 6, 6, 0, tzinfo=paris)) == "2026-12-06T05:00:00Z"
    assert format_time("2026-12-06") == "2026-12-06"
    with pytest.raises(ValueError, match="naive"):
        format_time(datetime(2026, 12, 6))
    assert _filters({"since": datetime(2026, 1, 1, tzinfo=UTC), "tag": None, "state": "HELD"}) == {
        "since": "2026-01-01T00:00:00Z",
        "state": "HELD",
    }
    with pytest.raises(ValueError, match="colour"):
        _filters({"colour": "red"})
    assert set(FILTERS) == {
        "state", "tag", "type", "name", "jobusertaskid", "since", "until", "platform",
    }  # fmt: skip
