"""How a job JSON is adapted to this server, and how a run becomes resultdata."""

from __future__ import annotations

import json

import pytest

from graderserver.client import Job
from graderserver.errors import QueueUnavailable
from graderserver.runner import ProgramRun, prepare_jobdata, result_from_run


def test_root_path_and_variables_are_expanded():
    job = {"taskPath": "$ROOT_PATH/tasks/${CONTEST}/a", "extraParams": {}}
    out = prepare_jobdata(job, "/srv", {"CONTEST": "ioi"}, ["/srv/tasks"])
    assert out["rootPath"] == "/srv"
    assert out["taskPath"] == "/srv/tasks/ioi/a"
    assert out["restrictToPaths"] == ["/srv/tasks"]
    assert "rootPath" not in job, "the original job is left untouched"


def test_unknown_variables_stay_as_written():
    out = prepare_jobdata({"taskPath": "$UNKNOWN/x"}, "/srv", {}, [])
    assert out["taskPath"] == "$UNKNOWN/x"
    assert "restrictToPaths" not in out


def test_restrictions_from_a_list_are_extended():
    job = {"taskPath": "/t", "restrictToPaths": ["$ROOT_PATH/a", "/b"]}
    out = prepare_jobdata(job, "/srv", {}, ["/mine"])
    assert out["restrictToPaths"] == ["/srv/a", "/b", "/mine"]


def test_a_bare_string_restriction_is_one_path():
    # The original queue sent a string; it must not become one path per character.
    out = prepare_jobdata({"taskPath": "/t", "restrictToPaths": "/var/tasks"}, "/srv", {}, ["/m"])
    assert out["restrictToPaths"] == ["/var/tasks", "/m"]


def run(stdout=b"", stderr=b"", returncode=0, **kw):
    return ProgramRun(returncode=returncode, stdout=stdout, stderr=stderr, **kw)


def test_json_output_is_success():
    result = result_from_run(run(stdout=b'{"executions": []}'), 10, 100)
    assert result["errorcode"] == 0
    assert result["jobdata"] == {"executions": []}


def test_exit_codes_without_json():
    fatal = result_from_run(run(stdout=b"garbage", stderr=b"boom", returncode=1), 10, 100)
    assert fatal["errorcode"] == 1
    assert "garbage" in fatal["errormsg"] and "boom" in fatal["errormsg"]
    assert "jobdata" not in fatal
    assert result_from_run(run(returncode=2), 10, 100)["errorcode"] == 2
    assert result_from_run(run(stdout=b"[1, 2]", returncode=0), 10, 100)["errorcode"] == 1
    assert result_from_run(run(returncode=-9), 10, 100)["errorcode"] == 1


def test_our_own_kills_are_temporary():
    assert result_from_run(run(timed_out=True, returncode=-9), 10, 100)["errorcode"] == 2
    assert result_from_run(run(output_exceeded=True, returncode=-9), 10, 100)["errorcode"] == 2
    missing = result_from_run(ProgramRun(None, b"", b"", start_error="no such file"), 10, 100)
    assert missing["errorcode"] == 2


def test_error_messages_are_bounded():
    result = result_from_run(run(stdout=b"x" * 100_000, returncode=1), 10, 10**6)
    assert len(result["errormsg"]) < 10_000


def test_poll_answer_parsing():
    job = Job.from_answer(
        {"errorcode": 0, "jobid": "7", "jobname": "j", "taskrevision": None, "jobdata": {"a": 1}}
    )
    assert job == Job(jobid=7, jobname="j", taskrevision="", jobdata={"a": 1})
    as_string = Job.from_answer({"errorcode": 0, "jobid": 8, "jobdata": json.dumps({"b": 2})})
    assert as_string.jobdata == {"b": 2}
    for bad in ({"errorcode": 0}, {"jobid": "x", "jobdata": {}}, {"jobid": 1, "jobdata": "[1]"}):
        with pytest.raises(QueueUnavailable):
            Job.from_answer(bad)
