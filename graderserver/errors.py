"""The daemon's exceptions: one root, each subclass saying what went wrong.

Callers decide by class, never by message: `QueueUnavailable` is retried with
backoff, `QueueRejected` and `AuthenticationFailed` stop the daemon as
PROTOCOL.md asks (errorcode 2 and 3). `JobStateUnknown` only ends the
checks of one running job (see `graderserver.jobcheck`).
"""

from __future__ import annotations


class GraderServerError(Exception):
    """Grading-server error."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


class ConfigError(GraderServerError):
    """Invalid configuration."""


class QueueUnavailable(GraderServerError):
    """The queue could not be reached or gave an unreadable answer; try again later."""


class RequestTooLarge(QueueUnavailable):
    """The queue or its proxy refused the request as too large (HTTP 413)."""


class QueueRejected(GraderServerError):
    """The queue rejected the request (errorcode 2)."""


class AuthenticationFailed(GraderServerError):
    """The queue refused our credentials (errorcode 3)."""


class JobStateUnknown(GraderServerError):
    """The queue cannot say whether we still hold a job (no /jobstate there)."""
