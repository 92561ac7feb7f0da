"""One exception tree for everything the queue refuses, and the protocol's error codes.

Each class carries the protocol ``errorcode`` (PROTOCOL.md) and a default
message (its docstring's first line); the web layer turns any
:class:`QueueError` into the protocol's JSON answer, the CLI into a message
and a non-zero exit. Library errors are translated where they occur
(``raise ... from exc``). No other module writes an error code::

    QueueError (2)
    ├── BadRequest, TokenError, UnknownJob, NotAssigned, InvalidResult, NotFound (2)
    ├── ApiAuthError, Forbidden       the JSON API's 401 and 403 (it uses http_status, not codes)
    ├── Conflict                      the JSON API's 409: a job's state forbids the action
    ├── QueueFull (2)                 over a platform's max_queued (the JSON API's 429)
    ├── TooLarge (2)                  request body over max_request_bytes
    ├── AuthenticationError (3)       grading servers; PlatformAuthError (2) for platforms
    ├── TooManyJobs, NoJob (1)        poll answers that say "later"
    ├── Unavailable, InternalError (1) our fault: the client must try again
    ├── WakeupFailed (1)              the interface's wake-up of a server
    ├── ConfigError                   settings file or environment (startup, CLI)
    ├── NotInitialized                database schema missing or old (startup)
    ├── KeyProblem                    protocol/keys.py: the queue's key pair
    ├── MailError                     maintenance/mail.py: SMTP
    └── ClientError                   client.py: the queue's refusal, seen by a platform
"""

from __future__ import annotations

# Protocol error codes.
SUCCESS = 0
TEMPORARY = 1
FATAL = 2
AUTH = 3


class QueueError(Exception):
    """The queue refused the request."""

    errorcode: int = FATAL
    # The JSON API's HTTP status for it (the PHP protocol always answers 200).
    http_status: int = 400

    def __init__(self, message: str | None = None, *, errorcode: int | None = None) -> None:
        if message is None:
            message = (self.__doc__ or "Error.").strip().splitlines()[0]
        super().__init__(message)
        self.message = message
        if errorcode is not None:
            self.errorcode = errorcode


class BadRequest(QueueError):
    """Invalid request."""


class TokenError(QueueError):
    """Invalid token."""


class AuthenticationError(QueueError):
    """No valid authentication provided."""

    errorcode = AUTH


class PlatformAuthError(QueueError):
    """No valid authentication provided."""

    # Platforms get errorcode 2 for authentication failures (PROTOCOL.md).
    errorcode = FATAL


class UnknownJob(QueueError):
    """Invalid jobid."""

    http_status = 404


class NotAssigned(QueueError):
    """Task doesn't exist or server doesn't have this job assigned."""


class InvalidResult(QueueError):
    """Resultdata received invalid."""


class TooManyJobs(QueueError):
    """Server already accepted too many jobs."""

    errorcode = TEMPORARY


class NoJob(QueueError):
    """No job available."""

    errorcode = TEMPORARY


class Unavailable(QueueError):
    """The queue is temporarily unavailable, try again later."""

    # A transient fault on our side must never make a client give up.
    errorcode = TEMPORARY
    http_status = 503


class NotFound(QueueError):
    """Not found."""

    http_status = 404


class ApiAuthError(QueueError):
    """No valid API credentials."""

    http_status = 401


class Forbidden(QueueError):
    """Not allowed with these credentials."""

    http_status = 403


class Conflict(QueueError):
    """The job's state does not allow this."""

    http_status = 409


class QueueFull(QueueError):
    """Too many jobs waiting for this platform."""

    # errorcode 2 for the protocol (a platform should not retry blindly);
    # the JSON API's 429.
    http_status = 429


class TooLarge(QueueError):
    """Request too large."""

    http_status = 413


class WakeupFailed(QueueError):
    """Server wake-up failed."""

    errorcode = TEMPORARY


class InternalError(QueueError):
    """Internal error, try again later."""

    errorcode = TEMPORARY
    http_status = 500


class ConfigError(QueueError):
    """The configuration is invalid."""


class NotInitialized(QueueError):
    """The database schema is missing or old: run `graderqueue init` first."""
