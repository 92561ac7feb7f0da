"""The log line formats and the request ids of graderqueue/logs.py."""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
from typing import Any

import pytest

from graderqueue import logs
from graderqueue.errors import ConfigError, Unavailable

TIME = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"
TEXT_LINE = re.compile(
    rf"^(?P<time>{TIME}) (?P<level>[A-Z]+) \[(?P<pid>\d+)\] (?P<logger>\S+): "
    r"(?P<message>.*) request_id=(?P<request_id>\S+)$"
)


def record(message: str = "hello world", *args: Any, exc: BaseException | None = None) -> Any:
    """A record as a logger makes it, with an exception as log.exception() attaches it."""
    exc_info = None
    if exc is not None:
        try:
            raise exc
        except BaseException:
            exc_info = sys.exc_info()
    return logging.getLogger("graderqueue.test").makeRecord(
        "graderqueue.test", logging.WARNING, __file__, 1, message, args, exc_info
    )


# -- formats -----------------------------------------------------------------


def test_a_text_line_has_time_level_pid_logger_message_and_request_id() -> None:
    with logs.request_id("lms-42"):
        line = logs.make_formatter("text").format(record())
    found = TEXT_LINE.match(line)
    assert found, line
    assert found["level"] == "WARNING"
    assert int(found["pid"]) > 0
    assert found["logger"] == "graderqueue.test"
    assert found["message"] == "hello world"
    assert found["request_id"] == "lms-42"


def test_a_json_line_is_one_object_with_every_field() -> None:
    with logs.request_id("lms-43"):
        line = logs.make_formatter("json").format(record("a\nb %s", "world"))
    assert "\n" not in line  # one record, one line, even with a newline in the message
    entry = json.loads(line)
    assert re.fullmatch(TIME, entry["time"]), entry
    assert entry["level"] == "WARNING"
    assert isinstance(entry["pid"], int) and entry["pid"] > 0
    assert entry["request_id"] == "lms-43"
    assert entry["logger"] == "graderqueue.test"
    assert entry["message"] == "a\nb world"
    assert "exception" not in entry


def test_a_traceback_stays_inside_the_json_line() -> None:
    line = logs.make_formatter("json").format(record(exc=ValueError("bad value")))
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["exception"].startswith("Traceback (most recent call last):")
    assert "ValueError: bad value" in entry["exception"]


@pytest.mark.parametrize("log_format", logs.LOG_FORMATS)
def test_without_tracebacks_the_error_is_said_on_the_line(log_format: str) -> None:
    formatter = logs.make_formatter(log_format, tracebacks=False)
    failed = record("step failed", exc=Unavailable())
    line = formatter.format(failed)
    assert "\n" not in line and "Traceback" not in line
    message = json.loads(line)["message"] if log_format == "json" else line
    assert "step failed (" in message
    assert failed.exc_info is not None  # the record itself keeps it for other handlers


def test_a_text_traceback_follows_the_line() -> None:
    lines = logs.make_formatter("text").format(record(exc=KeyError("k"))).splitlines()
    assert TEXT_LINE.match(lines[0]), lines
    assert lines[1] == "Traceback (most recent call last):"
    assert lines[-1] == "KeyError: 'k'"


def test_an_unknown_format_is_refused() -> None:
    with pytest.raises(ConfigError, match="log_format must be 'text' or 'json'"):
        logs.make_formatter("xml")
    with pytest.raises(ConfigError):
        logs.setup(log_format="JSON")


# -- request ids -------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "0123456789abcdef0123456789abcdef",  # nginx's $request_id
        "5f0c6b0e-8d7a-4d0b-9a7e-3c1f2b4a6d8e",
        "lms:poll/42#b=1",
        "x" * logs.REQUEST_ID_MAX,
    ],
)
def test_sane_request_ids_are_taken_as_they_are(value: str) -> None:
    assert logs.accept_request_id(value) == value


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "x" * (logs.REQUEST_ID_MAX + 1),
        "two words",
        "line\nbreak",
        "fake request_id=abc",
        "tab\there",
        "caf\u00e9",
        "nul\x00",
    ],
)
def test_other_request_ids_are_refused(value: str | None) -> None:
    assert logs.accept_request_id(value) is None


def test_new_ids_are_short_random_hex() -> None:
    ids = {logs.new_request_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(re.fullmatch(r"[0-9a-f]{16}", value) for value in ids)


def test_a_work_unit_has_its_own_id_each_call_and_restores_the_outer_one() -> None:
    @logs.work_unit
    def unit() -> str:
        return logs.current_request_id()

    with logs.request_id("outer"):
        first, second = unit(), unit()
        assert logs.current_request_id() == "outer"
    assert first != second and "outer" not in (first, second)


def test_a_thread_without_a_unit_has_an_id_of_its_own_for_its_life() -> None:
    seen: list[str] = []

    def note() -> None:
        seen.extend([logs.current_request_id(), logs.current_request_id()])

    threads = [threading.Thread(target=note) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seen[0] == seen[1] and seen[2] == seen[3]
    assert seen[0] != seen[2]


# -- the middleware ----------------------------------------------------------


class App:
    """A WSGI app that logs the id it runs under, while answering and while streaming."""

    def __init__(self, extra_headers: list[tuple[str, str]] | None = None) -> None:
        self.seen: list[str] = []
        self.extra_headers = extra_headers or []

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        self.seen.append(logs.current_request_id())
        start_response("200 OK", [("Content-Type", "text/plain"), *self.extra_headers])

        def body() -> Any:
            self.seen.append(logs.current_request_id())
            yield b"ok"

        return body()


def call(app: Any, header: str | None) -> tuple[list[tuple[str, str]], list[bytes]]:
    environ = {} if header is None else {"HTTP_X_REQUEST_ID": header}
    started: list[tuple[str, str]] = []

    def start_response(status: str, headers: list[tuple[str, str]], *exc: Any) -> None:
        started.extend(headers)

    body = app(environ, start_response)
    try:
        chunks = list(body)
    finally:
        body.close()
    return started, chunks


def test_a_sane_incoming_id_is_used_for_the_request_and_echoed() -> None:
    inner = App()
    headers, body = call(logs.RequestIds(inner), "lms-7")
    assert body == [b"ok"]
    assert ("X-Request-ID", "lms-7") in headers
    assert inner.seen == ["lms-7", "lms-7"]  # the streamed body too
    assert logs.current_request_id() != "lms-7"  # over once the body is closed


@pytest.mark.parametrize("header", [None, "has space", "y" * 200])
def test_a_missing_or_odd_id_is_replaced_by_a_new_one(header: str | None) -> None:
    inner = App()
    headers, _ = call(logs.RequestIds(inner), header)
    given = [v for k, v in headers if k == "X-Request-ID"]
    assert len(given) == 1 and re.fullmatch(r"[0-9a-f]{16}", given[0]), headers
    assert inner.seen == [given[0], given[0]]


def test_the_answer_carries_one_id_only() -> None:
    inner = App(extra_headers=[("x-request-id", "set-by-the-view")])
    headers, _ = call(logs.RequestIds(inner), "lms-8")
    assert [(k, v) for k, v in headers if k.lower() == "x-request-id"] == [
        ("X-Request-ID", "lms-8")
    ]


def test_a_failing_app_leaves_no_id_behind() -> None:
    def broken(environ: dict[str, Any], start_response: Any) -> Any:
        raise RuntimeError("boom")

    before = logs.current_request_id()
    with pytest.raises(RuntimeError):
        call(logs.RequestIds(broken), "lms-9")
    assert logs.current_request_id() == before
