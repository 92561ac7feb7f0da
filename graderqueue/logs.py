"""One logging set-up for the web app (under gunicorn), ``deliver`` and ``cron``.

Every line carries the time (UTC, ISO 8601), the level, the pid and the
logger name: several gunicorn workers and delivery services write to the
same journal, and a warning without a time or a pid cannot be matched with
anything. Only the ``graderqueue`` logger tree is configured, and only when
nobody else configured logging (gunicorn's ``--log-config``, a test
harness): gunicorn's own loggers are left as they are.
"""

from __future__ import annotations

import logging
import sys
import time

from sqlalchemy.exc import DBAPIError

from graderqueue.errors import QueueError

LOGGER = "graderqueue"
FORMAT = "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"


class Formatter(logging.Formatter):
    """UTC ISO times; with ``tracebacks=False`` an exception is one line, not a traceback."""

    converter = time.gmtime
    default_time_format = "%Y-%m-%dT%H:%M:%S"
    default_msec_format = "%s.%03dZ"

    def __init__(self, *, tracebacks: bool = True) -> None:
        super().__init__(FORMAT)
        self.tracebacks = tracebacks

    def format(self, record: logging.LogRecord) -> str:
        if record.exc_info and record.exc_info[1] is not None and not self.tracebacks:
            # A copy: other handlers of the same record may want the traceback.
            record = logging.makeLogRecord(record.__dict__)
            record.msg = f"{record.getMessage()} ({describe_error(record.exc_info[1])})"  # type: ignore[index]
            record.args = None
            record.exc_info = None
            record.exc_text = None
        return super().format(record)


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


def setup(*, verbose: bool = False, tracebacks: bool = True) -> None:
    """Send the ``graderqueue`` loggers to stderr; INFO and up, DEBUG with ``verbose``.

    Called more than once (an app per test, a CLI command after the app
    module): the handler is added once and its options updated.
    """
    logger = logging.getLogger(LOGGER)
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    ours = [h for h in logger.handlers if getattr(h, "graderqueue_setup", False)]
    if ours:
        ours[0].setFormatter(Formatter(tracebacks=tracebacks))
        return
    if logging.getLogger().handlers:
        return  # logging is configured elsewhere; our records propagate to it
    handler = logging.StreamHandler(sys.stderr)
    handler.graderqueue_setup = True  # type: ignore[attr-defined]
    handler.setFormatter(Formatter(tracebacks=tracebacks))
    logger.addHandler(handler)
