"""``graderqueue cron``, ``deliver`` and ``job redeliver`` as an operator runs them."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from graderqueue.store.models import Delivery, DeliveryState, Job, JobType, utcnow
from harness import ROOT
from harness.processes import run_cli
from harness.smtp_sink import SMTPSink
from tests.integration.test_delivery import make_lane


@pytest.fixture
def smtp():  # type: ignore[no-untyped-def]
    with SMTPSink() as sink:
        yield sink


def cli_env(queue, **settings: str) -> dict[str, str | None]:  # type: ignore[no-untyped-def]
    env = dict(queue.env)
    env.update({f"GRADERQUEUE_{k.upper()}": v for k, v in settings.items()})
    return env


def mail_env(queue, smtp) -> dict[str, str | None]:  # type: ignore[no-untyped-def]
    return cli_env(
        queue,
        admin_emails="admin@example.org",
        smtp_host="127.0.0.1",
        smtp_port=str(smtp.port),
        warn_nb="2",
        warn_seconds="60",
    )


def age_jobs(queue, *ids: int, **values) -> None:  # type: ignore[no-untyped-def]
    with queue.db.transaction() as session:
        session.execute(update(Job).where(Job.id.in_(ids)).values(**values))
        if "status" in values:
            session.execute(
                update(JobType).where(JobType.job_id.in_(ids)).values(status=values["status"])
            )


@pytest.mark.queue_settings(delivery_enabled=False)
def test_cron_reports_what_it_did(sqlite_queue, smtp):
    queue = sqlite_queue
    client = queue.client_for(queue.platform("plat"))
    ids = [client.sendjob({"n": i}, tags="c") for i in range(3)]
    age_jobs(queue, *ids, received_time=utcnow() - timedelta(days=9))
    age_jobs(queue, ids[0], nb_fails=2)
    env = mail_env(queue, smtp)

    out = run_cli(["cron"], env=env).stdout
    assert "jobs put in error: 1" in out
    assert "alerts e-mailed: jobs stuck" in out
    assert "hourly part: not asked" in out
    assert smtp.wait_for(1)[0].subject == "[graderqueue] jobs stuck or in error (3)"

    out = run_cli(["cron", "--hourly"], env=env).stdout
    assert "jobs put in error: 0" in out
    assert "hourly part: done" in out
    assert "deleted jobs: 1" in out  # the error job, older than keep_old_days
    assert "alerts e-mailed: none" in out
    assert queue.rows(select(Job.id).order_by(Job.id)) == [(ids[1],), (ids[2],)]


@pytest.mark.queue_settings(delivery_enabled=False)
def test_cron_fails_loudly_when_mail_cannot_go_out(sqlite_queue, smtp):
    queue = sqlite_queue
    client = queue.client_for(queue.platform("plat"))
    ids = [client.sendjob({"n": i}, tags="c") for i in range(2)]
    age_jobs(queue, *ids, received_time=utcnow() - timedelta(hours=1), nb_fails=2)
    port = smtp.port
    smtp.stop()
    result = run_cli(["cron"], env=mail_env(queue, smtp), check=False)
    assert result.returncode == 1
    assert f"error: stuck jobs alert: Cannot send e-mail through 127.0.0.1:{port}" in result.stderr
    assert "jobs put in error: 2" in result.stdout  # the other steps still ran


@pytest.mark.queue_settings(delivery_enabled=False)
def test_two_crons_at_once_on_two_nodes(queue, smtp):
    lane = make_lane(queue)
    old = utcnow() - timedelta(days=9)
    done = [lane.finish_job(f"done-{i}") for i in range(3)]
    age_jobs(queue, *done, grading_end_time=old, received_time=old)
    with queue.db.transaction() as session:
        session.execute(update(Delivery).values(state=DeliveryState.DELIVERED))
    client = queue.client_for(lane.platform)
    stuck = [client.sendjob({"n": i}, tags="c") for i in range(3)]
    age_jobs(queue, *stuck, received_time=utcnow() - timedelta(hours=1), nb_fails=3)

    env = {k: v for k, v in mail_env(queue, smtp).items() if v is not None}
    command = [sys.executable, "-m", "graderqueue", "cron", "--hourly"]
    procs = [
        subprocess.Popen(
            command,
            env={**_base_env(), **env, "PYTHONPATH": str(ROOT)},
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    stdout = "".join(out for out, _ in outputs)
    put_in_error = sum(
        int(line.split(": ")[1]) for line in stdout.splitlines() if "in error:" in line
    )
    assert put_in_error == 3
    assert sorted(queue.rows(select(Job.id, Job.status))) == [(j, "error") for j in stuck]
    assert Counter(m.subject for m in smtp.messages) == {
        "[graderqueue] jobs stuck or in error (3)": 1
    }


def _base_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("GRADERQUEUE_")}


@pytest.mark.queue_settings(delivery_enabled=False)
def test_deliver_once_and_redeliver(sqlite_queue):
    queue = sqlite_queue
    lane = make_lane(queue)
    ids = [lane.finish_job(f"job-{i}") for i in range(3)]
    env = cli_env(queue)
    with lane.endpoint:
        out = run_cli(["deliver", "--once"], env=env).stdout
        assert out == "deliveries tried: 3 (3 delivered)\n"
        assert run_cli(["deliver", "--once"], env=env).stdout == "deliveries tried: 0 (none due)\n"

        out = run_cli(["job", "redeliver", str(ids[0])], env=env).stdout
        assert out == "1 result(s) queued for delivery.\n"
        age_jobs(queue, ids[1], grading_end_time=utcnow() - timedelta(days=3))
        since = (utcnow() - timedelta(days=1)).strftime("%Y-%m-%d %H:%M:%S")
        out = run_cli(
            ["job", "redeliver", "--platform", lane.platform.name, "--since", since], env=env
        ).stdout
        assert out == "2 result(s) queued for delivery.\n"  # jobs 0 and 2, not 1
        assert run_cli(["deliver", "--once"], env=env).stdout.startswith("deliveries tried: 2")
    assert Counter(lane.endpoint.accepted_names()) == {"job-0": 2, "job-1": 1, "job-2": 2}

    refused = run_cli(["job", "redeliver", "424242"], env=env, check=False)
    assert (refused.returncode, refused.stderr.strip()) == (1, "Error: No job #424242.")
    usage = run_cli(["job", "redeliver"], env=env, check=False)
    assert usage.returncode == 2
    assert "Give either a JOB_ID or --platform NAME." in usage.stderr
    unknown = run_cli(["job", "redeliver", "--platform", "nope"], env=env, check=False)
    assert "Platform `nope` does not exist." in unknown.stderr


def example_commands() -> list[list[str]]:
    """The graderqueue command lines of examples/crontab and examples/systemd/."""
    lines = (ROOT / "examples" / "crontab").read_text().splitlines()
    for unit in sorted((ROOT / "examples" / "systemd").glob("*.service")):
        lines += [
            line.removeprefix("ExecStart=")
            for line in unit.read_text().splitlines()
            if line.startswith("ExecStart=")
        ]
    commands = []
    for line in lines:
        words = line.split(">")[0].split()
        if words and not line.startswith("#") and words[-1] != "graderqueue.wsgi:app":
            at = next((i for i, w in enumerate(words) if w.endswith("/bin/graderqueue")), None)
            if at is not None:
                commands.append(words[at + 1 :])
    return commands


def test_the_example_crontab_and_units_run_real_commands(sqlite_queue):
    commands = example_commands()
    assert sorted(map(tuple, commands)) == sorted(
        [("cron",), ("cron", "--hourly")] * 2 + [("deliver",)]
    )
    env = cli_env(sqlite_queue)
    for command in commands:
        if command == ["deliver"]:  # runs for ever: check that it exists and would parse
            command = [*command, "--help"]
        run_cli(command, env=env)


@pytest.mark.queue_settings(delivery_enabled=False, delivery_poll_sec=0.2)
def test_deliver_service_delivers_as_results_come_and_stops_on_sigterm(sqlite_queue):
    queue = sqlite_queue
    lane = make_lane(queue)
    env = {**_base_env(), **{k: v for k, v in cli_env(queue).items() if v is not None}}
    service = subprocess.Popen(
        [sys.executable, "-m", "graderqueue", "deliver"],
        env={**env, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        with lane.endpoint:
            # No kick reaches another process: the service finds them in the outbox.
            lane.finish_job("first")
            lane.endpoint.wait_accepted(1)
            lane.finish_job("second")
            lane.endpoint.wait_accepted(2)
    finally:
        service.send_signal(signal.SIGTERM)
        _, err = service.communicate(timeout=60)
    assert service.returncode == 0, err
    assert lane.endpoint.accepted_names() == ["first", "second"]


def outage_env(tmp_path) -> dict[str, str | None]:  # type: ignore[no-untyped-def]
    """MariaDB down as a client sees it: nothing listens on the port."""
    from harness.processes import free_port

    return {
        "GRADERQUEUE_CONFIG": None,
        "GRADERQUEUE_INSTANCE_PATH": str(tmp_path / "inst"),
        "GRADERQUEUE_DATABASE_URL": f"mysql+pymysql://root@127.0.0.1:{free_port()}/gq",
        "GRADERQUEUE_DELIVERY_POLL_SEC": "0.05",
    }


EVERY_RUN_STEPS = ["error jobs", "runs", "wake-up retries", "stuck jobs alert", "deliveries alert"]


@pytest.mark.parametrize("hourly", [False, True])
def test_cron_in_a_database_outage_says_one_line_per_failed_step(tmp_path, hourly):
    steps = EVERY_RUN_STEPS + (["hourly lease"] if hourly else [])
    result = run_cli(["cron", *(["--hourly"] if hourly else [])], env=outage_env(tmp_path),
                     check=False)  # fmt: skip
    assert result.returncode == 1
    errors = result.stderr.splitlines()
    assert [line.split(": ")[1] for line in errors] == steps, result.stderr
    assert all("Can't connect to MySQL server" in line for line in errors)
    assert "Traceback" not in result.stderr
    # Steps that never ran are not reported as having done nothing.
    assert "jobs put in error" not in result.stdout
    assert "wake-ups retried" not in result.stdout
    assert "alerts e-mailed" not in result.stdout
    assert "another node" not in result.stdout  # the lease was not taken by anyone
    if hourly:
        assert "hourly part" not in result.stdout


def test_cron_verbose_shows_the_tracebacks(tmp_path):
    result = run_cli(["cron", "-v"], env=outage_env(tmp_path), check=False)
    assert result.returncode == 1
    assert "Traceback" in result.stderr
    assert "ConnectionRefusedError" in result.stderr


def test_deliver_in_a_database_outage_logs_one_line_not_a_traceback_per_pass(
    sqlite_queue, tmp_path
):
    outage = outage_env(tmp_path)
    del outage["GRADERQUEUE_INSTANCE_PATH"]  # the queue's, with its keys
    merged = {**_base_env(), **cli_env(sqlite_queue), **outage}
    env = {k: v for k, v in merged.items() if v is not None}
    service = subprocess.Popen(
        [sys.executable, "-m", "graderqueue", "deliver"],
        env={**env, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # The first failed pass is logged once the service runs (its SIGTERM
    # handler is installed by then: a signal sent earlier, on a loaded
    # machine, would kill the interpreter during start-up).
    seen: list[str] = []
    try:
        assert service.stderr is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = service.stderr.readline()
            if not line:
                break
            seen.append(line)
            if "delivery pass failed" in line:
                break
        # Passes fail every 0.05 s; however many run meanwhile, the outage is one line.
        time.sleep(1)
    finally:
        service.send_signal(signal.SIGTERM)
        _, rest = service.communicate(timeout=60)
    err = "".join(seen) + rest
    assert service.returncode == 0, err
    failures = [line for line in err.splitlines() if "delivery pass failed" in line]
    assert len(failures) == 1, err
    assert "Can't connect to MySQL server" in failures[0]
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z WARNING \[\d+\] ", failures[0])
    assert "Traceback" not in err


@pytest.mark.parametrize("args", [["deliver", "--once"], ["tag", "list"]])
def test_other_commands_in_a_database_outage_name_the_real_error(sqlite_queue, tmp_path, args):
    outage = outage_env(tmp_path)
    del outage["GRADERQUEUE_INSTANCE_PATH"]  # the queue's, with its keys
    result = run_cli(args, env={**cli_env(sqlite_queue), **outage}, check=False)
    assert result.returncode == 1
    # Not just "The queue is temporarily unavailable": the operator needs the cause.
    assert result.stderr.startswith("Error: database error: OperationalError: (2003, ")
    assert "Traceback" not in result.stderr
