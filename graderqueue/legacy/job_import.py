"""The PHP queue's jobs and log carried over: ``queue``, ``done`` and ``log``.

Job ids are kept (platforms stored them). Where the PHP queue had one id
twice (its counters reset at restarts), getjob answered the ``queue`` row,
else the first ``done`` row: that row is imported and the others are left
out and counted. Rows are read through a server-side cursor and written in
batches, one transaction each, so a table of millions of rows takes minutes
and an interrupted run resumes where it stopped when run again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import insert, select

from graderqueue.identity.platforms import INTERFACE
from graderqueue.legacy.progress import Progress, Report
from graderqueue.legacy.registry_import import Known
from graderqueue.legacy.source import LegacyDatabase, php_json, prefetch, to_utc
from graderqueue.queue import carry_over
from graderqueue.store.db import Database
from graderqueue.store.models import Event, JobStatus, utcnow

#: Stands for a zero date where a time is required (received_time, the log's).
EPOCH = datetime(1970, 1, 1)
_LIVE = {"queued": JobStatus.QUEUED, "sent": JobStatus.SENT, "error": JobStatus.ERROR}
_JOB = (
    "name", "job_repeats", "priority", "timeout_sec", "nb_fails", "received_from",
    "received_time", "sent_to", "grading_start_time", "tags", "jobdata",
)  # fmt: skip
_RENAMED = {"grading_start_time": "sent_time", "grading_end_time": "done_time"}
_STATS = ("cpu_time_ms", "real_time_ms", "max_real_time_ms", "is_success")
_TEXTS = ("task_path", "task_name", "language")


class JobImport:
    def __init__(
        self,
        source: LegacyDatabase,
        db: Database,
        known: Known,
        report: Report,
        tz: ZoneInfo,
        *,
        write: bool,
        batch: int = 5000,
    ) -> None:
        self.source, self.db, self.known, self.report, self.tz = source, db, known, report, tz
        self.write, self.batch = write, batch
        self.now = utcnow()

    # -- who sent a job ---------------------------------------------------------

    def sender(self, received_from: int | None) -> tuple[int | None, str]:
        """(platform_id, received_via) as this queue records the sender."""
        if received_from is None or received_from == -1:
            return None, INTERFACE  # the PHP panel
        if received_from < -1:
            user_id = -1 - received_from
            name = self.known.users.get(user_id)
            return None, f"remote:{name}" if name is not None else f"remote:#{user_id}"
        if received_from in self.known.platforms:
            return received_from, "platform"
        return None, f"platform:#{received_from}"  # a platform deleted since: its jobs stay unread

    def _job(self, r: dict[str, Any], status: str) -> dict[str, Any]:
        platform_id, via = self.sender(r["received_from"])
        sent_to = r["sent_to"] if r["sent_to"] in self.known.servers else None
        return {
            "id": r["id"],
            "platform_id": platform_id,
            "received_via": via,
            "name": r["name"] or "",
            "jobusertaskid": r.get("jobusertaskid") or "",
            # Only live jobs keep their dedup key: a platform sending the same
            # jobusertaskid again updates the job, as in the PHP queue.
            "dedup_key": (r.get("jobusertaskid") or None) if status != JobStatus.DONE else None,
            "job_repeats": r["job_repeats"] or 0,
            "status": status,
            "priority": r["priority"] or 0,
            "timeout_sec": r["timeout_sec"] if r["timeout_sec"] is not None else 300,
            "nb_fails": r["nb_fails"] or 0,
            "received_time": to_utc(r["received_time"], self.tz) or EPOCH,
            "sent_to": sent_to
            if status in (JobStatus.SENT, JobStatus.ERROR, JobStatus.DONE)
            else None,
            "grading_start_time": to_utc(r["grading_start_time"], self.tz),
            "lease_expires": None,
            "grading_end_time": to_utc(r.get("grading_end_time"), self.tz),
            "tags": r["tags"] or "",
            "taskrevision": r.get("taskrevision") or "",
            "jobdata": php_json(r["jobdata"], empty_object=True),
        }

    def _lease(self, job: dict[str, Any], timeout_time: Any) -> datetime:
        """The end of a sent job's lease; held by a server gone since, it ends
        all the same, and the job is handed out again then (claim.py)."""
        end = to_utc(timeout_time, self.tz)
        if end is None and job["grading_start_time"] is not None:
            end = job["grading_start_time"] + timedelta(seconds=job["timeout_sec"])
        return end or self.now

    # -- queue ------------------------------------------------------------------

    def queue(self) -> set[int]:
        """Queued, sent and error jobs, routed by their ``job_types`` rows."""
        s = self.source
        types: dict[int, list[int]] = {}
        for r in s.rows("SELECT jobid, typeid FROM job_types ORDER BY jobid, typeid"):
            if r["typeid"] in self.known.types:
                types.setdefault(r["jobid"], []).append(r["typeid"])
        columns = s.pick("queue", "id", *_JOB, "jobusertaskid", "status", "timeout_time",
                         "taskrevision", aliases=_RENAMED)  # fmt: skip
        ids: set[int] = set()
        tally = self.report.tally("queue")
        for rows in s.stream(f"SELECT {columns} FROM queue ORDER BY id", self.batch):
            jobs = []
            for r in rows:
                ids.add(r["id"])
                status = _LIVE.get(r["status"] or "", JobStatus.QUEUED)  # '' (non-strict): queued
                job = self._job(r, status)
                if status == JobStatus.SENT:
                    job["lease_expires"] = self._lease(job, r["timeout_time"])
                jobs.append(job)
            self._write(
                "queue", jobs, lambda fresh: {j["id"]: types.get(j["id"], []) for j in fresh}
            )
        tally.read += len(ids)
        unrouted = sum(1 for i in ids if not types.get(i))
        if unrouted:
            self.report.notes.append(
                f"{unrouted} queue job(s) have no server type left: never handed out"
            )
        return ids

    def _write(
        self,
        table: str,
        jobs: list[dict[str, Any]],
        types: Callable[[list[dict[str, Any]]], dict[int, list[int]]] | None = None,
        results: list[dict[str, Any]] | None = None,
    ) -> int:
        """Write the jobs not here yet in one transaction; returns how many."""
        if not jobs:
            return 0
        tally = self.report.tally(table)
        low, high = min(j["id"] for j in jobs), max(j["id"] for j in jobs)
        with self.db.transaction() if self.write else self.db.reading() as session:
            here = carry_over.present_ids(session, low, high)
            fresh = [j for j in jobs if j["id"] not in here]
            keep = {j["id"] for j in fresh}
            if self.write:
                carry_over.insert_jobs(
                    session,
                    fresh,
                    types(fresh) if types else None,
                    [r for r in results or () if r["job_id"] in keep],
                )
        tally.present += len(jobs) - len(fresh)
        tally.imported += len(fresh)
        return len(fresh)

    # -- done -------------------------------------------------------------------

    def done(self, queue_ids: set[int]) -> None:
        """History: done jobs with their results and statistics, no delivery owed."""
        s = self.source
        extra = [c for c in (*_STATS, *_TEXTS) if s.has("done", c)]
        columns = s.pick("done", "id", "jobid", *_JOB, "grading_end_time", "resultdata", *extra,
                         aliases=_RENAMED)  # fmt: skip
        tally = self.report.tally("done")
        progress = Progress("done", s.count("done"))
        last = None

        def batches() -> Iterator[tuple[int, list[dict[str, Any]], list[dict[str, Any]]]]:
            nonlocal last
            # (jobid, id) order: the first done row of an id comes first, and the
            # index on jobid (which holds the primary key) serves it without a sort.
            for rows in s.stream(f"SELECT {columns} FROM done ORDER BY jobid, id", self.batch):
                jobs, results = [], []
                for r in rows:
                    tally.read += 1
                    if r["jobid"] in queue_ids or r["jobid"] == last:
                        tally.skipped += 1  # getjob answered the queue row, or the first done row
                        continue
                    last = r["jobid"]
                    jobs.append(self._job({**r, "id": r["jobid"]}, JobStatus.DONE))
                    results.append(self._result(r, extra))
                yield len(rows), jobs, results

        for count, jobs, results in prefetch(batches):
            self._write("done", jobs, results=results)
            progress.advance(count)
        progress.finish()

    def _result(self, r: dict[str, Any], extra: list[str]) -> dict[str, Any]:
        result = {"job_id": r["jobid"], "resultdata": php_json(r["resultdata"], empty_object=True)}
        for name in extra:
            value = r[name]
            result[name] = (
                bool(value) if name == "is_success" else (value or ("" if name in _TEXTS else 0))
            )
        return result

    # -- log --------------------------------------------------------------------

    def log(self) -> None:
        """The log as events, under the same ids and kinds (``error_timeout``...)."""
        tally = self.report.tally("log")
        progress = Progress("log", self.source.count("log"))
        sql = "SELECT id, `datetime`, log_type, job_id, server_id, message FROM log ORDER BY id"
        for rows in prefetch(lambda: self.source.stream(sql, self.batch)):
            tally.read += len(rows)
            events = [
                {
                    "id": r["id"],
                    "time": to_utc(r["datetime"], self.tz) or EPOCH,
                    "kind": (r["log_type"] or "legacy")[:64],
                    "job_id": r["job_id"] if r["job_id"] and r["job_id"] > 0 else None,
                    "server_id": r["server_id"] if r["server_id"] and r["server_id"] > 0 else None,
                    "message": r["message"] or "",
                }
                for r in rows
            ]
            table = Event.__table__
            low, high = rows[0]["id"], rows[-1]["id"]
            with self.db.transaction() if self.write else self.db.reading() as session:
                here = set(session.scalars(select(table.c.id).where(table.c.id.between(low, high))))
                fresh = [e for e in events if e["id"] not in here]
                if self.write and fresh:
                    session.execute(insert(table), fresh)
            tally.present += len(events) - len(fresh)
            tally.imported += len(fresh)
            progress.advance(len(rows))
        progress.finish()
