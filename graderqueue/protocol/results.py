"""The result a platform receives: its payload, its size bound and its token."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

from graderqueue.config import Settings
from graderqueue.errors import BadRequest
from graderqueue.protocol import tokens
from graderqueue.protocol.keys import QueueKey, parse_public_key
from graderqueue.protocol.numbers import parse_int


def result_payload(job_name: str, resultdata: str, day: date) -> dict[str, Any]:
    """What the platform gets: the job's name and the grader's ``jobdata``."""
    try:
        result = json.loads(resultdata)
    except ValueError:
        result = {}
    jobdata = result.get("jobdata") if isinstance(result, dict) else None
    return {"sTaskName": job_name, "sResultData": jobdata, "date": day.strftime("%d-%m-%Y")}


def check_result_size(result: dict[str, Any], max_result_bytes: int) -> None:
    """Refuse (errorcode 2, nothing stored) a result larger than ``max_result_bytes``.

    Measured as the result token carries it, so that every result the queue
    takes is one the platform client opens.
    """
    size = tokens.result_json_bytes(result.get("jobdata"))
    if size > max_result_bytes:
        raise BadRequest(
            f"Result too large: its jobdata is {size} bytes of JSON, "
            f"over the limit of {max_result_bytes} bytes."
        )


def result_token(
    payload: dict[str, Any],
    queue_key: QueueKey,
    platform_name: str,
    platform_key_pem: str,
    zip_max_bytes: int | None = Settings.result_zip_max_bytes,
) -> str:
    """Signed by the queue (kid = queue key name), encrypted to the platform (kid = its name).

    Compressed only when the JWS is at most ``zip_max_bytes``
    (``result_zip_max_bytes``): JOSE libraries refuse to inflate much more
    by default, and a token without ``zip`` is valid JWE they all open.
    """
    return tokens.seal(
        payload,
        queue_key.private,
        queue_key.name,
        parse_public_key(platform_key_pem),
        platform_name,
        zip_max_bytes=zip_max_bytes,
    )


def parse_result(raw: str | None) -> dict[str, Any]:
    """Validate ``resultdata`` from a grading server before touching the database."""
    if raw is None or raw == "":
        raise BadRequest("No resultdata received.")
    try:
        result = json.loads(raw)
    except ValueError as exc:
        raise BadRequest(f"Cannot decode resultdata: {exc.args[0]}") from exc
    except RecursionError as exc:
        raise BadRequest("Cannot decode resultdata: nested too deeply.") from exc
    if not isinstance(result, dict):
        raise BadRequest("Cannot decode resultdata: not a JSON object.")
    return result


def result_errorcode(result: dict[str, Any]) -> int | None:
    code = result.get("errorcode")
    if isinstance(code, bool):
        return None
    if isinstance(code, int):
        return code
    if isinstance(code, str):
        return parse_int(code, signed=True, max_digits=12)
    return None
