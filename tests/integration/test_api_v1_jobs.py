"""POST/GET /api/v1/jobs, one job, its position, artifacts, control by id and by filter,
on both databases, through the app (the event stream has its own tests)."""

from __future__ import annotations

import json
import re
import uuid
from datetime import timedelta

from graderqueue.maintenance import purge
from graderqueue.queue import idempotency
from graderqueue.store.models import IdempotencyKey, Job, utcnow
from tests.integration.test_api_v1_auth import api_token, bearer_jws
from tests.integration.test_api_v1_openapi import validator_for

PROBLEM = "application/problem+json"
RESULT = json.dumps({"errorcode": 0, "errormsg": "ok", "jobdata": {"score": 1}})


class Api:
    """Requests as one caller: an operator token, or a platform (a new JWS each time).

    Every answer is checked against the OpenAPI document: its status must be
    documented for the path and method, and its JSON must fit the schema.
    """

    def __init__(self, queue, platform=None, token=None):  # type: ignore[no-untyped-def]
        self.queue, self.platform, self.token = queue, platform, token
        self.http = queue.app.test_client()
        self.doc = self.http.get("/api/v1/openapi.json").get_json()

    def conforms(self, method, path, answer):  # type: ignore[no-untyped-def]
        template = next(
            t
            for t in self.doc["paths"]
            if re.fullmatch(re.sub(r"\{\w+\}", "[^/]+", t), path.split("?")[0])
        )
        responses = self.doc["paths"][template][method]["responses"]
        assert str(answer.status_code) in responses, (method, path, answer.status_code)
        content = responses[str(answer.status_code)].get("content", {})
        if answer.mimetype in ("application/json", "application/problem+json"):
            schema = content[answer.mimetype]["schema"]
            validator_for(self.doc, schema).validate(answer.get_json())
        return answer

    def headers(self, extra=None):  # type: ignore[no-untyped-def]
        token = self.token or bearer_jws(self.platform, self.queue.settings.key_name)
        return {"Authorization": f"Bearer {token}", **(extra or {})}

    def get(self, path, **params):  # type: ignore[no-untyped-def]
        answer = self.http.get("/api/v1" + path, headers=self.headers(), query_string=params)
        return self.conforms("get", path, answer)

    def post(self, path, body=None, headers=None):  # type: ignore[no-untyped-def]
        data = json.dumps(body) if body is not None else None
        return self.http.post(
            "/api/v1" + path,
            data=data,
            headers=self.headers(headers),
            content_type="application/json",
        )


def job_body(**fields):  # type: ignore[no-untyped-def]
    return {"jobdata": {"taskPath": "/t"}, "tags": "c", "jobusertaskid": uuid.uuid4().hex, **fields}


def complete_one(queue, type_name="t-c"):  # type: ignore[no-untyped-def]
    token = queue.server_token(type_name)
    job = queue.post("/poll.php", server_token=token, nbtasks="0")
    assert job["errorcode"] == 0, job
    done = queue.post(
        "/sendresults.php",
        server_token=token,
        jobid=str(job["jobid"]),
        resultdata=RESULT,
        stdout="hello out",
        stderr="x" * 70_000,
    )
    assert done["errorcode"] == 0, done
    return job["jobid"]


def test_a_platform_submits_reads_and_follows_its_job(queue):
    api = Api(queue, platform=queue.platform("first"))
    answer = api.post("/jobs", job_body(jobname="one", priority=3))
    assert answer.status_code == 201, answer.get_data(as_text=True)
    job_id = answer.get_json()["id"]
    assert answer.get_json() == {"id": job_id, "state": "QUEUED"}
    assert answer.headers["Location"] == f"/api/v1/jobs/{job_id}"

    job = api.get(f"/jobs/{job_id}").get_json()
    assert job["state"] == "QUEUED" and job["name"] == "one" and job["priority"] == 3
    assert job["platform"] == "first" and job["tags"] == ["c"]
    assert [e["event"] for e in job["timeline"]] == ["received"]
    assert api.get(f"/jobs/{job_id}/position").get_json()["position"] == 0

    assert complete_one(queue) == job_id
    job = api.get(f"/jobs/{job_id}").get_json()
    assert job["state"] == "FINISHED" and job["result"]["jobdata"] == {"score": 1}
    assert [e["event"] for e in job["timeline"]] == ["received", "handed_out", "finished"]
    names = {a["name"]: a for a in job["artifacts"]}
    assert names["stderr"]["truncated"] and names["stderr"]["size"] == 70_000
    out = api.get(f"/jobs/{job_id}/artifacts/stdout")
    assert out.status_code == 200 and out.get_data(as_text=True) == "hello out"
    assert api.get(f"/jobs/{job_id}/artifacts/nothing").status_code == 404
    assert api.get(f"/jobs/{job_id}/position").get_json()["position"] is None


def test_positions_follow_priority_then_age(queue):
    api = Api(queue, platform=queue.platform("first"))
    low = [api.post("/jobs", job_body(priority=0)).get_json()["id"] for _ in range(3)]
    high = api.post("/jobs", job_body(priority=5)).get_json()["id"]
    java = api.post("/jobs", job_body(tags="java")).get_json()["id"]
    where = {j: api.get(f"/jobs/{j}/position").get_json()["position"] for j in [*low, high]}
    assert where == {high: 0, low[0]: 1, low[1]: 2, low[2]: 3}
    # c jobs run on t-c and t-java; the java job only on t-java, behind all of them.
    assert api.get(f"/jobs/{java}/position").get_json()["position"] == 4


def test_a_batch_is_all_or_nothing_and_an_idempotency_key_replays(queue):
    api = Api(queue, platform=queue.platform("first"))
    before = queue.snapshot()
    bad = api.post("/jobs", [job_body(), job_body(tags="no-such-tag")])
    assert bad.status_code == 400 and bad.mimetype == PROBLEM
    assert "job 1" in bad.get_json()["detail"]
    assert queue.snapshot() == before

    batch = [job_body(), job_body()]
    key = {"Idempotency-Key": "k-1"}
    first = api.post("/jobs", batch, key)
    again = api.post("/jobs", batch, key)
    assert first.status_code == again.status_code == 201
    assert first.get_json() == again.get_json() and len(first.get_json()["ids"]) == 2
    assert again.headers["Idempotent-Replayed"] == "true"
    reused = api.post("/jobs", [job_body()], key)
    assert reused.status_code == 422 and reused.mimetype == PROBLEM


def test_listing_filters_and_pages(queue):
    first, other = queue.platform("first"), queue.platform("other")
    api, api2 = Api(queue, platform=first), Api(queue, platform=other)
    mine = [api.post("/jobs", job_body(jobname=f"j{i}")).get_json()["id"] for i in range(5)]
    api2.post("/jobs", job_body())
    seen, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = api.get("/jobs", **params).get_json()
        seen += [j["id"] for j in page["jobs"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(mine, reverse=True), "newest first, a platform's own jobs only"
    assert [j["id"] for j in api.get("/jobs", name="j3").get_json()["jobs"]] == [mine[3]]
    assert api.get("/jobs", tag="java").get_json()["jobs"] == []
    assert len(api.get("/jobs", state="QUEUED", type="t-c").get_json()["jobs"]) == 5
    ops = Api(queue, token=api_token(queue))
    assert len(ops.get("/jobs", platform="other").get_json()["jobs"]) == 1
    assert ops.get("/jobs", state="NOPE").status_code == 400
    assert api.get("/jobs", platform="other").get_json()["jobs"] == [], "a platform's own only"
    assert api.get("/jobs", since="").status_code == 400


def test_control_by_id_and_by_filter(queue):
    api = Api(queue, platform=queue.platform("first"))
    ids = [api.post("/jobs", job_body(jobname="task-a")).get_json()["id"] for _ in range(3)]
    assert api.post(f"/jobs/{ids[0]}/hold").get_json() == {"id": ids[0], "state": "HELD"}
    assert api.post(f"/jobs/{ids[0]}/hold").status_code == 409
    assert api.get(f"/jobs/{ids[1]}/position").get_json()["position"] == 0, "held: not ahead"
    assert api.post(f"/jobs/{ids[0]}/release", {"priority": 9}).get_json()["state"] == "QUEUED"
    assert api.get(f"/jobs/{ids[0]}/position").get_json()["position"] == 0
    assert api.post(f"/jobs/{ids[2]}/cancel").get_json()["state"] == "CANCELLED"

    dry = api.post(
        "/jobs/actions", {"action": "hold", "filter": {"name": "task-a"}, "dry_run": True}
    )
    assert dry.get_json() == {"action": "hold", "dry_run": True, "matched": 2, "changed": 0}
    done = api.post("/jobs/actions", {"action": "hold", "filter": {"name": "task-a"}})
    assert done.get_json()["changed"] == 2
    states = [api.get(f"/jobs/{i}").get_json()["state"] for i in ids]
    assert states == ["HELD", "HELD", "CANCELLED"]
    events = [e["event"] for e in api.get(f"/jobs/{ids[0]}").get_json()["timeline"]]
    assert events == ["received", "held", "released", "held"]


def test_a_rejudge_at_lower_priority_grades_finished_jobs_again(queue):
    api = Api(queue, platform=queue.platform("first"))
    job_id = api.post("/jobs", job_body(jobname="rejudge-me", priority=5)).get_json()["id"]
    complete_one(queue)
    answer = api.post(
        "/jobs/actions",
        {"action": "requeue", "filter": {"name": "rejudge-me", "state": "FINISHED"}, "priority": 1},
    )
    assert answer.get_json()["changed"] == 1
    job = api.get(f"/jobs/{job_id}").get_json()
    assert (job["state"], job["priority"], job["result"], job["artifacts"]) == (
        "QUEUED",
        1,
        None,
        [],
    )
    assert complete_one(queue) == job_id
    assert api.get(f"/jobs/{job_id}").get_json()["state"] == "FINISHED"


def test_foreign_jobs_read_only_tokens_and_bad_input_change_nothing(queue):
    mine = Api(queue, platform=queue.platform("first"))
    theirs = Api(queue, platform=queue.platform("other"))
    job_id = mine.post("/jobs", job_body()).get_json()["id"]
    reader = Api(queue, token=api_token(queue, "reader", "read"))
    before = jobs_tables(queue)
    for answer, status in [
        (theirs.get(f"/jobs/{job_id}"), 404),
        (theirs.post(f"/jobs/{job_id}/cancel"), 404),
        (theirs.get(f"/jobs/{job_id}/position"), 404),
        (reader.post(f"/jobs/{job_id}/cancel"), 403),
        (reader.post("/jobs", job_body()), 403),
        (mine.post("/jobs", {"jobdata": {}, "bogus": 1}), 400),
        (mine.post("/jobs", []), 400),
        (mine.post(f"/jobs/{job_id}/cancel", {"priority": 2}), 400),
        (mine.post(f"/jobs/{job_id}/requeue", {"priority": -1}), 400),
        (mine.post("/jobs/actions", {"action": "explode", "filter": {}}), 400),
        (mine.post("/jobs/actions", {"action": "hold", "filter": {"colour": "red"}}), 400),
        (mine.get("/jobs/99999999999999999999999"), 404),
    ]:
        assert answer.status_code == status, (answer.status_code, answer.get_data(as_text=True))
        assert answer.mimetype == PROBLEM
    assert jobs_tables(queue) == before


def jobs_tables(queue):  # type: ignore[no-untyped-def]
    """Everything but the callers' bookkeeping (spent jti, a token's last use)."""
    tables = queue.snapshot()
    del tables["seen_token_ids"], tables["api_tokens"]
    return tables


def test_a_cancelled_running_job_refuses_the_late_result_of_any_server(queue):
    api = Api(queue, platform=queue.platform("first"))
    job_id = api.post("/jobs", job_body()).get_json()["id"]
    token = queue.server_token("t-c")
    assert queue.post("/poll.php", server_token=token, nbtasks="0")["jobid"] == job_id
    assert queue.post("/jobstate.php", server_token=token, jobid=str(job_id))["holds"] is True

    assert api.post(f"/jobs/{job_id}/cancel").get_json() == {"id": job_id, "state": "CANCELLED"}
    # What the project's graderserver asks every few seconds; the original never asks.
    assert queue.post("/jobstate.php", server_token=token, jobid=str(job_id))["holds"] is False
    late = queue.post("/sendresults.php", server_token=token, jobid=str(job_id), resultdata=RESULT)
    assert late["errorcode"] == 2, "a late result is refused, as for a lease run out"
    job = api.get(f"/jobs/{job_id}").get_json()
    assert (job["state"], job["result"], job["server"]) == ("CANCELLED", None, None)
    assert [e["event"] for e in job["timeline"]] == ["received", "handed_out", "cancelled"]
    assert api.post(f"/jobs/{job_id}/cancel").status_code == 409


def test_cron_forgets_old_cancelled_jobs_and_idempotency_keys(queue):
    api = Api(queue, platform=queue.platform("first"))
    old, recent = (api.post("/jobs", job_body(), {"Idempotency-Key": k}) for k in ("a", "b"))
    old_id, recent_id = old.get_json()["id"], recent.get_json()["id"]
    for job_id in (old_id, recent_id):
        api.post(f"/jobs/{job_id}/cancel")
    long_ago = utcnow() - timedelta(days=30)
    with queue.db.transaction() as session:
        session.execute(
            Job.__table__.update().where(Job.id == old_id).values(grading_end_time=long_ago)
        )
        session.execute(
            IdempotencyKey.__table__.update()
            .where(IdempotencyKey.key == "a")
            .values(created_at=long_ago)
        )
    assert purge.purge_old_jobs(queue.db, keep_days=7) == 1
    assert idempotency.purge(queue.db, keep_hours=48) == 1
    assert api.get(f"/jobs/{old_id}").status_code == 404
    assert api.get(f"/jobs/{recent_id}").get_json()["state"] == "CANCELLED"
