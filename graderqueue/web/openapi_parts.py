"""Pieces the OpenAPI modules share: schema helpers, common answers."""

from __future__ import annotations

from typing import Any

STATES = ["QUEUED", "HELD", "STARTED", "FINISHED", "FAILED", "CANCELLED"]
PROBLEM = {"$ref": "#/components/schemas/Problem"}
TIME = {"type": "string", "format": "date-time"}
TIME_OR_NULL = {"type": ["string", "null"], "format": "date-time"}
TEXT_OR_NULL = {"type": ["string", "null"]}
PRIORITY = {"type": "integer", "minimum": 0, "maximum": 2147483647}


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
