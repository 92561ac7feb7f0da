"""Acceptance: the platform API (/api.php) as an independent platform sees it.

Written from PROTOCOL.md only: requests are joserfc tokens posted with
``requests`` to a real gunicorn, on SQLite and MariaDB. No grading server
exists in this module's queue (so no wake-up runs behind a test's back and a
whole-database snapshot shows what a refused request stored: nothing).
"""

from __future__ import annotations

import json
import re

import pytest

from harness.foreign_platform import ForeignPlatform, ServedQueue, served_queue_for

TIME = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")
ROW_FIELDS = {
    "id",
    "name",
    "jobusertaskid",
    "job_repeats",
    "status",
    "priority",
    "timeout_sec",
    "nb_fails",
    "received_from",
    "received_time",
    "sent_to",
    "grading_start_time",
    "tags",
    "taskrevision",
    "jobdata",
}
PARAMS = {"useCache": True, "stdoutTruncateKb": -1, "stderrTruncateKb": -1, "getFiles": []}


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("mariadb", marks=pytest.mark.mariadb)]
)
def served(request, tmp_path_factory):  # type: ignore[no-untyped-def]
    with served_queue_for(request, tmp_path_factory) as served:
        yield served


@pytest.fixture(scope="module")
def platform(served: ServedQueue) -> ForeignPlatform:
    """The platform most tests use; each test sends jobs of its own
    (distinct names or dedup keys), so tests do not dedup into each other."""
    return served.platform()


@pytest.fixture
def job(request: pytest.FixtureRequest) -> dict:
    """A job JSON of this test's own: identical requests dedup, and tests
    share a platform."""
    return {"taskPath": "/tasks/add", "extraParams": {"test": request.node.name}}


def job_tags(row: dict) -> set[str]:
    tags = row["tags"]
    if isinstance(tags, str):
        return {t.strip() for t in tags.split(",") if t.strip()}
    return set(tags)


def refused(served: ServedQueue, send, message: str) -> None:  # type: ignore[no-untyped-def]
    before = served.snapshot()
    assert send() == {"errorcode": 2, "errormsg": message}
    assert served.snapshot() == before


# -- test ------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api.php", "/api"])
def test_test_request_on_both_paths(platform: ForeignPlatform, path: str):
    answer = platform.send_token(platform.token({"request": "test"}), path=path)
    assert answer == {"errorcode": 0, "errormsg": f"Connected as platform id {platform.id}"}


def test_sendjob_on_the_clean_path(platform: ForeignPlatform, job: dict):
    token = platform.token({"request": "sendjob", "jobdata": json.dumps(job), "tags": "c"})
    answer = platform.send_token(token, path="/api")
    assert answer["errorcode"] == 0, answer
    assert json.loads(platform.job(answer["jobid"])["jobdata"]) == job


@pytest.mark.parametrize(
    "payload", [{"request": "frobnicate"}, {"jobdata": "{}"}, {"request": ""}],
    ids=["unknown", "missing", "empty"],
)  # fmt: skip
def test_unknown_or_missing_request(served: ServedQueue, platform: ForeignPlatform, payload):
    before = served.snapshot()
    answer = platform.send_token(platform.token(payload))
    assert answer["errorcode"] == 2, answer
    assert served.snapshot() == before


# -- sendjob ---------------------------------------------------------------------


def test_sendjob_with_jobdata_as_a_json_string(platform: ForeignPlatform, job: dict):
    answer = platform.sendjob(json.dumps(job), tags="c")
    assert answer == {
        "errorcode": 0,
        "errormsg": f"Queued as job ID #{answer['jobid']}.",
        "jobid": answer["jobid"],
    }
    assert isinstance(answer["jobid"], int)
    row = platform.job(answer["jobid"])
    assert isinstance(row["jobdata"], str)
    assert json.loads(row["jobdata"]) == job


def test_sendjob_with_jobdata_as_an_object(platform: ForeignPlatform, job: dict):
    jobid = platform.queue_job(job, tags="c")
    row = platform.job(jobid)
    assert isinstance(row["jobdata"], str)
    assert json.loads(row["jobdata"]) == job


def test_sendjob_defaults(platform: ForeignPlatform, job: dict):
    jobid = platform.queue_job(json.dumps(job), tags="c")
    row = platform.job(jobid)
    assert row["name"] == "api-sendjob"
    assert row["priority"] == 0
    assert row["taskrevision"] == ""
    assert row["timeout_sec"] == 300
    assert row["job_repeats"] == 0
    assert row["nb_fails"] == 0
    assert row["status"] == "queued"
    assert row["jobusertaskid"]  # derived from a hash of the request when absent


def test_sendjob_fields_are_kept(platform: ForeignPlatform, job: dict):
    jobid = platform.queue_job(
        json.dumps(job),
        jobname="add-1",
        priority=7,
        tags="c,java",
        jobusertaskid="user-1-task-1",
        taskrevision="r42",
        timeout=60,
    )
    row = platform.job(jobid)
    assert row["name"] == "add-1"
    assert row["priority"] == 7
    assert job_tags(row) == {"c", "java"}
    assert row["jobusertaskid"] == "user-1-task-1"
    assert row["taskrevision"] == "r42"
    assert row["timeout_sec"] == 60


def test_getjob_row(platform: ForeignPlatform, job: dict):
    jobid = platform.queue_job(json.dumps(job), tags="c", priority=3, timeout=45)
    answer = platform.getjob(jobid)
    assert answer["errorcode"] == 0
    assert answer["errormsg"] == "Success"
    assert answer["origin"] == "queue"
    row = answer["data"]
    assert set(row) >= ROW_FIELDS, ROW_FIELDS - set(row)
    assert row["id"] == jobid
    for number in ("id", "job_repeats", "priority", "timeout_sec", "nb_fails", "received_from"):
        assert type(row[number]) is int, (number, row[number])
    assert row["received_from"] == platform.id
    assert row["status"] == "queued"
    assert row["sent_to"] in (None, -1)  # not sent to any server
    assert row["grading_start_time"] is None
    assert TIME.match(row["received_time"]), row["received_time"]
    assert isinstance(row["jobdata"], str)


@pytest.mark.parametrize(
    "jobid",
    [
        "12a",
        "-1",
        "1.5",
        "",
        " 1",
        "1 OR 1=1",
        "0x10",
    ],
)
def test_getjob_non_digit_jobid(platform: ForeignPlatform, jobid: str, job: dict):
    platform.queue_job(job, tags="c", jobname="non-digit")
    assert platform.getjob(jobid) == {"errorcode": 2, "errormsg": "Invalid jobid."}


def test_getjob_without_a_jobid(platform: ForeignPlatform, job: dict):
    platform.queue_job(job, tags="c")
    assert platform.request("getjob") == {"errorcode": 2, "errormsg": "Invalid jobid."}


def test_getjob_jobid_as_digit_string_or_number(platform: ForeignPlatform, job: dict):
    jobid = platform.queue_job(job, tags="c")
    assert platform.getjob(str(jobid))["data"]["id"] == jobid
    assert platform.getjob(jobid)["data"]["id"] == jobid


def test_getjob_of_another_platforms_job(served: ServedQueue, platform: ForeignPlatform, job: dict):
    jobid = platform.queue_job(job, tags="c")
    intruder = served.platform()
    answer = intruder.getjob(jobid)
    assert answer["errorcode"] == 2, answer
    assert "data" not in answer
    assert answer == {"errorcode": 2, "errormsg": "Invalid jobid."}


def test_getjob_of_a_job_that_does_not_exist(platform: ForeignPlatform):
    answer = platform.getjob(987654321)
    assert answer["errorcode"] == 2, answer
    assert "data" not in answer


# -- dedup -------------------------------------------------------------------------


def test_same_jobusertaskid_updates_the_job_in_place(platform: ForeignPlatform, job: dict):
    first = platform.queue_job(
        json.dumps(job), jobname="v1", priority=1, tags="c", jobusertaskid="u1", taskrevision="a"
    )
    changed = {"taskPath": "/tasks/add", "extraParams": {"n": 2}}
    second = platform.queue_job(
        json.dumps(changed),
        jobname="v2",
        priority=5,
        tags="c,java",
        jobusertaskid="u1",
        taskrevision="b",
    )
    assert second == first
    row = platform.job(first)
    assert row["job_repeats"] == 1
    assert row["name"] == "v2"
    assert row["priority"] == 5
    assert job_tags(row) == {"c", "java"}
    assert row["taskrevision"] == "b"
    assert json.loads(row["jobdata"]) == changed
    assert row["status"] == "queued"
    assert platform.queue_job(job, tags="c", jobusertaskid="u1") == first
    assert platform.job(first)["job_repeats"] == 2


def test_identical_requests_without_jobusertaskid_dedup(platform: ForeignPlatform, job: dict):
    first = platform.queue_job(json.dumps(job), jobname="same", tags="c")
    assert platform.queue_job(json.dumps(job), jobname="same", tags="c") == first
    assert platform.job(first)["job_repeats"] == 1
    other = {"taskPath": "/tasks/other"}
    assert platform.queue_job(json.dumps(other), jobname="same", tags="c") != first


def test_dedup_is_scoped_to_the_sending_platform(
    served: ServedQueue, platform: ForeignPlatform, job: dict
):
    mine = platform.queue_job(json.dumps(job), jobname="mine", tags="c", jobusertaskid="shared")
    theirs_platform = served.platform()
    theirs_job = {"taskPath": "/tasks/theirs"}
    theirs = theirs_platform.queue_job(
        json.dumps(theirs_job), jobname="theirs", tags="c", jobusertaskid="shared"
    )
    assert theirs != mine
    row = platform.job(mine)
    assert row["name"] == "mine"
    assert row["job_repeats"] == 0
    assert json.loads(row["jobdata"]) == job
    assert theirs_platform.job(theirs)["received_from"] == theirs_platform.id


# -- tags --------------------------------------------------------------------------


def test_unknown_tag_is_refused_and_nothing_stored(
    served: ServedQueue, platform: ForeignPlatform, job: dict
):
    refused(
        served,
        lambda: platform.sendjob(json.dumps(job), tags="c,nosuchtag"),
        "Tag `nosuchtag` unrecognized.",
    )
    refused(
        served,
        lambda: platform.sendsolution(
            taskpath="/t", memlimit=1000, timelimit=1000, lang="c", solcontent="x", tags="zz"
        ),
        "Tag `zz` unrecognized.",
    )


def test_tags_no_type_handles_are_refused_and_nothing_stored(
    served: ServedQueue, platform: ForeignPlatform, job: dict
):
    before = served.snapshot()
    for tags in ("gpu", "c,gpu", "java,gpu"):
        answer = platform.sendjob(json.dumps(job), tags=tags)
        assert answer["errorcode"] == 2, (tags, answer)
    assert served.snapshot() == before


def test_tags_some_type_handles_are_accepted(platform: ForeignPlatform):
    for tags in ("c", "java", "c,java", "java, c"):
        answer = platform.sendjob({"tags": tags}, tags=tags)
        assert answer["errorcode"] == 0, (tags, answer)


def test_forced_tag_is_added(served: ServedQueue, job: dict):
    forced = served.platform(force_tag="java")
    with_c = forced.queue_job(job, tags="c")
    assert job_tags(forced.job(with_c)) == {"c", "java"}
    without = forced.queue_job({"taskPath": "/untagged"})
    assert "java" in job_tags(forced.job(without))


def test_forced_tag_that_no_type_handles_with_the_jobs_tags(served: ServedQueue, job: dict):
    forced = served.platform(force_tag="gpu")
    before = served.snapshot()
    assert forced.sendjob(job, tags="c")["errorcode"] == 2
    assert served.snapshot() == before


# -- restrict_paths ------------------------------------------------------------------


def test_restrict_paths_becomes_a_json_list(served: ServedQueue, job: dict):
    restricted = served.platform(restrict_paths="/srv/tasks/algorea")
    # The task must lie inside the platform's paths (a job outside is refused).
    job = {**job, "taskPath": "/srv/tasks/algorea/sum"}
    jobid = restricted.queue_job(job, tags="c")
    jobdata = json.loads(restricted.job(jobid)["jobdata"])
    assert jobdata["restrictToPaths"] == ["/srv/tasks/algorea"]
    assert jobdata["taskPath"] == job["taskPath"]
    solution = restricted.sendsolution(
        taskpath="/srv/tasks/algorea/t1",
        memlimit=1024,
        timelimit=1000,
        lang="c",
        solcontent="int main(){}",
        tags="c",
    )
    built = json.loads(restricted.job(solution["jobid"])["jobdata"])
    assert built["restrictToPaths"] == ["/srv/tasks/algorea"]


def test_no_restrict_paths_no_restriction(platform: ForeignPlatform, job: dict):
    jobid = platform.queue_job(job, tags="c")
    assert "restrictToPaths" not in json.loads(platform.job(jobid)["jobdata"])


# -- sendsolution ------------------------------------------------------------------


_names = iter(range(1_000_000))


def built_job(platform: ForeignPlatform, files=None, **fields) -> tuple[dict, dict]:  # type: ignore[no-untyped-def]
    fields.setdefault("jobname", f"solution-{next(_names)}")
    answer = platform.request("sendsolution", files=files, **fields)
    assert answer["errorcode"] == 0, answer
    assert answer["errormsg"] == f"Queued as job ID #{answer['jobid']}."
    row = platform.job(answer["jobid"])
    return json.loads(row["jobdata"]), row


def test_sendsolution_with_solpath(platform: ForeignPlatform):
    job, row = built_job(
        platform,
        taskpath="$ROOT_PATH/tasks/add",
        memlimit=65536,
        timelimit=2000,
        lang="c",
        solpath="/srv/solutions/user7/add.c",
        jobname="sol-7",
        priority=2,
        tags="c",
        jobusertaskid="sol-7",
        taskrevision="r3",
    )
    assert set(job) == {"taskPath", "extraParams"}
    assert job["taskPath"] == "$ROOT_PATH/tasks/add"
    extra = job["extraParams"]
    assert extra["solutionFilename"] == "add.c"
    assert extra["solutionPath"] == "/srv/solutions/user7/add.c"
    assert "solutionContent" not in extra
    assert extra["solutionId"] == "sol-add.c"
    assert extra["solutionExecId"] == "exec-add.c"
    assert extra["solutionLanguage"] == "c"
    assert extra["solutionDependencies"] == "@defaultDependencies-c"
    params = {"timeLimitMs": 2000, "memoryLimitKb": 65536, **PARAMS}
    assert extra["defaultSolutionCompParams"] == params
    assert extra["defaultSolutionExecParams"] == params
    assert row["name"] == "sol-7"
    assert row["priority"] == 2
    assert row["jobusertaskid"] == "sol-7"
    assert row["taskrevision"] == "r3"
    assert job_tags(row) == {"c"}


def test_sendsolution_with_solcontent(platform: ForeignPlatform):
    source = 'print("hello")\n'
    job, _ = built_job(
        platform, taskpath="/tasks/hello", memlimit=2048, timelimit=500, lang="py",
        solcontent=source, tags="c",
    )  # fmt: skip
    extra = job["extraParams"]
    assert extra["solutionFilename"] == "main.py"
    assert extra["solutionContent"] == source
    assert "solutionPath" not in extra
    assert extra["solutionId"] == "sol-main.py"
    assert extra["solutionExecId"] == "exec-main.py"
    assert extra["solutionLanguage"] == "py"
    assert extra["solutionDependencies"] == "@defaultDependencies-py"
    assert extra["defaultSolutionExecParams"] == {
        "timeLimitMs": 500,
        "memoryLimitKb": 2048,
        **PARAMS,
    }


def test_sendsolution_with_an_uploaded_solfile(platform: ForeignPlatform):
    source = b'#include <stdio.h>\nint main(void) { puts("hi"); return 0; }\n'
    job, _ = built_job(
        platform,
        files={"solfile": ("prog.c", source, "text/x-c")},
        taskpath="/tasks/hi",
        memlimit=4096,
        timelimit=1000,
        lang="c",
        tags="c",
    )
    extra = job["extraParams"]
    assert extra["solutionFilename"] == "prog.c"
    assert extra["solutionContent"] == source.decode()
    assert "solutionPath" not in extra
    assert extra["solutionId"] == "sol-prog.c"
    assert extra["solutionExecId"] == "exec-prog.c"
    assert extra["solutionLanguage"] == "c"


@pytest.mark.parametrize(
    "memlimit,timelimit,memory_kb,time_ms",
    [(0, 0, 4, 1), (3, 1, 4, 1), (4, 2, 4, 2), (-5, -5, 4, 1)],
)
def test_sendsolution_limits_have_a_floor(
    platform: ForeignPlatform, memlimit: int, timelimit: int, memory_kb: int, time_ms: int
):
    job, _ = built_job(
        platform, taskpath="/t", memlimit=memlimit, timelimit=timelimit, lang="c",
        solcontent="x", tags="c",
    )  # fmt: skip
    for params in ("defaultSolutionCompParams", "defaultSolutionExecParams"):
        assert job["extraParams"][params]["memoryLimitKb"] == memory_kb
        assert job["extraParams"][params]["timeLimitMs"] == time_ms


@pytest.mark.parametrize(
    "lang,extension",
    [
        ("c", ".c"),
        ("cpp", ".cpp"),
        ("java", ".java"),
        ("ocaml", ".ml"),
        ("pascal", ".pas"),
        ("py", ".py"),
        ("sh", ".sh"),
        ("brainfuck", ".sh"),
    ],
)
def test_sendsolution_default_extensions(platform: ForeignPlatform, lang: str, extension: str):
    job, _ = built_job(
        platform, taskpath="/t", memlimit=1024, timelimit=100, lang=lang, solcontent="x",
        tags="c",
    )  # fmt: skip
    extra = job["extraParams"]
    assert extra["solutionFilename"] == f"main{extension}"
    assert extra["solutionId"] == f"sol-main{extension}"
    assert extra["solutionExecId"] == f"exec-main{extension}"
    assert extra["solutionDependencies"] == f"@defaultDependencies-{lang}"
