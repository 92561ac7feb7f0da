"""gunicorn's lines through graderqueue.access_log.RedactingLogger: the app's shape and ids.

Real gunicorn parts: its Config, a request parsed from a socket, its
Response, and the logger writing to files.
"""

from __future__ import annotations

import datetime
import json
import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from gunicorn.config import Config
from gunicorn.http import wsgi
from gunicorn.http.parser import RequestParser

from graderqueue import logs
from graderqueue.access_log import RedactingLogger

CLIENT = ("127.0.0.1", 5555)


@dataclass
class Gunicorn:
    logger: RedactingLogger
    access_log: Path
    error_log: Path
    log_format: str


@pytest.fixture
def gunicorn_logger(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> Iterator[Gunicorn]:
    monkeypatch.delenv("GRADERQUEUE_CONFIG", raising=False)
    monkeypatch.setenv("GRADERQUEUE_LOG_FORMAT", request.param)
    cfg = Config()
    cfg.set("accesslog", str(tmp_path / "access.log"))
    cfg.set("errorlog", str(tmp_path / "error.log"))
    cfg.set("access_log_format", '%(h)s "%(r)s" %(s)s')
    logger = RedactingLogger(cfg)
    yield Gunicorn(logger, tmp_path / "access.log", tmp_path / "error.log", request.param)
    for log in (logger.error_log, logger.access_log):
        for handler in [h for h in log.handlers if getattr(h, "_gunicorn", False)]:
            log.removeHandler(handler)
            handler.close()


def answered(request_line: str, headers: list[tuple[str, str]]) -> tuple[Any, Any, Any]:
    """A request parsed by gunicorn and its Response, started with these headers."""
    ours, theirs = socket.socketpair()
    with ours:
        ours.sendall(f"{request_line}\r\nHost: queue.test\r\n\r\n".encode())
        cfg = Config()
        req = next(RequestParser(cfg, theirs, CLIENT))
    resp, environ = wsgi.create(req, theirs, CLIENT, ("127.0.0.1", 8000), cfg)
    resp.start_response("200 OK", headers)
    theirs.close()
    return resp, req, environ


def last_line(path: Path, log_format: str) -> dict[str, Any]:
    line = path.read_text().splitlines()[-1]
    if log_format == "json":
        return json.loads(line)  # type: ignore[no-any-return]
    found = re.fullmatch(
        r"(?P<time>\S+Z) (?P<level>\w+) \[(?P<pid>\d+)\] (?P<logger>\S+): "
        r"(?P<message>.*) request_id=(?P<request_id>\S+)",
        line,
    )
    assert found, line
    return found.groupdict()


@pytest.mark.parametrize("gunicorn_logger", ["text", "json"], indirect=True)
def test_an_access_line_carries_the_id_of_the_answer_after_the_request_is_over(
    gunicorn_logger: Gunicorn,
) -> None:
    logger, access_log, log_format = (
        gunicorn_logger.logger,
        gunicorn_logger.access_log,
        gunicorn_logger.log_format,
    )
    resp, req, environ = answered(
        "GET /poll.php?server_token=S3cr3t-9f HTTP/1.1", [("X-Request-ID", "lms-77")]
    )
    # gunicorn logs some requests (HTTP/2 streams) once the app's body is
    # closed, when the request's own context is over: the id comes from the answer.
    with logs.request_id("some-other-unit"):
        logger.access(resp, req, environ, datetime.timedelta(milliseconds=1))
    entry = last_line(access_log, log_format)
    assert entry["request_id"] == "lms-77"
    assert entry["logger"] == "gunicorn.access" and entry["level"] == "INFO"
    assert entry["message"] == '127.0.0.1 "GET /poll.php?server_token=[redacted] HTTP/1.1" 200'
    assert "S3cr3t-9f" not in access_log.read_text()


@pytest.mark.parametrize("gunicorn_logger", ["text", "json"], indirect=True)
def test_gunicorns_own_lines_have_the_apps_shape(
    gunicorn_logger: Gunicorn,
) -> None:
    logger, error_log = gunicorn_logger.logger, gunicorn_logger.error_log
    log_format = gunicorn_logger.log_format
    with logs.request_id("unit-5"):
        logger.info("Booting worker with pid: %s", 4242)
    entry = last_line(error_log, log_format)
    assert entry["message"] == "Booting worker with pid: 4242"
    assert entry["request_id"] == "unit-5"
    assert entry["level"] == "INFO" and entry["logger"] == "gunicorn.error"
    assert str(entry["pid"]).isdigit()


@pytest.mark.parametrize("gunicorn_logger", ["xml"], indirect=True)
def test_a_bad_setting_leaves_gunicorn_in_text_for_the_app_to_complain(
    gunicorn_logger: Gunicorn,
) -> None:
    gunicorn_logger.logger.warning("something")
    assert last_line(gunicorn_logger.error_log, "text")["message"] == "something"
