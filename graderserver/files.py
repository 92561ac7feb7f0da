"""A job's files: fetched from the queue, verified, cached by hash, put in its folder.

A job whose poll answer lists `files` (this project's queue, PROTOCOL.md
[new]) runs in a folder of its own under `files.work_dir`: each file is
fetched from the queue's `/jobfile` by its SHA-256, checked against it, kept
in `files.cache_dir` under that hash (so the next job with the same file
fetches nothing), and copied to its `dest` in the job's folder; a copy, so a
program that changes its file cannot change the cache. The program runs in
that folder, with `GRADERSERVER_WORKDIR` naming it and `GRADERSERVER_FILES`
listing the `dest` paths (colon-separated). A job with an `output_file` gets
that file sent back as the artifact `output`, cut to its `max_kb`.

The cache keeps at most `files.cache_max_mib`: past it, the files used
longest ago go (a file's modification time is its last use).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from graderserver.artifacts import artifact_fields
from graderserver.errors import GraderServerError
from graderserver.runner import make_result

log = logging.getLogger(__name__)

FILES_ENV = "GRADERSERVER_FILES"
WORKDIR_ENV = "GRADERSERVER_WORKDIR"
READ_BYTES = 64 * 1024


class FetchFailed(GraderServerError):
    """A job's file could not be fetched, or was not what its hash says."""


@dataclass(frozen=True)
class JobFile:
    dest: str
    sha256: str
    size: int


# Fetch a file: (sha256, the path to write it to) -> None.
Fetch = Callable[[str, str], None]
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def files_from_answer(raw: object) -> tuple[JobFile, ...]:
    """A poll answer's `files`, checked: a hash becomes a file name in the cache."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ValueError("files is not a list")
    found = []
    for entry in raw:
        if not isinstance(entry, dict):
            raise ValueError("a file is not an object")
        dest, sha256, size = entry.get("dest"), entry.get("sha256"), entry.get("size", 0)
        if not isinstance(dest, str) or not dest or dest.startswith("/"):
            raise ValueError(f"bad dest {dest!r}")
        if not isinstance(sha256, str) or not _SHA256.match(sha256):
            raise ValueError(f"bad sha256 {sha256!r}")
        found.append(JobFile(dest, sha256, int(size)))
    return tuple(found)


class FileCache:
    """Files by SHA-256 in one folder, used most recently kept, at most `max_bytes`."""

    def __init__(self, folder: str, max_bytes: int) -> None:
        self.folder = Path(folder)
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._fetching: dict[str, threading.Lock] = {}

    def path(self, sha256: str) -> Path:
        return self.folder / sha256

    def get(self, sha256: str, fetch: Fetch) -> Path:
        """The cached file, fetched first if it is not here (once, however many
        jobs ask at the same time)."""
        with self._lock:
            one = self._fetching.setdefault(sha256, threading.Lock())
        with one:
            path = self.path(sha256)
            if path.exists():
                os.utime(path)  # used now: the last to go
                return path
            self.folder.mkdir(parents=True, exist_ok=True)
            fd, partial = tempfile.mkstemp(dir=self.folder, prefix=".part-")
            os.close(fd)
            try:
                fetch(sha256, partial)
                if _sha256_of(partial) != sha256:
                    raise FetchFailed(f"file {sha256[:12]}: the bytes received have another hash")
                os.replace(partial, path)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(partial)
            self.trim(keep=sha256)
            return path

    def trim(self, keep: str = "") -> None:
        """Delete the files used longest ago until the cache fits its cap."""
        with self._lock:
            entries = []
            for entry in os.scandir(self.folder):
                if entry.name.startswith(".") or not entry.is_file():
                    continue
                info = entry.stat()
                entries.append((info.st_mtime, entry.name, info.st_size))
            total = sum(size for _, _, size in entries)
            for _, name, size in sorted(entries):
                if total <= self.max_bytes:
                    return
                if name == keep:
                    continue
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.folder / name)
                total -= size


def _sha256_of(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(READ_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class Workspace:
    """The folder a job with files runs in, and what its program is told."""

    folder: Path
    dests: list[str] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            WORKDIR_ENV: str(self.folder),
            FILES_ENV: ":".join(self.dests),
        }

    def place(self, source: Path, dest: str) -> None:
        target = self._inside(dest)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        self.dests.append(dest)

    def _inside(self, relative: str) -> Path:
        target = (self.folder / relative).resolve()
        if not target.is_relative_to(self.folder.resolve()):
            raise FetchFailed(f"{relative!r} leaves the job's folder")
        return target

    def output_fields(self, output_file: str, max_bytes: int) -> dict[str, str]:
        """The `output` artifact's fields: the file's first `max_bytes`, flagged when cut.

        Nothing when the program wrote no such file, or it leads outside the
        folder (a symlink the program made): that is no output to send.
        """
        try:
            path = self._inside(output_file)
            with open(path, "rb") as fh:
                data = fh.read(max_bytes + 1)
        except (OSError, FetchFailed) as exc:
            log.info("No output file %r: %s", output_file, exc)
            return {}
        return artifact_fields({"output": (data[:max_bytes], len(data) > max_bytes)}, max_bytes)


@contextlib.contextmanager
def workspace(
    cache: FileCache, work_dir: str, jobid: int, files: list[JobFile], fetch: Fetch
) -> Iterator[Workspace]:
    """A fresh folder for the job with its files in place; removed afterwards."""
    if work_dir:
        Path(work_dir).mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f"job-{jobid}-", dir=work_dir or None))
    try:
        space = Workspace(folder)
        for file in files:
            space.place(cache.get(file.sha256, fetch), file.dest)
        yield space
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def output_cap(artifact_max_bytes: int, max_kb: int | None) -> int:
    """Bytes of `output_file` to send: the job's max_kb within the server's cap
    (a server that sends no artifacts still sends an output a job asks for)."""
    caps = [c for c in (artifact_max_bytes, (max_kb or 0) * 1024) if c > 0]
    return min(caps) if caps else 0


def grade_with_files(
    job: Any, cache: FileCache, config: Any, client: Any, grade: Callable[..., Any]
) -> tuple[dict[str, Any], dict[str, str]]:
    """`grade()`, for a job with files or an output file in a folder of its own
    (`grade(cwd=..., env=...)`) with the `output` artifact added. A file that
    cannot be fetched: a temporary error (another try may well fetch it)."""
    if not job.files and job.output_file is None:
        return grade()

    def fetch(sha256: str, path: str) -> None:
        client.download(job.jobid, sha256, path)

    try:
        with workspace(cache, config.files_work_dir, job.jobid, list(job.files), fetch) as space:
            result, artifacts = grade(cwd=str(space.folder), env=space.env())
            cap = output_cap(config.artifact_max_bytes, job.max_kb)
            if job.output_file is not None and cap > 0:
                artifacts = {**artifacts, **space.output_fields(job.output_file, cap)}
            return result, artifacts
    except (GraderServerError, OSError) as exc:
        log.warning("Job #%d: its files: %s", job.jobid, exc)
        return make_result(2, f"Temporary error: could not fetch the job's files: {exc}"), {}
