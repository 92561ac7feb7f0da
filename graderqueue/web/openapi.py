"""The OpenAPI 3.1 document of ``/api/v1``, served at ``/api/v1/openapi.json``.

Written by hand next to the views it describes; tests/integration/
test_api_v1_openapi.py checks that its paths and methods are exactly the
app's routes and that real answers validate against its schemas, so the two
cannot drift apart.
"""

from __future__ import annotations

import copy
from typing import Any

from graderqueue.identity.api_callers import API_TOKEN_MAX_LIFETIME_SEC
from graderqueue.web import openapi_jobs, openapi_labs, openapi_parts, openapi_runs

PROBLEM = {"$ref": "#/components/schemas/Problem"}
SECONDS = {"type": ["number", "null"], "minimum": 0}


_problem = openapi_parts.problem
_object = openapi_parts.object_schema

SERVER = _object(
    {
        "name": {"type": "string"},
        "type": {"type": "string"},
        "alive": {"type": "boolean", "description": "polled lately, or grading; never when lost"},
        "lost": {
            "type": "boolean",
            "description": "stopped checking in and cannot be reached (docs/ADMIN.md)",
        },
        "busy": {"type": "boolean", "description": "holds at least one job"},
        "drained": {"type": "boolean", "description": "gets no new job (`server drain`)"},
        "jobs_held": {"type": "integer", "minimum": 0},
        "max_jobs": {"type": "integer"},
        "jobs_done": {"type": "integer", "minimum": 0, "description": "in the history kept"},
        "last_poll": openapi_parts.TIME_OR_NULL,
    }
)


def _counted(key: str, with_age: bool) -> dict[str, Any]:
    properties: dict[str, Any] = {key: {"type": "string"}, "waiting": {"type": "integer"}}
    if with_age:
        properties["oldest_waiting_sec"] = SECONDS
    return {
        "type": "array",
        "items": {
            "type": "object",
            "required": list(properties),
            "properties": properties,
            "additionalProperties": False,
        },
    }


QUEUE_SUMMARY: dict[str, Any] = {
    "type": "object",
    "required": ["waiting", "oldest_waiting_sec", "by_type", "by_tag", "by_platform", "throughput"],
    "additionalProperties": False,
    "properties": {
        "waiting": {"type": "integer", "minimum": 0},
        "oldest_waiting_sec": SECONDS,
        "by_type": _counted("type", with_age=True),
        "by_tag": _counted("tag", with_age=False),
        "by_platform": _counted("platform", with_age=True),
        "throughput": {
            "type": "object",
            "required": ["window_sec", "finished", "per_minute"],
            "additionalProperties": False,
            "properties": {
                "window_sec": {"type": "integer"},
                "finished": {"type": "integer", "minimum": 0},
                "per_minute": {"type": "number", "minimum": 0},
            },
        },
    },
}


PATHS: dict[str, Any] = {
    "/queue": {
        "get": {
            "operationId": "getQueue",
            "summary": "What waits per server type, tag and platform; recent throughput",
            "description": "A platform's figures count its own jobs only.",
            "responses": {
                "200": {
                    "description": "The queue's figures",
                    "content": {"application/json": {"schema": QUEUE_SUMMARY}},
                },
                "401": _problem("No valid credentials"),
                "503": _problem("The database is unreachable or busy"),
            },
        }
    },
    "/servers": {
        "get": {
            "operationId": "listServers",
            "summary": "The grading servers (a platform: those of the types it can use)",
            "responses": {
                "200": {
                    "description": "The servers",
                    "content": {
                        "application/json": {
                            "schema": _object({"servers": {"type": "array", "items": SERVER}})
                        }
                    },
                },
                **openapi_parts.AUTH_ERRORS,
            },
        }
    },
    "/openapi.json": {
        "get": {
            "operationId": "getOpenApi",
            "summary": "This document",
            "security": [],
            "responses": {
                "200": {
                    "description": "OpenAPI 3.1",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                }
            },
        }
    },
}

COMPONENTS: dict[str, Any] = {
    "securitySchemes": {
        "bearer": {
            "type": "http",
            "scheme": "bearer",
            "description": (
                "An operator's API token (`graderqueue api-token add`), or a "
                "platform's RS512 compact JWS: kid and iss = the platform's name, "
                "aud = the queue's key name, iat, exp at most "
                f"{API_TOKEN_MAX_LIFETIME_SEC} s after iat, a jti used once."
            ),
        }
    },
    "schemas": {
        "Problem": {
            "type": "object",
            "description": "RFC 9457 problem details",
            "required": ["type", "title", "status", "detail"],
            "properties": {
                "type": {"type": "string"},
                "title": {"type": "string"},
                "status": {"type": "integer"},
                "detail": {"type": "string"},
            },
        },
        **openapi_jobs.SCHEMAS,
        **openapi_runs.SCHEMAS,
    },
}


def document(page_max: int = openapi_jobs.PAGE_MAX) -> dict[str, Any]:
    """The whole document (a copy each call: callers may change theirs), with
    this queue's ``api_page_max``."""
    doc = copy.deepcopy(
        {
            "openapi": "3.1.0",
            "info": {
                "title": "graderqueue JSON API",
                "version": "1",
                "description": "Beside the PHP-compatible protocol; see docs/API.md.",
            },
            "servers": [{"url": "/api/v1"}],
            "security": [{"bearer": []}],
            "paths": {**PATHS, **openapi_jobs.PATHS, **openapi_runs.PATHS},
            "components": COMPONENTS,
        }
    )
    openapi_labs.extend(doc)
    for parameter in doc["paths"]["/jobs"]["get"]["parameters"]:
        if parameter["name"] == "limit":
            parameter["schema"]["maximum"] = page_max
    return doc
