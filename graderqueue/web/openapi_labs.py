"""The OpenAPI document's part for files: the labs endpoints and a job's files.

``/labs/...`` paths, and the ``files``, ``output_file`` and ``max_kb`` of a
new job, with the ``output`` artifact, added to the job schemas by
:func:`extend` (the job module stays about jobs).
"""

from __future__ import annotations

from typing import Any

from graderqueue.files import job_files, names
from graderqueue.web.openapi_parts import AUTH_ERRORS, WRITE_ERRORS, json_answer, object_schema
from graderqueue.web.openapi_parts import problem as _problem

_SEGMENT = "[A-Za-z0-9_-][A-Za-z0-9_.-]"
LAB = {"type": "string", "pattern": f"^{_SEGMENT}{{0,{names.LAB_MAX - 1}}}$"}
NAME = {"type": "string", "pattern": f"^{_SEGMENT}{{0,{names.NAME_MAX - 1}}}$"}
RELATIVE_PATH = {
    "type": "string",
    "maxLength": names.PATH_MAX,
    "pattern": f"^{_SEGMENT}*(/{_SEGMENT}*)*$",
    "description": "relative to the job's working folder: parts of letters, digits "
    "and ._-, none starting with a dot",
}
_LAB_PARAM = {"name": "lab", "in": "path", "required": True, "schema": LAB}
_NAME_PARAM = {"name": "name", "in": "path", "required": True, "schema": NAME}
_STORED = object_schema(
    {
        "lab": {"type": "string"},
        "name": {"type": "string"},
        "md5": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
        "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
        "size": {"type": "integer", "minimum": 0},
    }
)
_PLATFORM_ONLY = "Labs belong to platforms: an operator's API token is refused (403)."

PATHS: dict[str, Any] = {
    "/labs/{lab}": {
        "get": {
            "operationId": "getLab",
            "summary": "A lab's files and their MD5 (a lab with no files is empty)",
            "description": _PLATFORM_ONLY,
            "parameters": [_LAB_PARAM],
            "responses": {
                "200": json_answer(
                    "The lab's files",
                    object_schema(
                        {
                            "files": {
                                "type": "object",
                                "additionalProperties": {
                                    "type": "string",
                                    "pattern": "^[0-9a-f]{32}$",
                                },
                            }
                        }
                    ),
                ),
                "400": _problem("Invalid lab name"),
                "403": _problem("Not a platform"),
                **AUTH_ERRORS,
            },
        }
    },
    "/labs/{lab}/files/{name}": {
        "put": {
            "operationId": "putLabFile",
            "summary": "Upload a file to a lab (the body is its bytes); replaces the name's file",
            "description": _PLATFORM_ONLY + " Jobs already submitted keep the content "
            "they were submitted with. At most file_max_bytes per file and "
            "file_platform_max_bytes per platform (413).",
            "parameters": [_LAB_PARAM, _NAME_PARAM],
            "requestBody": {
                "required": True,
                "content": {
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
                },
            },
            "responses": {
                "201": json_answer("Stored under a new name", _STORED),
                "200": json_answer("The name's file replaced", _STORED),
                "400": _problem("Invalid lab or file name, or not application/octet-stream"),
                "413": _problem("The file, or the platform's files together, too large"),
                **WRITE_ERRORS,
            },
        },
        "delete": {
            "operationId": "deleteLabFile",
            "summary": "Remove a file from a lab (submitted jobs keep theirs)",
            "description": _PLATFORM_ONLY,
            "parameters": [_LAB_PARAM, _NAME_PARAM],
            "responses": {
                "204": {"description": "Removed"},
                "400": _problem("Invalid lab or file name"),
                "404": _problem("No such file in the lab"),
                **WRITE_ERRORS,
            },
        },
    },
}

JOB_FIELDS: dict[str, Any] = {
    "files": {
        "type": "array",
        "maxItems": job_files.FILES_MAX,
        "description": "lab files the grading server puts in the job's working folder "
        "before the program runs (a platform's labs: bound to their content now)",
        "items": object_schema({"lab": LAB, "name": NAME, "dest": RELATIVE_PATH}),
    },
    "output_file": {
        **RELATIVE_PATH,
        "description": "a file the program writes; sent back as the artifact `output`",
    },
    "max_kb": {
        "type": "integer",
        "minimum": 1,
        "maximum": job_files.MAX_KB_MAX,
        "description": "output_file is cut to this many KiB (needs output_file)",
    },
}


def extend(doc: dict[str, Any]) -> None:
    """Add the labs paths, the job fields and the ``output`` artifact to ``doc``."""
    doc["paths"].update(PATHS)
    schemas = doc["components"]["schemas"]
    schemas["NewJob"]["properties"].update(JOB_FIELDS)
    artifact_names = schemas["Job"]["properties"]["artifacts"]["items"]["properties"]["name"]
    artifact_names["enum"] = [*artifact_names["enum"], "output"]
