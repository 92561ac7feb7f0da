"""Protocol answers: always HTTP 200 with a JSON object carrying errorcode and errormsg.

The original clients treat any HTTP error status as a network fault and
retry forever, so even refusals are 200.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from flask import Flask, Response, current_app, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from graderqueue.errors import SUCCESS, BadRequest, InternalError, QueueError, TooLarge
from graderqueue.protocol.submissions import Upload
from graderqueue.runtime import Runtime

log = logging.getLogger("graderqueue.web")

PROTOCOL_PREFIXES = ("/api", "/poll", "/sendresults", "/test")


def success(message: str = "Success", **fields: Any) -> Response:
    """A request done: errorcode 0, ``message``, and the request's own fields."""
    return _answer(SUCCESS, message, **fields)


def refusal(exc: QueueError) -> Response:
    """A refused request: the error's own code and message (see errors.py)."""
    return _answer(exc.errorcode, exc.message)


def _answer(errorcode: int, errormsg: str, **fields: Any) -> Response:
    body = {"errorcode": errorcode, "errormsg": errormsg, **fields}
    return Response(json.dumps(body), status=200, mimetype="application/json")


def runtime() -> Runtime:
    return current_app.extensions["graderqueue"]


def form_fields() -> dict[str, str]:
    """The POST form (first value of each field); GET has none, as with the original."""
    return request.form.to_dict(flat=True) if request.method == "POST" else {}


def uploaded_solution(not_text: str) -> Upload | None:
    """The ``solfile`` of a sendsolution, if one was sent; ``not_text`` if it is not UTF-8."""
    file = request.files.get("solfile")
    if file is None or not file.filename:
        return None
    try:
        content = file.read().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(not_text) from exc
    return Upload(filename=file.filename, content=content)


def _discard_body(limit: int) -> None:
    """Read and drop the rest of a refused body, up to ``limit`` bytes.

    Closing a connection with unread bytes in it resets it, and a proxy still
    sending the body then answers 502 instead of passing on our refusal
    (nginx lets bodies a little over the app's limit through on purpose).
    Past ``limit`` the client is left to its reset.
    """
    length = request.content_length
    stream = request.environ.get("wsgi.input")
    if stream is None or length is None or length > limit:
        return
    remaining = length
    while remaining > 0:
        chunk = stream.read(min(remaining, 1 << 16))
        if not chunk:
            return
        remaining -= len(chunk)


API_PREFIX = "/api/v1/"


def is_protocol_path(path: str) -> bool:
    """The PHP-compatible protocol's paths (always HTTP 200), not the JSON API's."""
    return path.startswith(PROTOCOL_PREFIXES) and not is_api_path(path)


def is_api_path(path: str) -> bool:
    return path.startswith(API_PREFIX) or path == API_PREFIX.rstrip("/")


def problem(status: int, title: str, detail: str) -> Response:
    """A JSON API refusal: ``application/problem+json`` (RFC 9457) with a real status."""
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    response = Response(json.dumps(body), status=status, mimetype="application/problem+json")
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="graderqueue"'
    return response


def api_refusal(exc: QueueError) -> Response:
    """A QueueError for the JSON API: its class's HTTP status, its class's title."""
    title = (type(exc).__doc__ or "Refused.").strip().splitlines()[0]
    return problem(exc.http_status, title, exc.message)


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(QueueError)
    def _queue_error(exc: QueueError) -> Response:
        return api_refusal(exc) if is_api_path(request.path) else refusal(exc)

    @app.errorhandler(RequestEntityTooLarge)
    def _too_large(exc: RequestEntityTooLarge):  # type: ignore[no-untyped-def]
        _discard_body(2 * (app.config.get("MAX_CONTENT_LENGTH") or 0))
        if is_protocol_path(request.path):
            return refusal(TooLarge())
        if is_api_path(request.path):
            return api_refusal(TooLarge())
        return exc

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):  # type: ignore[no-untyped-def]
        if isinstance(exc, HTTPException):
            if is_api_path(request.path):
                answer = problem(exc.code or 500, exc.name, exc.description or exc.name)
                # 405 names the methods the path takes (Allow), as RFC 9110 asks.
                for name, value in exc.get_headers():
                    if name.lower() == "allow":
                        answer.headers[name] = value
                return answer
            return exc
        # Never a stack trace or a secret in an answer; the log has the details.
        log.exception("unexpected error on %s", request.path)
        if is_protocol_path(request.path):
            return refusal(InternalError())
        if is_api_path(request.path):
            return api_refusal(InternalError())
        return Response("Internal error.", status=500, mimetype="text/plain")
