"""Labs and the files jobs take (docs/API.md "Files (labs)"), through the app: upload,
content stored once, jobs bound to what their files held when submitted, the
grading server's download, refusals that change nothing, and the clean-up."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from graderqueue.files import cleanup
from graderqueue.maintenance import purge
from graderqueue.store.models import FileBlob, FileChunk, Job, JobStatus, LabFile, Run, utcnow
from tests.integration.test_api_v1_auth import api_token
from tests.integration.test_api_v1_jobs import PROBLEM, RESULT, Api, job_body

CALLERS = ("seen_token_ids", "api_tokens")


class LabApi(Api):
    """Api with the labs' PUT and DELETE, each answer checked against the document."""

    def put(self, path, data, content_type="application/octet-stream"):  # type: ignore[no-untyped-def]
        answer = self.http.put(
            "/api/v1" + path, data=data, headers=self.headers({"Content-Type": content_type})
        )
        return self.conforms("put", path, answer)

    def delete(self, path):  # type: ignore[no-untyped-def]
        answer = self.http.delete("/api/v1" + path, headers=self.headers())
        return self.conforms("delete", path, answer)

    def submit(self, **fields):  # type: ignore[no-untyped-def]
        return self.conforms("post", "/jobs", self.post("/jobs", job_body(**fields)))


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def poll(queue, token):  # type: ignore[no-untyped-def]
    job = queue.post("/poll.php", server_token=token, nbtasks="0")
    assert job["errorcode"] == 0, job
    return job


def download(queue, token, job_id, digest):  # type: ignore[no-untyped-def]
    return queue.app.test_client().post(
        "/jobfile", data={"server_token": token, "jobid": str(job_id), "sha256": digest}
    )


def count(queue, model) -> int:  # type: ignore[no-untyped-def]
    return queue.scalar(select(func.count()).select_from(model))


def test_files_are_stored_once_and_jobs_keep_what_they_were_sent_with(queue):
    api = LabApi(queue, platform=queue.platform("first"))
    small = b"print('v1')\n"
    big = bytes(range(256)) * (10 * 1024 + 7)  # 2.5 MiB: three chunks of at most 1 MiB
    first = api.put("/labs/lab1/files/a.py", small)
    assert first.status_code == 201, first.get_data(as_text=True)
    assert first.get_json() == {
        "lab": "lab1", "name": "a.py", "md5": md5(small), "sha256": sha(small), "size": len(small)
    }  # fmt: skip
    assert api.put("/labs/lab2/files/same.py", small).status_code == 201
    assert count(queue, FileBlob) == 1  # the same bytes, in two labs: stored once
    assert api.get("/labs/lab1").get_json() == {"files": {"a.py": md5(small)}}
    assert api.get("/labs/empty").get_json() == {"files": {}}

    spec = {"files": [{"lab": "lab1", "name": "a.py", "dest": "src/a.py"}]}
    one = api.submit(**spec, output_file="out/report.txt", max_kb=2).get_json()["id"]
    replaced = api.put("/labs/lab1/files/a.py", big)
    assert replaced.status_code == 200 and replaced.get_json()["sha256"] == sha(big)
    two = api.submit(**spec).get_json()["id"]
    assert count(queue, FileBlob) == 2 and count(queue, FileChunk) == 1 + 3

    token = queue.server_token("t-c")
    got = poll(queue, token)
    assert got["jobid"] == one
    assert got["files"] == [{"dest": "src/a.py", "sha256": sha(small), "size": len(small)}]
    assert got["output_file"] == "out/report.txt" and got["max_kb"] == 2
    fetched = download(queue, token, one, sha(small))
    assert fetched.mimetype == "application/octet-stream" and fetched.data == small
    # The file of the job a server holds, and only that.
    assert download(queue, token, one, sha(big)).get_json()["errorcode"] == 2
    assert download(queue, token, two, sha(big)).get_json()["errorcode"] == 2  # not sent yet

    # output: cut to max_kb (2 KiB) by the queue too, whatever the server sent.
    done = queue.post(
        "/sendresults.php", server_token=token, jobid=str(one), resultdata=RESULT, output="x" * 5000
    )
    assert done["errorcode"] == 0, done
    output = api.get(f"/jobs/{one}/artifacts/output")
    assert output.status_code == 200 and output.get_data(as_text=True) == "x" * 2048
    listed = {a["name"]: a for a in api.get(f"/jobs/{one}").get_json()["artifacts"]}
    assert listed["output"] == {"name": "output", "size": 5000, "truncated": True}

    got = poll(queue, token)
    assert got["jobid"] == two and got["files"][0]["sha256"] == sha(big)
    assert "output_file" not in got
    assert download(queue, token, two, sha(big)).data == big
    other = queue.server_token("t-c", name="other")
    assert download(queue, other, two, sha(big)).get_json()["errorcode"] == 2

    assert api.delete("/labs/lab1/files/a.py").status_code == 204
    assert api.get("/labs/lab1").get_json() == {"files": {}}
    assert api.delete("/labs/lab1/files/a.py").status_code == 404
    before = queue.snapshot()
    gone = api.submit(**spec)
    assert gone.status_code == 400 and "no file 'a.py'" in gone.get_json()["detail"]
    assert queue.snapshot() == before


@pytest.mark.queue_settings(file_max_bytes=1000, file_platform_max_bytes=2500)
def test_bad_names_sizes_and_other_platforms_are_refused_and_change_nothing(sqlite_queue):
    queue = sqlite_queue
    api = LabApi(queue, platform=queue.platform("first"))
    assert api.put("/labs/lab/files/kept", b"k" * 900).status_code == 201
    assert api.put("/labs/lab/files/two", b"2" * 900).status_code == 201
    stranger = LabApi(queue, platform=queue.platform("second"))
    operator = LabApi(queue, token=api_token(queue, scope="write"))
    before = queue.snapshot()
    for path in ("/labs/.hidden/files/x", "/labs/lab/files/..", "/labs/lab/files/a%20b"):
        answer = api.put(path, b"data")
        assert answer.status_code == 400 and answer.mimetype == PROBLEM, path
    assert api.put("/labs/lab/files/" + "n" * 256, b"x").status_code == 400
    form = api.put("/labs/lab/files/form", b"a=b", "application/x-www-form-urlencoded")
    assert form.status_code == 400
    too_big = api.put("/labs/lab/files/big", b"b" * 1001)
    assert too_big.status_code == 413 and too_big.mimetype == PROBLEM
    over_total = api.put("/labs/lab/files/three", b"3" * 900)
    assert over_total.status_code == 413
    assert "file_platform_max_bytes" in over_total.get_json()["detail"]
    assert queue.snapshot() == before

    file = {"lab": "lab", "name": "kept", "dest": "k"}
    for fields in (
        {"files": [{**file, "dest": "../k"}]},
        {"files": [{**file, "dest": "/abs"}]},
        {"files": [file, file]},
        {"files": [{"lab": "lab", "name": "kept"}]},
        {"files": "kept"},
        {"max_kb": 3},
        {"output_file": "a/../b", "max_kb": 3},
        {"output_file": "out", "max_kb": 0},
        {"output_file": "out", "max_kb": None},
        {"output_file": None},
        {"files": None},
    ):
        assert api.submit(**fields).status_code == 400, fields

    assert stranger.get("/labs/lab").get_json() == {"files": {}}
    assert stranger.delete("/labs/lab/files/kept").status_code == 404
    assert stranger.submit(files=[file]).status_code == 400
    assert operator.get("/labs/lab").status_code == 403
    assert operator.put("/labs/lab/files/x", b"x").status_code == 403
    assert operator.submit(files=[file]).status_code == 400
    # Reads spend a platform token's jti and stamp an API token's last use.
    unchanged = {t: rows for t, rows in queue.snapshot().items() if t not in CALLERS}
    assert unchanged == {t: rows for t, rows in before.items() if t not in CALLERS}


def test_cron_removes_only_old_unreferenced_files(sqlite_queue):
    queue = sqlite_queue
    api = LabApi(queue, platform=queue.platform("first"))
    for name in ("in-lab", "in-job", "orphan"):
        assert api.put(f"/labs/lab/files/{name}", name.encode()).status_code == 201
    job = api.submit(files=[{"lab": "lab", "name": "in-job", "dest": "f"}]).get_json()["id"]
    for name in ("in-job", "orphan"):
        assert api.delete(f"/labs/lab/files/{name}").status_code == 204

    assert cleanup.remove_unreferenced(queue.db, 3600) == 0  # all within the grace period
    old = utcnow() - timedelta(hours=2)
    with queue.db.transaction() as session:
        session.execute(update(FileBlob).values(created_at=old))
    assert cleanup.remove_unreferenced(queue.db, 3600) == 1  # the orphan only
    assert count(queue, FileBlob) == 2 and count(queue, FileChunk) == 2

    with queue.db.transaction() as session:
        ended = {"status": JobStatus.CANCELLED, "grading_end_time": old}
        session.execute(update(Job).where(Job.id == job).values(**ended))
    assert purge.purge_old_jobs(queue.db, keep_days=0) == 1
    assert cleanup.remove_unreferenced(queue.db, 3600) == 1  # the purged job's file
    kept = queue.rows(select(LabFile.name, FileBlob.sha256).join(FileBlob))
    assert kept == [("in-lab", sha(b"in-lab"))] and count(queue, FileChunk) == 1


def test_a_run_binds_its_files_when_submitted_and_keeps_them(sqlite_queue):
    """A run makes its roster jobs after its pre job; they still get the files'
    content of the run's submission, and the clean-up keeps it meanwhile."""
    queue = sqlite_queue
    api = LabApi(queue, platform=queue.platform("first"))
    old, new = b"old\n", b"new\n"
    assert api.put("/labs/lab1/files/in-a.txt", old).status_code == 201
    assert api.put("/labs/lab1/files/in-b.txt", old + old).status_code == 201
    body = {
        "roster": [{"U": "a"}, {"U": "b"}],
        "pre_job": {"jobdata": {"taskPath": "/t"}},
        "job": {
            "jobdata": {"taskPath": "/t"},
            "files": [{"lab": "lab1", "name": "in-${U}.txt", "dest": "data/${U}.txt"}],
            "output_file": "out.txt",
        },
        "tags": "c",
    }
    before = queue.snapshot()
    missing = {**body, "roster": [{"U": "zz"}]}
    refused = api.post("/runs", missing)
    assert refused.status_code == 400 and "no file 'in-zz.txt'" in refused.get_json()["detail"]
    assert queue.snapshot() == before

    run_id = api.post("/runs", body).get_json()["id"]
    assert api.put("/labs/lab1/files/in-a.txt", new).status_code == 200  # replaced meanwhile
    with queue.db.transaction() as session:  # the old content is past any grace period
        session.execute(update(FileBlob).values(created_at=utcnow() - timedelta(days=1)))
    assert cleanup.remove_unreferenced(queue.db, grace_sec=0) == 0, "the run keeps it"

    token = queue.server_token("t-c")
    pre = poll(queue, token)
    assert "files" not in pre
    queue.post("/sendresults.php", server_token=token, jobid=str(pre["jobid"]), resultdata=RESULT)
    got = {}
    for _ in range(2):
        job = poll(queue, token)
        got[job["files"][0]["dest"]] = job
        sent = {"jobid": str(job["jobid"]), "resultdata": RESULT}
        assert queue.post("/sendresults.php", server_token=token, **sent)["errorcode"] == 0
    a, b = got["data/a.txt"], got["data/b.txt"]
    assert a["files"] == [{"dest": "data/a.txt", "sha256": sha(old), "size": len(old)}]
    assert a["output_file"] == "out.txt"
    assert b["files"][0]["sha256"] == sha(old + old) and "output_file" in b
    assert api.get(f"/runs/{run_id}").get_json()["state"] == "FINISHED"

    # Purged (run and jobs), the run's old content is the clean-up's again.
    with queue.db.transaction() as session:
        session.execute(update(Job).values(grading_end_time=utcnow() - timedelta(days=2)))
        session.execute(update(Run).values(ended_at=utcnow() - timedelta(days=2)))
    assert purge.purge_old_jobs(queue.db, keep_days=1) == 3
    assert purge.purge_old_runs(queue.db, keep_days=1)["runs"] == 1
    assert cleanup.remove_unreferenced(queue.db, grace_sec=0) == 1  # "old" only: labs hold the rest
