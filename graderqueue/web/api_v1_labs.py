"""``/api/v1/labs``: a platform's labs, the files its jobs take (docs/API.md "Files (labs)").

Labs belong to platforms: an operator's API token has no platform, and the
API has no way for it to act as one, so it is refused here (403).
"""

from __future__ import annotations

from flask import Response, request

from graderqueue.errors import BadRequest, Forbidden
from graderqueue.files import blobs, labs, names
from graderqueue.identity.api_callers import ApiCaller
from graderqueue.web.answers import runtime
from graderqueue.web.api_v1 import bp, caller, ok, session_for, writer

UPLOAD_TYPES = ("", "application/octet-stream")


def _platform(who: ApiCaller) -> int:
    if who.platform_id is None:
        raise Forbidden("Labs belong to platforms: an operator's API token has none.")
    return who.platform_id


@bp.get("/labs/<lab>")
def lab_files(lab: str) -> Response:
    """``{"files": {name: md5}}``; a lab with no files is empty, not unknown."""
    who = caller()
    platform_id = _platform(who)
    names.check_lab(lab)
    with session_for(who) as session:
        return ok({"files": labs.listing(session, platform_id, lab)})


@bp.put("/labs/<lab>/files/<name>")
def put_file(lab: str, name: str) -> Response:
    """The raw body is the file: 201 when the name is new in the lab, 200 when replaced."""
    who = writer()
    platform_id = _platform(who)
    names.check_lab(lab)
    names.check_name(name)
    if (request.mimetype or "") not in UPLOAD_TYPES:
        raise BadRequest("The body is the file's bytes: Content-Type application/octet-stream.")
    settings = runtime().settings
    # Checked by werkzeug against the Content-Length before anything is read.
    request.max_content_length = settings.file_max_bytes
    upload = blobs.spool(request.stream, settings.file_max_bytes)
    try:
        created = labs.put(
            runtime().db,
            platform_id,
            lab,
            name,
            upload,
            platform_max_bytes=settings.file_platform_max_bytes,
            spend=who.spend,
        )
    finally:
        upload.close()
    body = {"lab": lab, "name": name, "md5": upload.md5, "sha256": upload.sha256}
    return ok({**body, "size": upload.size}, 201 if created else 200)


@bp.delete("/labs/<lab>/files/<name>")
def delete_file(lab: str, name: str) -> Response:
    """Remove a lab's file; jobs already submitted with it keep their copy."""
    who = writer()
    platform_id = _platform(who)
    names.check_lab(lab)
    names.check_name(name)
    with session_for(who, write=True) as session:
        labs.remove(session, platform_id, lab, name)
    return Response(status=204)
