"""The no-op grading job for the peers (Celery and python-rq), as the graderserver runs it.

Each task runs the same program the graderserver runs (``BENCH_COMMAND``,
JSON list): the job on its stdin, its stdout parsed as the result, in a new
session like the daemon's runner. ``noop`` skips the program, for context.
"""

from __future__ import annotations

import json
import os
import subprocess

from celery import Celery

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
COMMAND = json.loads(os.environ.get("BENCH_COMMAND", '["cat"]'))

app = Celery("bench", broker=REDIS_URL, backend=REDIS_URL)
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    task_default_queue="bench",
)


def client(redis_url: str) -> Celery:
    """A fresh Celery app for the sending side, bound to this Redis.

    A new instance per benchmark run: an app keeps its result backend's
    connection, which would still point at the previous run's redis-server.
    Send with ``client(url).send_task("grade", args=[job])``.
    """
    sender = Celery("bench-client", broker=redis_url, backend=redis_url)
    sender.conf.update(app.conf)
    sender.conf.broker_url = redis_url
    sender.conf.result_backend = redis_url
    return sender


def run_program(job: dict) -> dict:
    proc = subprocess.run(
        COMMAND,
        input=json.dumps(job).encode(),
        capture_output=True,
        timeout=30,
        start_new_session=True,
        check=False,
    )
    return json.loads(proc.stdout)


@app.task(name="grade")
def grade(job: dict) -> dict:
    return run_program(job)


@app.task(name="noop")
def noop(job: dict) -> dict:
    return job


def rq_grade(job: dict) -> dict:
    """The python-rq task: the same program."""
    return run_program(job)
