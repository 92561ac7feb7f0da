"""The OpenAPI document's runs: ``/runs`` and ``/runs/{id}/...`` (docs/API.md "Runs")."""

from __future__ import annotations

from typing import Any

from graderqueue.web.openapi_parts import (
    AUTH_ERRORS,
    PRIORITY,
    STATES,
    TIME,
    TIME_OR_NULL,
    WRITE_ERRORS,
    json_answer,
    object_schema,
    problem,
    ref,
)

RUN_STATES = [
    "READY",
    "PRE_PROCESSING_STAGE",
    "STUDENTS_STAGE",
    "POST_PROCESSING_STAGE",
    "FINISHED",
    "FAILED",
    "CANCELLED",
]
RUN_ID = {
    "name": "id",
    "in": "path",
    "required": True,
    "schema": {"type": "integer", "minimum": 1, "maximum": 9223372036854775807},
}
_VARIABLES = {
    "type": "object",
    "additionalProperties": {"type": ["string", "number"]},
}
_JOB_STATES = {"type": "object", "additionalProperties": {"enum": STATES}}

SCHEMAS: dict[str, Any] = {
    "NewRun": {
        "type": "object",
        "required": ["roster", "job"],
        "additionalProperties": False,
        "description": (
            "Job specs as POST /jobs takes them; ${VAR} in their strings comes from the "
            "roster entry, then env ($${ is a literal ${)"
        ),
        "properties": {
            "env": _VARIABLES,
            "roster": {"type": "array", "minItems": 1, "items": _VARIABLES},
            "pre_job": ref("NewJob"),
            "job": ref("NewJob"),
            "post_job": ref("NewJob"),
            "priority": {**PRIORITY, "description": "each job's, unless its spec says"},
            "tags": {
                "oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}],
                "description": "each job's, unless its spec says",
            },
            "callback_url": {
                "type": "string",
                "maxLength": 1000,
                "description": "the run's end is posted there (a host the platform allows)",
            },
        },
        "example": {
            "env": {"TASK": "$ROOT_PATH/tasks/add"},
            "roster": [{"USER": "ada"}, {"USER": "alan"}],
            "job": {"jobdata": {"taskPath": "${TASK}", "user": "${USER}"}, "tags": "c"},
        },
    },
    "Run": object_schema(
        {
            "id": {"type": "integer"},
            "state": {"enum": RUN_STATES},
            "pre_processing_job": _JOB_STATES,
            "post_processing_job": _JOB_STATES,
            "student_jobs": _JOB_STATES,
            "counts": {
                "type": "object",
                "required": ["roster", "created", "ended", *STATES],
                "additionalProperties": False,
                "properties": {
                    k: {"type": "integer", "minimum": 0}
                    for k in ["roster", "created", "ended", *STATES]
                },
            },
            "created_at": TIME,
            "ended_at": TIME_OR_NULL,
        }
    ),
}

_RUN_ERRORS = {"404": problem("No such run (or another platform's)")}


def _control(action: str, summary: str) -> dict[str, Any]:
    return {
        "post": {
            "operationId": f"{action}Run",
            "summary": summary,
            "parameters": [RUN_ID],
            "responses": {
                "200": json_answer(
                    "Done: the run's state and counts",
                    object_schema(
                        {
                            "id": {"type": "integer"},
                            "state": {"enum": RUN_STATES},
                            "counts": SCHEMAS["Run"]["properties"]["counts"],
                        }
                    ),
                ),
                "409": problem("The run has ended"),
                **_RUN_ERRORS,
                **WRITE_ERRORS,
            },
        }
    }


_EVENT = object_schema(
    {
        "event": {"const": "status_update"},
        "id": {"type": "string", "description": "STATE:ended, for Last-Event-ID"},
        "data": {
            "type": "string",
            "contentMediaType": "application/json",
            "contentSchema": {
                "oneOf": [
                    object_schema({"type": {"const": "state"}, "data": {"enum": RUN_STATES}}),
                    object_schema(
                        {"type": {"const": "progress"}, "data": {"type": "integer", "minimum": 0}}
                    ),
                ]
            },
        },
    },
    required=["event", "data"],
)

PATHS: dict[str, Any] = {
    "/runs": {
        "post": {
            "operationId": "submitRun",
            "summary": "A run: a pre job, one job per roster entry, a post job; starts at once",
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": ref("NewRun")}},
            },
            "responses": {
                "201": json_answer(
                    "Started",
                    object_schema({"id": {"type": "integer"}, "state": {"enum": RUN_STATES}}),
                ),
                "400": problem("Invalid run (names the job at fault), unknown ${VAR}"),
                "413": problem("Request too large"),
                **WRITE_ERRORS,
            },
        }
    },
    "/runs/{id}": {
        "get": {
            "operationId": "getRun",
            "summary": "The run's state, each stage's jobs with their states, and counts",
            "parameters": [RUN_ID],
            "responses": {
                "200": json_answer("The run", ref("Run")),
                **_RUN_ERRORS,
                **AUTH_ERRORS,
            },
        }
    },
    "/runs/{id}/events": {
        "get": {
            "operationId": "runEvents",
            "summary": "The run's state and progress as Server-Sent Events",
            "description": (
                '`event: status_update`, data `{"type": "state", "data": STATE}` or '
                '`{"type": "progress", "data": N}` (roster jobs ended); ends when the run '
                "ends, or after events_max_sec (resume with Last-Event-ID)."
            ),
            "parameters": [
                RUN_ID,
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
                    "content": {"text/event-stream": {"schema": _EVENT}},
                },
                **_RUN_ERRORS,
                **AUTH_ERRORS,
            },
        }
    },
    "/runs/{id}/cancel": _control("cancel", "Cancel the run and every job of it not ended"),
    "/runs/{id}/hold": _control("hold", "Hold every QUEUED job of the run"),
    "/runs/{id}/release": _control("release", "Release every HELD job of the run"),
}
