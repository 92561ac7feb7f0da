"""Turn a platform's ``sendjob`` / ``sendsolution`` request into a job to queue.

All validation of request fields happens here, before the database is
touched, so a bad request changes nothing.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from dataclasses import dataclass
from typing import Any

from graderqueue.config import Settings
from graderqueue.errors import BadRequest
from graderqueue.protocol.numbers import parse_int, php_intval, spells_int
from graderqueue.protocol.taskpaths import check_job_paths, check_revision
from graderqueue.queue.routing import parse_tags

INT_MAX = 2**31 - 1

# Names, jobusertaskids and other text fields, as the original's columns.
NAME_MAX = 255


def dedup_key_for(request: dict[str, Any]) -> str:
    """A stable id for a request without ``jobusertaskid``: identical requests dedup."""
    canonical = json.dumps(request, sort_keys=True, separators=(",", ":"), default=str)
    return "auto-" + hashlib.sha256(canonical.encode()).hexdigest()[:40]


@dataclass(frozen=True)
class Upload:
    """A file sent as ``solfile`` (multipart)."""

    filename: str
    content: str


@dataclass(frozen=True)
class Submission:
    name: str
    job: dict[str, Any]
    priority: int
    tag_names: list[str]
    jobusertaskid: str
    taskrevision: str
    timeout_sec: int


def _text(request: dict[str, Any], key: str, default: str = "", limit: int = NAME_MAX) -> str:
    value = request.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise BadRequest(f"Invalid {key}.")
    text = str(value)
    if len(text) > limit:
        raise BadRequest(f"Invalid {key}: longer than {limit} characters.")
    return text


def _int(
    request: dict[str, Any], key: str, default: int, minimum: int, *, lenient: bool = False
) -> int:
    """An integer field; values below ``minimum`` become ``minimum`` (as the original).

    ``lenient``: the platform asked for PHP's ``intval()`` reading
    (``numbers.php_intval``) instead of a refusal of anything but digits.
    """
    value = request.get(key)
    if value is None or value == "":
        return default
    if lenient:
        return max(minimum, php_intval(value, INT_MAX))
    if isinstance(value, bool):
        raise BadRequest(f"Invalid {key}.")
    if isinstance(value, str):
        text = value.strip()
        if not spells_int(text, signed=True):
            raise BadRequest(f"Invalid {key}: not an integer.")
        # int() of thousands of digits is slow, then refused anyway
        value = parse_int(text, signed=True, max_digits=12)
        if value is None:
            raise BadRequest(f"Invalid {key}: too large.")
    if not isinstance(value, int):
        raise BadRequest(f"Invalid {key}: not an integer.")
    if value > INT_MAX:
        raise BadRequest(f"Invalid {key}: too large.")
    return max(minimum, value)


def _job_object(raw: Any) -> dict[str, Any]:
    if isinstance(raw, dict):
        return raw
    if not isinstance(raw, str):
        raise BadRequest("Error while decoding job JSON: jobdata must be a JSON string.")
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise BadRequest(f"Error while decoding job JSON: {exc.args[0]}") from exc
    except RecursionError as exc:
        raise BadRequest("Error while decoding job JSON: nested too deeply.") from exc
    if not isinstance(data, dict):
        raise BadRequest("Error while decoding job JSON: not a JSON object.")
    return data


def build_solution_job(
    request: dict[str, Any], settings: Settings, upload: Upload | None, *, lenient: bool = False
) -> tuple[dict[str, Any], str]:
    """The taskgrader job of a ``sendsolution`` request, and its solution file name."""
    for key in ("taskpath", "memlimit", "timelimit", "lang"):
        if request.get(key) in (None, ""):
            raise BadRequest(f"{key} missing from request.")
    taskpath = _text(request, "taskpath", limit=4096)
    lang = _text(request, "lang", limit=64)
    memlimit = _int(request, "memlimit", 4, 4, lenient=lenient)
    timelimit = _int(request, "timelimit", 1, 1, lenient=lenient)
    solpath = _text(request, "solpath", limit=4096)
    solcontent = request.get("solcontent") or ""
    if not isinstance(solcontent, str):
        raise BadRequest("Invalid solcontent.")

    params: dict[str, Any] = {}
    if solpath:
        params["solutionFilename"] = posixpath.basename(solpath)
        params["solutionPath"] = solpath
    elif solcontent:
        ext = settings.lang_extensions.get(lang, settings.lang_extensions.get("[default]", ".sh"))
        params["solutionFilename"] = "main" + ext
        params["solutionContent"] = solcontent
    elif upload is not None:
        params["solutionFilename"] = posixpath.basename(upload.filename) or "main"
        params["solutionContent"] = upload.content
    else:
        raise BadRequest("Solution missing from request.")

    limits = {
        "timeLimitMs": timelimit,
        "memoryLimitKb": memlimit,
        "useCache": True,
        "stdoutTruncateKb": -1,
        "stderrTruncateKb": -1,
        "getFiles": [],
    }
    filename = params["solutionFilename"]
    params.update(
        solutionId=f"sol-{filename}",
        solutionExecId=f"exec-{filename}",
        solutionLanguage=lang,
        solutionDependencies=f"@defaultDependencies-{lang}",
        defaultSolutionCompParams=limits,
        defaultSolutionExecParams=dict(limits),
    )
    return {"taskPath": taskpath, "extraParams": params}, filename


def parse(
    request: dict[str, Any],
    settings: Settings,
    *,
    restrict_paths: str = "",
    upload: Upload | None = None,
    lenient_integers: bool = False,
) -> Submission:
    """Validate a sendjob/sendsolution request; raises :class:`BadRequest`.

    ``lenient_integers``: read priority, timeout and the limits as PHP's
    ``intval()`` did, for a platform that asked for it (docs/MIGRATING.md).
    """
    kind = request.get("request")
    if kind == "sendjob":
        if "jobdata" not in request:
            raise BadRequest("jobdata missing from request.")
        job = _job_object(request["jobdata"])
        default_name = "api-sendjob"
    elif kind == "sendsolution":
        job, filename = build_solution_job(request, settings, upload, lenient=lenient_integers)
        default_name = f"api-{filename}"
    else:
        raise BadRequest("No request made.")

    paths = [p.strip() for p in restrict_paths.split(",") if p.strip()]
    check_job_paths(job, paths)
    if paths:
        # A JSON list: the original's bare string was iterated char by char.
        job["restrictToPaths"] = paths

    name = _text(request, "jobname", default_name) or default_name
    jobusertaskid = _text(request, "jobusertaskid")
    if not jobusertaskid:
        # Freshness claims differ between two sends of the same request.
        basis = {k: v for k, v in request.items() if k not in ("jti", "iat", "exp", "nbf", "date")}
        if upload is not None:
            basis["solfile"] = [upload.filename, upload.content]
        jobusertaskid = dedup_key_for(basis)
    return Submission(
        name=name,
        job=job,
        priority=_int(request, "priority", 0, 0, lenient=lenient_integers),
        tag_names=parse_tags(request.get("tags")),
        jobusertaskid=jobusertaskid,
        taskrevision=check_revision(_text(request, "taskrevision")),
        # A lease longer than max_timeout_sec would keep a lost job for years:
        # clamped, as the original clamped low limits, rather than refused.
        timeout_sec=min(
            _int(request, "timeout", settings.default_timeout_sec, 1, lenient=lenient_integers),
            settings.max_timeout_sec,
        ),
    )
