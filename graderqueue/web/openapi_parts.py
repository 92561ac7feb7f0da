"""Pieces the OpenAPI modules share: schema helpers, common answers."""

from __future__ import annotations

from typing import Any

STATES = ["QUEUED", "HELD", "STARTED", "FINISHED", "FAILED", "CANCELLED"]
PROBLEM = {"$ref": "#/components/schemas/Problem"}
TIME = {"type": "string", "format": "date-time"}
TIME_OR_NULL = {"type": ["string", "null"], "format": "date-time"}
TEXT_OR_NULL = {"type": ["string", "null"]}
PRIORITY = {"type": "integer", "minimum": 0, "maximum": 2147483647}


_ONE_STATE = "(" + "|".join(STATES) + ")"
_MOMENT = {
    "anyOf": [
        {"type": "string", "format": "date-time"},
        {"type": "string", "pattern": "^[0-9]{1,18}$", "description": "unix seconds"},
    ]
}
_NAME = {"type": "string", "maxLength": 255}
FILTER_KEYS: dict[str, dict[str, Any]] = {
    "state": {
        "type": "string",
        "pattern": f"^{_ONE_STATE}(,{_ONE_STATE})*$",
        "description": f"one or more of {', '.join(STATES)}, by commas",
    },
    "tag": _NAME,
    "type": {**_NAME, "description": "a server type that can run the job"},
    "name": _NAME,
    "jobusertaskid": _NAME,
    "since": {**_MOMENT, "description": "received at or after"},
    "until": {**_MOMENT, "description": "received before"},
    "platform": {**_NAME, "description": "a platform's name (a platform sees only its own)"},
}


def problem(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/problem+json": {"schema": PROBLEM}},
    }


def json_answer(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def object_schema(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {
        "type": "object",
        "required": list(properties) if required is None else required,
        "additionalProperties": False,
        "properties": properties,
    }


AUTH_ERRORS = {
    "401": problem("No valid credentials"),
    "503": problem("The database is unreachable or busy"),
}
WRITE_ERRORS = {**AUTH_ERRORS, "403": problem("A read-only API token cannot act")}


SSE_EVENT = object_schema(
    {
        "event": {"const": "status_update"},
        "id": {"type": "string", "description": "STATE:position, for Last-Event-ID"},
        "data": {
            "type": "string",
            "contentMediaType": "application/json",
            "contentSchema": {
                "oneOf": [
                    object_schema({"type": {"const": "state"}, "data": {"enum": STATES}}),
                    object_schema(
                        {"type": {"const": "position"}, "data": {"type": "integer", "minimum": 0}}
                    ),
                ]
            },
        },
    },
    required=["event", "data"],
)
