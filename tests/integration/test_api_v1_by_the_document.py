"""An independent client that knows only the OpenAPI document: it finds each call
by its operationId, fills the path from the document's template, and checks
each answer against the document's schema, through real gunicorn on both
databases. If the document named a path, a parameter or a field the code does
not have (or the reverse), this walk breaks."""

from __future__ import annotations

import re

import jsonschema
import requests

from tests.integration.test_api_v1_auth import api_token

RESULT = '{"errorcode": 0, "errormsg": "ok", "jobdata": {"score": 1}}'


class DocumentClient:
    def __init__(self, base: str, token: str) -> None:
        self.base = base
        self.headers = {"Authorization": f"Bearer {token}"}
        self.doc = requests.get(f"{base}/api/v1/openapi.json", timeout=10).json()
        self.root = base + self.doc["servers"][0]["url"]
        self.operations = {
            op["operationId"]: (path, method, op)
            for path, item in self.doc["paths"].items()
            for method, op in item.items()
        }

    def call(self, operation_id: str, *, body=None, query=None, **path_values):  # type: ignore[no-untyped-def]
        path, method, op = self.operations[operation_id]
        url = self.root + re.sub(r"\{(\w+)\}", lambda m: str(path_values.pop(m[1])), path)
        assert not path_values, f"{operation_id} has no path parameter {path_values}"
        known = {p["name"] for p in op.get("parameters", []) if p["in"] == "query"}
        assert set(query or {}) <= known, f"{operation_id} takes no {set(query) - known}"
        answer = requests.request(
            method, url, json=body, params=query, headers=self.headers, timeout=10
        )
        documented = op["responses"][str(answer.status_code)]
        media = answer.headers["Content-Type"].split(";")[0]
        schema = documented["content"][media]["schema"]
        if media.endswith("json"):
            jsonschema.Draft202012Validator(
                {**schema, "components": self.doc["components"]}
            ).validate(answer.json())
        return answer.status_code, (answer.json() if media.endswith("json") else answer.text)


def test_a_job_walked_through_the_api_by_the_document_alone(queue):
    node = queue.gunicorn(workers=1, threads=8)
    api = DocumentClient(node.url, api_token(queue, "doc", "write"))
    status, made = api.call(
        "submitJobs", body={"jobdata": {"taskPath": "/t"}, "tags": "c", "jobname": "walk"}
    )
    assert status == 201
    job_id = made["id"]
    assert api.call("getJob", id=job_id)[1]["state"] == "QUEUED"
    assert api.call("getJobPosition", id=job_id)[1]["position"] == 0
    assert api.call("holdJob", id=job_id, body={"priority": 4})[1]["state"] == "HELD"
    assert api.call("releaseJob", id=job_id)[1]["state"] == "QUEUED"
    listed = api.call("listJobs", query={"state": "QUEUED", "name": "walk", "limit": 10})[1]
    assert [j["id"] for j in listed["jobs"]] == [job_id]
    assert api.call("getQueue")[1]["waiting"] == 1

    token = queue.server_token("t-c")
    assert queue.post("/poll.php", server_token=token, nbtasks="0")["jobid"] == job_id
    assert api.call("listServers")[1]["servers"][0]["busy"] is True
    queue.post("/sendresults.php", server_token=token, jobid=str(job_id), resultdata=RESULT)
    assert api.call("getJob", id=job_id)[1]["state"] == "FINISHED"
    assert api.call("jobArtifact", id=job_id, name="result")[1]["jobdata"] == {"score": 1}
    assert api.call("cancelJob", id=job_id)[0] == 409
    dry = api.call(
        "actOnJobs", body={"action": "requeue", "filter": {"name": "walk"}, "dry_run": True}
    )[1]
    assert (dry["matched"], dry["changed"]) == (1, 0)
    assert api.call("getJob", id=10**9)[0] == 404
