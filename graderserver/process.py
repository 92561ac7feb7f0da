"""Process plumbing for server mode: the pid file lock and daemonizing."""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys

from graderserver.errors import GraderServerError


class AlreadyRunning(GraderServerError):
    """Another graderserver holds the pid file."""


class PidFile:
    """A pid file held with an exclusive lock for the life of the process.

    The lock, not the pid written in the file, decides whether another
    instance runs: a stale file left by a crash does not block a restart,
    and a recycled pid cannot fake a running server.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            other = os.pread(self._fd, 32, 0).decode("ascii", "replace").strip()
            os.close(self._fd)
            raise AlreadyRunning(
                f"graderserver already running (pid {other or '?'}, pid file {path})"
            ) from None

    def write(self) -> None:
        """Record our pid; call after daemonizing, when the pid is final."""
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"{os.getpid()}\n".encode("ascii"), 0)

    def release(self) -> None:
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        with contextlib.suppress(OSError):
            os.close(self._fd)


def daemonize() -> None:
    """Detach from the terminal: double fork, new session, stdio to /dev/null.

    Must run before any thread starts. Open file descriptors (log file, pid
    file lock) are kept.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    if os.fork() > 0:
        os._exit(0)  # the parent returns to the shell; skip its atexit handlers
    os.setsid()
    if os.fork() > 0:
        os._exit(0)  # the session leader leaves, so we can never regain a terminal
    os.chdir("/")
    os.umask(0o022)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
