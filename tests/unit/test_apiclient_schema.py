"""The client's typed answers have exactly the fields the queue's OpenAPI document
promises (web/openapi.py, itself checked against real answers): a field added to an
answer, or renamed, shows here."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from graderqueue import apiclient
from graderqueue.web import openapi

DOCUMENT = openapi.document()


def resolved(schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if ref is None:
        return schema
    return DOCUMENT["components"]["schemas"][ref.rsplit("/", 1)[-1]]


def answer(path: str, method: str = "get", status: str = "200") -> dict[str, Any]:
    response = DOCUMENT["paths"][path][method]["responses"][status]
    return resolved(response["content"]["application/json"]["schema"])


def job_field(name: str) -> dict[str, Any]:
    return resolved(answer("/jobs/{id}")["properties"][name]["items"])


CASES = {
    "Job": (apiclient.Job, lambda: resolved(answer("/jobs")["properties"]["jobs"]["items"])),
    "JobDetail": (apiclient.JobDetail, lambda: answer("/jobs/{id}")),
    "TimelineEntry": (apiclient.TimelineEntry, lambda: job_field("timeline")),
    "ArtifactInfo": (apiclient.ArtifactInfo, lambda: job_field("artifacts")),
    "JobPage": (apiclient.JobPage, lambda: answer("/jobs")),
    "Position": (apiclient.Position, lambda: answer("/jobs/{id}/position")),
    "JobState": (apiclient.JobState, lambda: answer("/jobs/{id}/hold", "post")),
    "ActionOutcome": (apiclient.ActionOutcome, lambda: answer("/jobs/actions", "post")),
    "QueueSummary": (apiclient.QueueSummary, lambda: answer("/queue")),
    "ServerStatus": (
        apiclient.ServerStatus,
        lambda: resolved(answer("/servers")["properties"]["servers"]["items"]),
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_answer_class_has_the_documented_fields(name):
    cls, schema_of = CASES[name]
    schema = schema_of()
    fields = dataclasses.fields(cls)
    assert {f.name for f in fields} == set(schema["properties"])
    needed = {f.name for f in fields if f.default is dataclasses.MISSING}
    assert needed <= set(schema.get("required", ())), "a field the queue may leave out"


def test_the_filters_are_the_documented_ones():
    listed = {p["name"] for p in DOCUMENT["paths"]["/jobs"]["get"].get("parameters", ())}
    assert set(apiclient.FILTERS) == listed - {"limit", "cursor"}
    documented = DOCUMENT["components"]["schemas"]["JobFilter"]["properties"]
    assert set(apiclient.FILTERS) == set(documented)
