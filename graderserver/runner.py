"""Run the grading program on one job and turn what it did into resultdata.

The program gets the job JSON on stdin and writes the result JSON on stdout.
It runs in its own session, hence its own process group, so that a timeout,
an oversized output or a cold shutdown can kill it together with everything
it forked: a compiler or a solution left running would eat the next job's
CPU and skew its timings.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from string import Template
from typing import Any

from graderserver.artifacts import artifact_fields

log = logging.getLogger(__name__)

# Exit code of the program meaning "temporary error, try again" (PROTOCOL.md).
EXIT_TEMPORARY = 2
# How much stderr, and how much of stdout on failure, goes into errormsg: the
# queue stores the message and shows it to admins, it need not hold megabytes.
MESSAGE_SNIPPET_BYTES = 4096
STDERR_KEEP_BYTES = 64 * 1024
# After the group is killed, readers normally hit EOF at once; a pipe still
# open after this belongs to a process that left the group on purpose.
READER_GRACE_SECONDS = 2.0


@dataclass(frozen=True)
class ProgramRun:
    """What one run of the program did."""

    returncode: int | None
    stdout: bytes
    stderr: bytes
    timed_out: bool = False
    output_exceeded: bool = False
    stderr_exceeded: bool = False  # more came than `stderr` keeps
    start_error: str | None = None
    seconds: float = 0.0


class _Group:
    """One program's process group; signalled only while its leader is unreaped.

    Until the leader is reaped its pid, and so the group id, cannot be reused,
    so a kill can never hit an unrelated process.
    """

    def __init__(self, pgid: int) -> None:
        self.pgid = pgid
        self.lock = threading.Lock()
        self.reaped = False

    def kill(self) -> None:
        with self.lock:
            if self.reaped:
                return
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pgid, signal.SIGKILL)


class ProcessGroups:
    """The process groups of running programs, so that they can be killed at once.

    The daemon has one for a cold shutdown; each job one of its own, with the
    daemon's as `parent`, for when the queue cancels or takes back that job.
    """

    def __init__(self, parent: ProcessGroups | None = None) -> None:
        self._lock = threading.Lock()
        self._groups: set[_Group] = set()
        self._parent = parent
        self._closed = False

    @property
    def closed(self) -> bool:
        """Whether `close()` was called: every program here is killed."""
        return self._closed

    def add(self, group: _Group) -> None:
        with self._lock:
            self._groups.add(group)
            closed = self._closed
        if self._parent is not None:
            self._parent.add(group)
        if closed:
            # Started just as its job was taken back: it must not run on.
            group.kill()

    def discard(self, group: _Group) -> None:
        with self._lock:
            self._groups.discard(group)
        if self._parent is not None:
            self._parent.discard(group)

    def kill_all(self) -> int:
        """SIGKILL every running program's group; returns how many."""
        with self._lock:
            groups = list(self._groups)
        for group in groups:
            group.kill()
        return len(groups)

    def close(self) -> int:
        """Kill every group, and any added from now on; returns how many ran."""
        with self._lock:
            self._closed = True
        return self.kill_all()


class _Reader(threading.Thread):
    """Drains one pipe, keeping at most `limit` bytes."""

    def __init__(self, fd: int, limit: int, on_overflow: Any = None) -> None:
        super().__init__(daemon=True)
        self.fd = fd
        self.limit = limit
        self.on_overflow = on_overflow
        self.chunks: list[bytes] = []
        self.size = 0
        self.overflowed = False

    def run(self) -> None:
        try:
            while chunk := os.read(self.fd, 65536):
                room = self.limit - self.size
                if len(chunk) <= room:
                    self.chunks.append(chunk)
                    self.size += len(chunk)
                    continue
                if room > 0:
                    self.chunks.append(chunk[:room])
                    self.size = self.limit
                first_overflow = not self.overflowed
                self.overflowed = True
                if self.on_overflow is not None:
                    if first_overflow:
                        self.on_overflow()
                    return  # the writer is being killed: stop reading
                # No overflow action: keep draining so the writer never blocks.
        except OSError:
            pass
        finally:
            os.close(self.fd)

    def data(self) -> bytes:
        return b"".join(list(self.chunks))


def _feed(pipe: Any, data: bytes) -> None:
    # A program may exit without reading all its input; that is its business.
    try:
        pipe.write(data)
        pipe.close()
    except (BrokenPipeError, OSError, ValueError):
        pass


def run_program(
    argv: Sequence[str],
    stdin_data: bytes,
    *,
    timeout: float,
    max_output_bytes: int,
    groups: ProcessGroups | None = None,
    cwd: str | None = None,
    max_stderr_bytes: int = STDERR_KEEP_BYTES,
    env: Mapping[str, str] | None = None,
) -> ProgramRun:
    """Run `argv` with `stdin_data` on stdin; kill its whole group at `timeout`
    seconds or once stdout passes `max_output_bytes`. stderr is kept up to
    `max_stderr_bytes`, the rest read and dropped."""
    start = time.monotonic()
    try:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            cwd=cwd,
            env=env,
        )
    except OSError as exc:
        return ProgramRun(None, b"", b"", start_error=f"cannot start {argv[0]!r}: {exc}")
    group = _Group(proc.pid)  # a new session's leader: pgid == pid
    if groups is not None:
        groups.add(group)
    out, err = _start_readers(proc, group, max_output_bytes, max_stderr_bytes)
    threading.Thread(target=_feed, args=(proc.stdin, stdin_data), daemon=True).start()
    exited = _watch_exit(proc.pid)
    timed_out = not exited.wait(timeout)
    # Kill the group even after a normal exit: children it left behind
    # would otherwise outlive the job.
    group.kill()
    exited.wait()
    out.join(READER_GRACE_SECONDS)
    err.join(READER_GRACE_SECONDS)
    returncode = _reap(proc, group)
    if groups is not None:
        groups.discard(group)
    return ProgramRun(
        returncode=returncode,
        stdout=out.data(),
        stderr=err.data(),
        timed_out=timed_out,
        output_exceeded=out.overflowed,
        stderr_exceeded=err.overflowed,
        seconds=time.monotonic() - start,
    )


def _start_readers(
    proc: subprocess.Popen[bytes], group: _Group, max_output_bytes: int, max_stderr_bytes: int
) -> tuple[_Reader, _Reader]:
    """Drain stdout (killing the group past `max_output_bytes`) and stderr."""
    assert proc.stdout is not None and proc.stderr is not None
    # Detach the fds from the file objects so only the readers close them.
    out = _Reader(os.dup(proc.stdout.fileno()), max_output_bytes, on_overflow=group.kill)
    err = _Reader(os.dup(proc.stderr.fileno()), max_stderr_bytes)
    proc.stdout.close()
    proc.stderr.close()
    out.start()
    err.start()
    return out, err


def _watch_exit(pid: int) -> threading.Event:
    """An event set once the program exits, its leader left unreaped."""
    exited = threading.Event()

    def wait_without_reaping() -> None:
        # WNOWAIT leaves the leader a zombie, keeping its group id reserved
        # until we have killed whatever it left behind.
        with contextlib.suppress(ChildProcessError):
            os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
        exited.set()

    threading.Thread(target=wait_without_reaping, daemon=True).start()
    return exited


def _reap(proc: subprocess.Popen[bytes], group: _Group) -> int:
    """Reap the exited leader; from then on its group may not be signalled."""
    with group.lock:
        returncode = proc.wait()
        group.reaped = True
    return returncode


def prepare_jobdata(
    jobdata: Mapping[str, Any],
    root_path: str,
    path_vars: Mapping[str, str],
    restrict_paths: Sequence[str],
) -> dict[str, Any]:
    """The job JSON as the program must see it on this server (a new dict).

    Sets `rootPath`, expands `$ROOT_PATH` and the configured variables in
    `taskPath` and `restrictToPaths`, and appends this server's own path
    restrictions.
    """
    job = dict(jobdata)
    variables = {"ROOT_PATH": root_path, **path_vars}
    job["rootPath"] = root_path
    if isinstance(job.get("taskPath"), str):
        job["taskPath"] = Template(job["taskPath"]).safe_substitute(variables)
    platform_paths = platform_restrictions(jobdata, root_path, path_vars)
    if platform_paths is not None:
        job["restrictToPaths"] = platform_paths + list(restrict_paths)
    elif restrict_paths:
        job["restrictToPaths"] = list(restrict_paths)
    return job


def platform_restrictions(
    jobdata: Mapping[str, Any], root_path: str, path_vars: Mapping[str, str]
) -> list[str] | None:
    """The job's own `restrictToPaths` (set by the queue from the platform's
    registration) with variables expanded, or None when it has none."""
    variables = {"ROOT_PATH": root_path, **path_vars}
    restrict = jobdata.get("restrictToPaths")
    if isinstance(restrict, str):
        # The original queue sent one path as a bare string; iterating it
        # would restrict to single characters.
        restrict = [restrict]
    if not isinstance(restrict, list):
        return None
    return [Template(p).safe_substitute(variables) for p in restrict if isinstance(p, str)]


def make_result(errorcode: int, errormsg: str, jobdata: Any = None) -> dict[str, Any]:
    """resultdata as sendresults expects it; `jobdata` only when there is output."""
    result: dict[str, Any] = {"errorcode": errorcode, "errormsg": errormsg}
    if jobdata is not None:
        result["jobdata"] = jobdata
    return result


def snippet(data: bytes) -> str:
    """The start of `data` as text, marked when cut, for error messages."""
    text = data[:MESSAGE_SNIPPET_BYTES].decode("utf-8", errors="replace")
    return text + ("\n[...]" if len(data) > MESSAGE_SNIPPET_BYTES else "")


def result_from_run(run: ProgramRun, timeout: float, max_output_bytes: int) -> dict[str, Any]:
    """Classify a run as PROTOCOL.md says: JSON output is success; otherwise the
    exit code says fatal (1) or temporary (2). Our own kills are temporary:
    another try, maybe on a less loaded server, may well succeed."""
    if run.start_error is not None:
        # A missing or broken grading program is this server's fault, not the job's.
        return make_result(2, f"Temporary error: {run.start_error}.")
    if run.output_exceeded:
        return make_result(
            2, f"Temporary error: the program wrote more than {max_output_bytes} bytes."
        )
    if run.timed_out:
        return make_result(2, f"Temporary error: the program ran past its {timeout:g} s timeout.")
    try:
        output = json.loads(run.stdout)
    except (ValueError, RecursionError):
        output = None
    if isinstance(output, dict):
        if run.returncode != 0:
            log.warning("Program exited with %s but wrote valid JSON: kept.", run.returncode)
        return make_result(0, "Program executed successfully.\n", output)
    details = f"\nstdout:\n{snippet(run.stdout)}\nstderr:\n{snippet(run.stderr)}"
    if run.returncode == EXIT_TEMPORARY:
        return make_result(2, f"Temporary program error (exit code 2).{details}")
    return make_result(1, f"Fatal program error (exit code {run.returncode}).{details}")


def run_job(
    argv: Sequence[str],
    jobdata: Mapping[str, Any],
    *,
    timeout: float,
    max_output_bytes: int,
    groups: ProcessGroups | None = None,
) -> dict[str, Any]:
    """Run the program on an already prepared job JSON; return resultdata."""
    result, _ = grade_program(
        argv, jobdata, timeout=timeout, max_output_bytes=max_output_bytes, groups=groups
    )
    return result


def grade_program(
    argv: Sequence[str],
    jobdata: Mapping[str, Any],
    *,
    timeout: float,
    max_output_bytes: int,
    artifact_max_bytes: int = 0,
    groups: ProcessGroups | None = None,
    **where: Any,
) -> tuple[dict[str, Any], dict[str, str]]:
    """Run the program on an already prepared job JSON; return resultdata and
    the artifact fields (its stdout and stderr, see `graderserver.artifacts`).
    `where`: run_program's `cwd` and `env`, for a job with files."""
    run = run_program(
        argv,
        json.dumps(jobdata).encode("utf-8"),
        timeout=timeout,
        max_output_bytes=max_output_bytes,
        groups=groups,
        max_stderr_bytes=max(STDERR_KEEP_BYTES, artifact_max_bytes),
        **where,
    )
    log.debug(
        "Program exited with %s after %.3f s (%d bytes out, %d bytes err).",
        run.returncode,
        run.seconds,
        len(run.stdout),
        len(run.stderr),
    )
    fields: dict[str, str] = {}
    if run.start_error is None:
        outputs = {
            "stdout": (run.stdout, run.output_exceeded),
            "stderr": (run.stderr, run.stderr_exceeded),
        }
        fields = artifact_fields(outputs, artifact_max_bytes)
    return result_from_run(run, timeout, max_output_bytes), fields
