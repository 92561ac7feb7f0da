"""legacy-import: `graderqueue import-legacy` of a PHP queue with a large done table.

Builds a PHP graderqueue database on MariaDB (harness/legacy_db.py, every
migration) with --legacy-done-rows done jobs (JSON job and result of a few
hundred bytes each, as taskgrader's are small when stdout is cut), a tenth
as many log rows and a few queued jobs, then times the import into a new
queue on each backend. The legacy rows are made by MariaDB itself (the
sequence engine), so building a million takes seconds, not the import's time.
"""

from __future__ import annotations

import argparse
import time

from graderqueue.legacy import importer
from harness.legacy_db import LegacyDatabase

from .common import Unavailable, database, mariadb_base, note, print_table, tmpdir

_JOBDATA = '{"taskPath":"\\/tasks\\/add","extraParams":{"solutionContent":"print(1)\\u00e9"}}'
_RESULT = (
    '{"errorcode":0,"job":{"executions":[{"testsReports":'
    '[{"checker":{"stdout":{"data":"100"}}}]}]}}'
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--legacy-done-rows", type=int, default=1_000_000, help="done rows in the PHP database"
    )


def build_legacy(url: str, rows: int) -> None:
    legacy = LegacyDatabase(url)
    legacy.insert("tags", id=1, name="python")
    legacy.insert("server_types", id=1, name="general")
    legacy.insert("platforms", id=1, name="bench", public_key="", restrict_paths="", return_url="")
    with legacy.connect() as conn:
        conn.exec_driver_sql(
            "INSERT INTO done (jobid, name, priority, timeout_sec, nb_fails, received_from,"
            " received_time, sent_to, grading_start_time, tags, jobdata, grading_end_time,"
            " resultdata, cpu_time_ms, is_success, task_name)"
            " SELECT seq, CONCAT('job', seq), 0, 300, 0, 1,"
            " '2024-01-01 00:00:00' + INTERVAL seq SECOND, 1,"
            " '2024-01-01 00:00:01' + INTERVAL seq SECOND, 'python', %s,"
            " '2024-01-01 00:00:03' + INTERVAL seq SECOND, %s, 12, 1, 'add'"
            f" FROM seq_1_to_{rows}",
            (_JOBDATA, _RESULT),
        )
        conn.exec_driver_sql(
            "INSERT INTO log (datetime, log_type, job_id, server_id, message)"
            " SELECT '2024-01-01 00:00:00' + INTERVAL seq SECOND, 'error_timeout', seq * 10, 1,"
            f" 'late' FROM seq_1_to_{max(1, rows // 10)}"
        )
        conn.exec_driver_sql(
            "INSERT INTO queue (id, name, jobusertaskid, received_time, tags, jobdata)"
            f" SELECT {rows} + seq, 'q', CONCAT('u', seq), NOW(), 'python', %s"
            " FROM seq_1_to_100",
            (_JOBDATA,),
        )
        conn.exec_driver_sql(f"INSERT INTO job_types SELECT {rows} + seq, 1 FROM seq_1_to_100")
        conn.commit()
    legacy.dispose()


def run(args: argparse.Namespace) -> list[list]:
    from harness.mariadb import temporary_database
    from harness.queue import QueueSetup

    base = mariadb_base()
    if base is None:
        note("(legacy-import needs MariaDB for the PHP database: skipped)")
        return []
    workdir = tmpdir("legacy")
    rows: list[list] = []
    with temporary_database(base) as legacy_url:
        began = time.monotonic()
        build_legacy(legacy_url, args.legacy_done_rows)
        note(f"legacy database built in {time.monotonic() - began:.0f} s")
        for backend in args.backends:
            try:
                with database(backend, workdir / backend) as url:
                    setup = QueueSetup(workdir / backend / "instance", url)
                    options = importer.Options(legacy_url, "Europe/Paris")
                    began = time.monotonic()
                    report = importer.run(setup.db, options)
                    seconds = time.monotonic() - began
                    setup.close()
            except Unavailable as exc:
                note(f"({backend}: {exc})")
                continue
            done = report.tally("done").imported
            rows.append([backend, done, f"{seconds:.0f}", f"{done / seconds:.0f}"])
    print_table(
        "import-legacy: a PHP queue's done table into a new queue",
        ["target", "done rows", "seconds", "done rows/s"],
        rows,
    )
    return rows
