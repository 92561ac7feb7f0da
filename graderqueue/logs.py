"""One logging set-up for the web app (under gunicorn), ``deliver``, ``cron`` and the CLI.

Every line carries the time (UTC, ISO 8601 with milliseconds), the level,
the pid, the logger name and a request id: several gunicorn workers and
delivery services write to the same journal, and a warning without a time,
a pid or an id cannot be matched with anything. Plain text by default, one
JSON object per line with ``log_format = "json"`` (docs/LOGS.md).

The request id lives in a :class:`~contextvars.ContextVar`, so every record
made while it is set carries it, whatever module logs. A web request takes
it from ``X-Request-ID`` (nginx's ``$request_id``) when the value is fit for
a log line, else gets a new one, and echoes it in the answer
(:class:`RequestIds`). Work outside a request takes one per unit of work
(:func:`work_unit`: a delivery attempt, a delivery turn, a cron run). A
thread without either has an id of its own for its life.

Only the ``graderqueue`` logger tree is configured, and only when nobody
else configured logging (gunicorn's ``--log-config``, a test harness);
gunicorn's own lines get the same formatter from
:class:`graderqueue.access_log.RedactingLogger`.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import json
import logging
import os
import secrets
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, ParamSpec, TypeVar

from sqlalchemy.exc import DBAPIError
from werkzeug.wsgi import ClosingIterator

from graderqueue.config import load_settings
from graderqueue.errors import ConfigError, QueueError

LOGGER = "graderqueue"
FORMAT = "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s request_id=%(request_id)s"
LOG_FORMATS = ("text", "json")
REQUEST_ID_HEADER = "X-Request-ID"
# Longer ids are replaced: a header is not a place to store text in our logs.
REQUEST_ID_MAX = 128

P = ParamSpec("P")
R = TypeVar("R")

_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "graderqueue_request_id", default=None
)
_thread_ids = threading.local()
# setup() is called again by commands that only change verbosity: the format
# chosen from the settings (by the app or the CLI group) stays.
_chosen = {"format": "text"}


# -- request ids -------------------------------------------------------------


def new_request_id() -> str:
    """A short random id (16 hex digits): unique enough to grep a journal for."""
    return secrets.token_hex(8)


def accept_request_id(value: str | None) -> str | None:
    """``value`` if fit for a log line, else None.

    Fit: 1 to :data:`REQUEST_ID_MAX` printable ASCII characters without a
    blank, so a line cannot be split, forged or made to hide its id, and the
    text format stays one token per field. nginx's ``$request_id`` (32 hex
    digits) and UUIDs pass.
    """
    if value and len(value) <= REQUEST_ID_MAX and all("!" <= ch <= "~" for ch in value):
        return value
    return None


def current_request_id() -> str:
    """The id of the request or unit of work under way; else this thread's own."""
    value = _request_id.get()
    if value is not None:
        return value
    # Renewed after a fork: gunicorn's workers must not share the master's id.
    if getattr(_thread_ids, "pid", None) != os.getpid():
        _thread_ids.pid, _thread_ids.id = os.getpid(), new_request_id()
    return str(_thread_ids.id)


@contextlib.contextmanager
def request_id(value: str | None = None) -> Iterator[str]:
    """Run the block under ``value`` (a new id when None) as its request id."""
    chosen = value or new_request_id()
    token = _request_id.set(chosen)
    try:
        yield chosen
    finally:
        _request_id.reset(token)


def work_unit(func: Callable[P, R]) -> Callable[P, R]:
    """Each call of ``func`` is a unit of work with an id of its own.

    For work that no request starts (a delivery attempt, a cron run): its
    lines can be grepped together, apart from the next call's.
    """

    @functools.wraps(func)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        with request_id():
            return func(*args, **kwargs)

    return run


class RequestIds:
    """WSGI middleware: each request runs under its id, echoed in ``X-Request-ID``.

    Set until the answer's body is closed, so lines written while a streamed
    body is sent (event streams) still carry it.
    """

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        chosen = accept_request_id(environ.get("HTTP_X_REQUEST_ID")) or new_request_id()
        token = _request_id.set(chosen)

        def start(status: str, headers: list[tuple[str, str]], *exc_info: Any) -> Any:
            headers = [(k, v) for k, v in headers if k.lower() != REQUEST_ID_HEADER.lower()]
            headers.append((REQUEST_ID_HEADER, chosen))
            return start_response(status, headers, *exc_info)

        try:
            body = self.app(environ, start)
        except BaseException:
            _request_id.reset(token)
            raise
        return ClosingIterator(body, functools.partial(_end_request, token))


def _end_request(token: contextvars.Token[str | None]) -> None:
    try:
        _request_id.reset(token)
    except ValueError:  # closed from another context: at least forget the id here
        _request_id.set(None)


# -- formatters --------------------------------------------------------------


class Formatter(logging.Formatter):
    """Text lines: ``TIME LEVEL [PID] LOGGER: MESSAGE request_id=ID``, then any traceback.

    UTC ISO times; with ``tracebacks=False`` an exception is said on the
    message's line (:func:`describe_error`), not as a traceback.
    """

    converter = time.gmtime
    default_time_format = "%Y-%m-%dT%H:%M:%S"
    default_msec_format = "%s.%03dZ"

    def __init__(self, *, tracebacks: bool = True) -> None:
        super().__init__(FORMAT)
        self.tracebacks = tracebacks

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        """The record with its request id, and its exception folded in if asked."""
        if not getattr(record, "request_id", None):
            # Formatting runs in the thread that logs (stream handlers are
            # synchronous), so the context is the record's.
            record.request_id = current_request_id()
        if record.exc_info and record.exc_info[1] is not None and not self.tracebacks:
            # A copy: other handlers of the same record may want the traceback.
            record = logging.makeLogRecord(record.__dict__)
            record.msg = f"{record.getMessage()} ({describe_error(record.exc_info[1])})"  # type: ignore[index]
            record.args = None
            record.exc_info = None
            record.exc_text = None
        return record

    def format(self, record: logging.LogRecord) -> str:
        return super().format(self.prepare(record))


class JsonFormatter(Formatter):
    """One JSON object per line: time, level, pid, request_id, logger, message[, exception].

    A traceback is one string (``exception``), so a record stays one line.
    """

    def format(self, record: logging.LogRecord) -> str:
        record = self.prepare(record)
        entry: dict[str, Any] = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "pid": record.process,
            "request_id": record.request_id,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:  # already redacted, for gunicorn's records
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry)


def make_formatter(log_format: str, *, tracebacks: bool = True) -> Formatter:
    """The formatter for the ``log_format`` setting ("text" or "json")."""
    if log_format not in LOG_FORMATS:
        raise ConfigError(f"log_format must be 'text' or 'json', not {log_format!r}")
    kind = JsonFormatter if log_format == "json" else Formatter
    return kind(tracebacks=tracebacks)


def format_from_settings() -> str:
    """The ``log_format`` setting, for gunicorn's master, which loads no app before forking.

    "text" when the settings do not load or name no format: the app says
    why when it starts, in that format.
    """
    try:
        chosen = load_settings().log_format
    except ConfigError:
        return "text"
    return chosen if chosen in LOG_FORMATS else "text"


def describe_error(exc: BaseException) -> str:
    """One line for an operator: the driver's error for database faults, else the message.

    The queue wraps a lost database in :class:`~graderqueue.errors.Unavailable`
    ("temporarily unavailable"), which says nothing about why; the driver's
    error underneath does ("Can't connect to MySQL server ... refused").
    """
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, DBAPIError):
            orig = seen.orig if seen.orig is not None else seen
            return f"database error: {type(orig).__name__}: {orig}"
        seen = seen.__cause__ or seen.__context__
    if isinstance(exc, QueueError) and exc.message:
        return exc.message  # written for people already
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def setup(*, verbose: bool = False, tracebacks: bool = True, log_format: str | None = None) -> None:
    """Send the ``graderqueue`` loggers to stderr; INFO and up, DEBUG with ``verbose``.

    ``log_format`` is the setting; None keeps the one given last. Called
    more than once (an app per test, a CLI command after the CLI group):
    the handler is added once and its options updated.
    """
    formatter = make_formatter(log_format or _chosen["format"], tracebacks=tracebacks)
    _chosen["format"] = log_format or _chosen["format"]
    logger = logging.getLogger(LOGGER)
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    ours = [h for h in logger.handlers if getattr(h, "graderqueue_setup", False)]
    if ours:
        ours[0].setFormatter(formatter)
        return
    if logging.getLogger().handlers:
        return  # logging is configured elsewhere; our records propagate to it
    handler = logging.StreamHandler(sys.stderr)
    handler.graderqueue_setup = True  # type: ignore[attr-defined]
    handler.setFormatter(formatter)
    logger.addHandler(handler)
