"""The OpenAPI description of ``/api/v1/jobs`` and ``/api/v1/servers`` (see openapi.py)."""

from __future__ import annotations

from typing import Any

from graderqueue.web.openapi_parts import (
    AUTH_ERRORS,
    FILTER_KEYS,
    PRIORITY,
    SSE_EVENT,
    STATES,
    TEXT_OR_NULL,
    TIME,
    TIME_OR_NULL,
    WRITE_ERRORS,
    json_answer,
    object_schema,
    problem,
    ref,
)

ACTIONS = ["cancel", "hold", "release", "requeue"]
# The default api_page_max; document() puts the queue's own setting in its copy.
PAGE_MAX = 200
JOB_ID = {
    "name": "id",
    "in": "path",
    "required": True,
    "description": "The job's id",
    "schema": {"type": "integer", "minimum": 0},
}

_SUMMARY_PROPERTIES: dict[str, Any] = {
    "id": {"type": "integer"},
    "state": {"enum": STATES},
    "name": {"type": "string"},
    "jobusertaskid": {"type": "string"},
    "platform": {**TEXT_OR_NULL, "description": "null for jobs not sent by a platform"},
    "received_via": {
        **TEXT_OR_NULL,
        "description": "how a job without platform came: interface, api:<token>",
    },
    "tags": {"type": "array", "items": {"type": "string"}},
    "types": {"type": "array", "items": {"type": "string"}, "description": "server types"},
    "priority": {"type": "integer"},
    "timeout": {"type": "integer", "description": "seconds a server may grade it"},
    "failures": {"type": "integer", "minimum": 0},
    "received_at": TIME,
    "started_at": TIME_OR_NULL,
    "finished_at": {**TIME_OR_NULL, "description": "finished, failed for good, or cancelled"},
    "server": {**TEXT_OR_NULL, "description": "the server grading it, or that graded it"},
}
_TIMELINE_ENTRY = object_schema(
    {
        "at": TIME,
        "event": {
            "enum": [
                "received",
                "handed_out",
                "failed",
                "timeout",
                "gave_up",
                "held",
                "released",
                "requeued",
                "cancelled",
                "finished",
                "delivery_attempt",
            ]
        },
        "server": TEXT_OR_NULL,
        "detail": {"type": "string"},
    },
    required=["at", "event"],
)
_ARTIFACT = object_schema(
    {
        "name": {"enum": ["result", "stdout", "stderr"]},
        "size": {"type": "integer", "minimum": 0, "description": "bytes the server sent"},
        "truncated": {"type": "boolean"},
    }
)
_NEW_JOB = {
    "type": "object",
    "required": ["jobdata"],
    "additionalProperties": False,
    "description": "sendjob's fields, with the protocol's routing, clamping and dedup",
    "properties": {
        "jobdata": {"type": "object", "description": "the job for the grading server"},
        "jobname": {"type": "string", "maxLength": 255},
        "tags": {
            "oneOf": [
                {"type": "string", "description": "comma-separated"},
                {"type": "array", "items": {"type": "string"}},
            ]
        },
        "priority": {**PRIORITY, "description": "higher first"},
        "jobusertaskid": {
            "type": "string",
            "maxLength": 255,
            "description": "a live job of yours with the same one is updated, not duplicated",
        },
        "taskrevision": {
            "type": "string",
            "pattern": "^$|^[A-Za-z0-9_][A-Za-z0-9_.~^/@+-]{0,199}$",
        },
        "timeout": {
            "type": "integer",
            "minimum": 1,
            "maximum": 2147483647,
            "description": "seconds a server may grade it; above max_timeout_sec, clamped",
        },
        "callback_url": {
            "type": "string",
            "maxLength": 1000,
            "description": "its result is also posted there (a host the platform allows)",
        },
    },
    "example": {"jobdata": {"taskPath": "$ROOT_PATH/task"}, "tags": "c", "priority": 1},
}
SCHEMAS: dict[str, Any] = {
    "JobSummary": object_schema(_SUMMARY_PROPERTIES),
    "Job": object_schema(
        {
            **_SUMMARY_PROPERTIES,
            "taskrevision": {"type": "string"},
            "jobdata": {"type": ["object", "string"]},
            "result": {"type": ["object", "null"], "description": "the grading server's result"},
            "timeline": {"type": "array", "items": _TIMELINE_ENTRY},
            "artifacts": {"type": "array", "items": _ARTIFACT},
        }
    ),
    "NewJob": _NEW_JOB,
    "JobFilter": {
        "type": "object",
        "additionalProperties": False,
        "properties": FILTER_KEYS,
    },
    "JobState": object_schema({"id": {"type": "integer"}, "state": {"enum": STATES}}),
}

_SUBMIT = {
    "operationId": "submitJobs",
    "summary": "Queue one job, or a batch (all or nothing)",
    "parameters": [
        {
            "name": "Idempotency-Key",
            "in": "header",
            "required": False,
            "description": "a retry with the same key and body answers the first answer "
            "again (Idempotent-Replayed: true); kept at least 24 hours",
            "schema": {"type": "string", "minLength": 1, "maxLength": 255},
        }
    ],
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "oneOf": [
                        ref("NewJob"),
                        {"type": "array", "minItems": 1, "items": ref("NewJob")},
                    ]
                }
            }
        },
    },
    "responses": {
        "201": json_answer(
            "Queued (or, with dedup, the live job with the same jobusertaskid updated)",
            {
                "oneOf": [
                    ref("JobState"),
                    object_schema({"ids": {"type": "array", "items": {"type": "integer"}}}),
                ]
            },
        ),
        "400": problem("Invalid job (a batch names the job at fault)"),
        "413": problem("Request too large"),
        "422": problem("The Idempotency-Key was used with another body"),
        **WRITE_ERRORS,
    },
}

_LIST = {
    "operationId": "listJobs",
    "summary": "Jobs by filter, newest first, a page at a time",
    "description": "A platform sees its own jobs only.",
    "parameters": [
        *[
            {"name": key, "in": "query", "required": False, "schema": schema}
            for key, schema in FILTER_KEYS.items()
        ],
        {
            "name": "limit",
            "in": "query",
            "required": False,
            "schema": {"type": "integer", "minimum": 1, "maximum": PAGE_MAX, "default": 50},
        },
        {
            "name": "cursor",
            "in": "query",
            "required": False,
            "description": "next_cursor of the previous page",
            "schema": {"type": "string", "pattern": "^[1-9][0-9]{0,17}$"},
        },
    ],
    "responses": {
        "200": json_answer(
            "A page of jobs",
            object_schema(
                {
                    "jobs": {"type": "array", "items": ref("JobSummary")},
                    "next_cursor": TEXT_OR_NULL,
                }
            ),
        ),
        "400": problem("Invalid filter, limit or cursor"),
        **AUTH_ERRORS,
    },
}


def _job_get(operation_id: str, summary: str, ok: dict[str, Any]) -> dict[str, Any]:
    return {
        "get": {
            "operationId": operation_id,
            "summary": summary,
            "parameters": [JOB_ID],
            "responses": {
                "200": ok,
                "404": problem("No such job (or another platform's)"),
                **AUTH_ERRORS,
            },
        }
    }


def _control(action: str, description: str) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if action != "cancel":
        body = {
            "requestBody": {
                "required": False,
                "content": {
                    "application/json": {
                        "schema": object_schema({"priority": PRIORITY}, required=[])
                    }
                },
            }
        }
    return {
        "post": {
            "operationId": f"{action}Job",
            "summary": description,
            "parameters": [JOB_ID],
            **body,
            "responses": {
                "200": json_answer("Done: the job's new state", ref("JobState")),
                "400": problem("Invalid body"),
                "404": problem("No such job (or another platform's)"),
                "409": problem("The job's state does not allow this"),
                **WRITE_ERRORS,
            },
        }
    }


_EVENTS = {
    "get": {
        "operationId": "jobEvents",
        "summary": "The job's state and position as Server-Sent Events",
        "description": (
            '`event: status_update`, data `{"type": "state", "data": STATE}` or '
            '`{"type": "position", "data": N}`; ends after FINISHED, FAILED or CANCELLED, '
            "or after events_max_sec (resume with Last-Event-ID: only what changed since)."
        ),
        "parameters": [
            JOB_ID,
            {
                "name": "Last-Event-ID",
                "in": "header",
                "required": False,
                "schema": {"type": "string"},
            },
        ],
        "responses": {
            "200": {
                "description": "The event stream; each event:",
                "content": {"text/event-stream": {"schema": SSE_EVENT}},
            },
            "404": problem("No such job (or another platform's)"),
            **AUTH_ERRORS,
        },
    }
}

_ARTIFACT_GET = {
    "get": {
        "operationId": "jobArtifact",
        "summary": "What came back: result (JSON), stdout, stderr (text, capped)",
        "parameters": [
            JOB_ID,
            {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}},
        ],
        "responses": {
            "200": {
                "description": "The artifact",
                "content": {
                    "application/json": {"schema": {}},
                    "text/plain": {"schema": {"type": "string"}},
                },
            },
            "404": problem("No such job or artifact"),
            **AUTH_ERRORS,
        },
    }
}

_ACTIONS = {
    "post": {
        "operationId": "actOnJobs",
        "summary": "One action on every job a filter matches",
        "description": "Jobs whose state does not allow the action are left alone; "
        "dry_run only counts the jobs it would change.",
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": object_schema(
                        {
                            "action": {"enum": ACTIONS},
                            "filter": ref("JobFilter"),
                            "priority": PRIORITY,
                            "dry_run": {"type": "boolean", "default": False},
                        },
                        required=["action"],
                    )
                }
            },
        },
        "responses": {
            "200": json_answer(
                "What was (or would be) changed",
                object_schema(
                    {
                        "action": {"enum": ACTIONS},
                        "dry_run": {"type": "boolean"},
                        "matched": {"type": "integer", "minimum": 0},
                        "changed": {"type": "integer", "minimum": 0},
                    }
                ),
            ),
            "400": problem("Invalid action, filter or priority; or too many jobs"),
            **WRITE_ERRORS,
        },
    }
}

PATHS: dict[str, Any] = {
    "/jobs": {"post": _SUBMIT, "get": _LIST},
    "/jobs/{id}": _job_get(
        "getJob", "One job, with its timeline and artifacts", json_answer("The job", ref("Job"))
    ),
    "/jobs/{id}/position": _job_get(
        "getJobPosition",
        "How many jobs go before it, and an ETA from recent throughput",
        json_answer(
            "Its place (null unless QUEUED)",
            object_schema(
                {
                    "id": {"type": "integer"},
                    "state": {"enum": STATES},
                    "position": {"type": ["integer", "null"], "minimum": 0},
                    "eta_sec": {"type": ["number", "null"], "minimum": 0},
                    "throughput_per_minute": {"type": ["number", "null"], "minimum": 0},
                }
            ),
        ),
    ),
    "/jobs/{id}/events": _EVENTS,
    "/jobs/{id}/artifacts/{name}": _ARTIFACT_GET,
    "/jobs/{id}/cancel": _control("cancel", "Cancel: QUEUED, HELD, STARTED or FAILED -> CANCELLED"),
    "/jobs/{id}/hold": _control("hold", "Hold: QUEUED -> HELD (never handed out)"),
    "/jobs/{id}/release": _control("release", "Release: HELD -> QUEUED"),
    "/jobs/{id}/requeue": _control(
        "requeue", "Requeue from any state, failures forgotten (FINISHED: graded again)"
    ),
    "/jobs/actions": _ACTIONS,
}
