"""`graderqueue import-legacy` from PHP graderqueue databases on MariaDB, through the real CLI.

The legacy database is built once for the module from the described schema
(base and its three migrations), written through a non-strict session with
the odd rows the PHP code left. It is imported into a new queue (MariaDB),
which is then used as platforms and grading servers use it: getjob of old
ids, polls with an old server token, a new job's id, the delivery worker.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from graderqueue.delivery.worker import Worker
from graderqueue.protocol.keys import QueueKeys, generate_rsa_pem
from graderqueue.store.models import (
    Delivery,
    DeliveryAttempt,
    Event,
    Job,
    JobType,
    RemoteUser,
    Result,
    Server,
    ServerToken,
    Tag,
)
from harness.legacy_db import LegacyDatabase, remote_password
from harness.mariadb import temporary_database
from harness.processes import run_cli
from harness.queue import PlatformIdentity, QueueSetup

pytestmark = pytest.mark.mariadb

ZONE = "Europe/Paris"
OLD_TOKEN = "abcdefghijklmnop"  # 16 characters, as the PHP queue made them
TOKEN_NAME = "café-tok"  # non-ASCII in the latin1 table
ZERO = "0000-00-00 00:00:00"


def local(delta: timedelta) -> str:
    """The PHP server's local time, now + *delta*, as it wrote DATETIMEs."""
    return (datetime.now(ZoneInfo(ZONE)) + delta).strftime("%Y-%m-%d %H:%M:%S")


def fill(legacy: LegacyDatabase, pems: dict[str, str]) -> None:
    """Rows as the PHP code left them (comments name the oddity each one carries)."""
    ins = legacy.insert
    for id_, name in [(1, "python"), (2, "cpp"), (3, "python"), (4, "Python ")]:  # duplicates
        ins("tags", id=id_, name=name)
    for id_, name in [(1, "general"), (2, "cpp-only"), (3, "general")]:
        ins("server_types", id=id_, name=name)
    legacy.insert_many(
        "type_tags", [{"typeid": t, "tagid": g} for t, g in [(1, 1), (1, 2), (2, 2), (3, 3)]]
    )
    ins("platforms", id=1, name="plat-a", public_key=pems["a"], restrict_paths="", return_url="")
    ins("platforms", id=2, name="plat-b", public_key=pems["b"], restrict_paths="/tasks,/x",
        force_tag=2, return_url="http://127.0.0.1:9/results")  # fmt: skip
    # A certificate server never polled (zero date); a token server (ssl '' left
    # out); a duplicate name. Server 9 was deleted by the hourly cron.
    ins("servers", id=1, name="cert", ssl_serial="0A1B", ssl_dn="CN=Test CA,O=Example",
        wakeup_url="", type=1, token_id=0, ip="")  # fmt: skip
    ins("servers", id=2, name=f"{TOKEN_NAME}-127.0.0.1", wakeup_url="udp://127.0.0.1:20000",
        type=1, max_concurrent_jobs=0, last_poll_time=local(-timedelta(hours=1)),
        token_id=1, ip="127.0.0.1")  # fmt: skip
    ins("servers", id=3, name="cert", ssl_serial="0C", ssl_dn="CN=Test CA,O=Example",
        wakeup_url="", type=2, token_id=0, ip="")  # fmt: skip
    ins("server_tokens", id=1, name=TOKEN_NAME, token=OLD_TOKEN, type=1, max_concurrent_jobs=0)
    ins("server_tokens", id=2, name=TOKEN_NAME, token="ponmlkjihgfedcba", type=2)
    ins("remote_users", id=1, username="alice", password=remote_password("alice", "secret"))
    ins("remote_users", id=2, username="alice", password=remote_password("alice", "other"))
    stale = {"grading_start_time": local(-timedelta(days=2)),
             "timeout_time": local(-timedelta(days=2))}  # fmt: skip
    live = local(timedelta(hours=1))
    queue = [
        # Given back: sent_to -1 with stale times; PHP JSON (\/ and \u).
        dict(id=10, status="queued", received_from=1, jobusertaskid="u10", priority=5,
             received_time="2024-07-01 12:00:00", sent_to=-1, **stale,
             jobdata='{"taskPath":"\\/tasks\\/add","name":"caf\\u00e9"}'),
        dict(id=11, status="sent", received_from=1, jobusertaskid="u11", sent_to=2,
             grading_start_time=local(timedelta()), timeout_time=live, jobdata="{}"),
        # Leases held by server 9, deleted since: one over, one still running.
        dict(id=12, status="sent", received_from=1, jobusertaskid="u12", sent_to=9, **stale,
             jobdata="[]"),
        dict(id=13, status="sent", received_from=1, jobusertaskid="u13", sent_to=9,
             grading_start_time=local(timedelta()), timeout_time=live, jobdata="{}"),
        dict(id=14, status="error", received_from=2, jobusertaskid="u14", jobdata="{}"),
        dict(id=15, status="queued", received_from=-2, jobusertaskid="u15", jobdata="null"),
        dict(id=16, status="queued", received_from=-1, jobusertaskid="u16", jobdata=""),
        dict(id=17, status="queued", received_from=1, jobusertaskid="u17", jobdata="{}"),
    ]  # fmt: skip
    for row in queue:
        ins("queue", name=f"job{row['id']}", tags="", received_time=row.pop("received_time",
            local(-timedelta(hours=3))), **row)  # fmt: skip
    types = [(10, 1), (11, 1), (12, 1), (13, 1), (14, 2), (15, 2), (16, 1), (17, 2), (99, 1)]
    legacy.insert_many("job_types", [{"jobid": j, "typeid": t} for j, t in types])
    done = [
        dict(jobid=5, name="first", received_from=1, resultdata='{"score":100}', cpu_time_ms=12,
             is_success=1, task_name="add"),
        dict(jobid=5, name="second", received_from=1, resultdata='{"score":0}'),  # repeated id
        dict(jobid=17, name="also-in-queue", received_from=1, resultdata="{}"),
        dict(jobid=6, name="remote", received_from=-2, resultdata="[]",
             jobdata='{"text":"\\u00e9t\\u00e9"}'),
        dict(jobid=7, name="by-gone-server", received_from=2, sent_to=9, resultdata="{}"),
        dict(jobid=30, name="highest", received_from=1, resultdata="{}"),
    ]  # fmt: skip
    for row in done:
        # returnUrl left out (''), as the PHP code did; grading times local.
        ins("done", priority=0, timeout_sec=300, nb_fails=0, sent_to=row.pop("sent_to", 2),
            received_time="2024-01-15 09:00:00", grading_start_time="2024-01-15 09:00:01",
            grading_end_time="2024-01-15 09:00:05", tags="", jobdata=row.pop("jobdata", "{}"),
            **row)  # fmt: skip
    ins("log", log_type="error_timeout", job_id=12, server_id=9)  # datetime left out: zero
    ins("log", datetime="2024-01-15 09:00:05", log_type="error_in_result", job_id=5, server_id=2,
        message=None)  # fmt: skip


@pytest.fixture(scope="module")
def pems() -> dict[str, tuple[str, str]]:
    return {name: tuple(p.decode() for p in generate_rsa_pem()) for name in ("a", "b")}  # type: ignore[misc]


@pytest.fixture(scope="module")
def legacy_url(mariadb_base: str, pems) -> str:  # type: ignore[no-untyped-def]
    with temporary_database(mariadb_base) as url:
        legacy = LegacyDatabase(url)
        fill(legacy, {k: v[1] for k, v in pems.items()})
        legacy.dispose()
        yield url


@pytest.fixture(scope="module")
def imported(mariadb_base: str, legacy_url: str, tmp_path_factory):  # type: ignore[no-untyped-def]
    """The queue after one import through the CLI, and that run's output."""
    with temporary_database(mariadb_base) as url:
        setup = QueueSetup(tmp_path_factory.mktemp("q") / "instance", url, poll_wait_sec=0)
        done = import_legacy(setup, legacy_url)
        yield setup, done.stdout
        setup.close()


def import_legacy(setup: QueueSetup, url: str, *extra: str):  # type: ignore[no-untyped-def]
    return run_cli(["import-legacy", "--from", url, "--timezone", ZONE, *extra], env=setup.env)


def platform(setup: QueueSetup, pems, name: str, id_: int) -> object:  # type: ignore[no-untyped-def]
    return setup.client_for(PlatformIdentity(name, pems[name[-1]][0], pems[name[-1]][1], id_))


# -- tests ------------------------------------------------------------------------


def test_registry_with_renames_and_the_latin1_token_name(imported):
    setup, out = imported
    names = {r.name for r in setup.rows(select(Tag.name))}
    assert names == {"python", "cpp", "python-3", "Python-4"}
    assert "renamed: tag 'python' #3 -> 'python-3'" in out
    tokens = dict(setup.rows(select(ServerToken.id, ServerToken.name)))
    assert tokens == {1: TOKEN_NAME, 2: f"{TOKEN_NAME}-2"}
    servers = {r.id: r for r in setup.rows(select(Server.__table__))}
    assert servers[1].ssl_key and servers[1].last_poll_time is None  # zero date
    assert (servers[2].token_id, servers[2].ip, servers[2].ssl_key) == (1, "127.0.0.1", None)
    assert servers[3].name == "cert-3"
    hashes = dict(setup.rows(select(RemoteUser.username, RemoteUser.password_hash)))
    assert hashes == {
        "alice": "legacy-md5:" + remote_password("alice", "secret"),
        # Renamed: the PHP name it was hashed with is kept beside the md5.
        "alice-2": "legacy-md5:" + remote_password("alice", "other") + ":alice",
    }


def test_jobs_times_routing_and_history(imported):
    setup, out = imported
    jobs = {j.id: j for j in setup.rows(select(Job.__table__))}
    assert set(jobs) == {5, 6, 7, 10, 11, 12, 13, 14, 15, 16, 17, 30}
    assert jobs[10].received_time == datetime(2024, 7, 1, 10, 0)  # Paris summer time -> UTC
    assert jobs[10].sent_to is None and jobs[10].lease_expires is None
    assert json.loads(jobs[10].jobdata) == {"taskPath": "/tasks/add", "name": "café"}
    assert (jobs[12].jobdata, jobs[15].jobdata, jobs[16].jobdata) == ("{}", "null", "")
    assert (jobs[12].sent_to, jobs[13].sent_to, jobs[11].sent_to) == (None, None, 2)
    assert jobs[13].lease_expires > datetime.now() - timedelta(hours=2)
    assert (jobs[15].platform_id, jobs[15].received_via) == (None, "remote:alice")
    assert (jobs[16].platform_id, jobs[16].received_via) == (None, "interface")
    assert jobs[5].name == "first" and jobs[7].sent_to is None
    types = Counter(r.job_id for r in setup.rows(select(JobType.job_id)))
    assert set(types) == {10, 11, 12, 13, 14, 15, 16, 17}  # orphan job_types row 99 dropped
    stats = setup.rows(select(Result.job_id, Result.cpu_time_ms, Result.is_success))
    assert sorted(stats) == [(5, 12, True), (6, 0, False), (7, 0, False), (30, 0, False)]
    assert setup.scalar(select(func.count()).select_from(Delivery)) == 0
    kinds = {(e.kind, e.job_id) for e in setup.rows(select(Event.kind, Event.job_id))}
    assert {("error_timeout", 12), ("error_in_result", 5)} <= kinds
    assert "done" in out and "left out" in out


def test_getjob_of_old_ids_answers_as_the_php_queue(imported, pems):
    setup, _ = imported
    a = platform(setup, pems, "plat-a", 1)
    answer = a.getjob(10)
    row = answer["data"]
    assert (answer["origin"], row["status"], row["sent_to"]) == ("queue", "queued", -1)
    assert row["received_time"] == "2024-07-01 10:00:00"
    first = a.getjob(5)  # repeated in done: the first row
    assert (first["origin"], first["data"]["name"]) == ("done", "first")
    assert json.loads(first["data"]["resultdata"]) == {"score": 100}
    both = a.getjob(17)  # in queue and done: the queue row
    assert both["origin"] == "queue" and both["data"]["name"] == "job17"
    assert platform(setup, pems, "plat-b", 2).getjob(7)["origin"] == "done"


def test_no_old_result_is_posted_again(imported):
    setup, _ = imported
    settings = setup.settings
    worker = Worker(setup.db, settings, QueueKeys(settings.resolved_key_dir, settings.key_name))
    try:
        assert worker.run_pass() == Counter()
    finally:
        worker.close()
    assert setup.scalar(select(func.count()).select_from(DeliveryAttempt)) == 0


def test_old_remote_user_logs_in_with_its_password(imported):
    setup, _ = imported
    answer = setup.post(
        "/api.php",
        rUsername="alice",
        rPassword="secret",
        rRequest=json.dumps({"request": "getjob", "jobid": 15}),
    )
    assert answer["errorcode"] == 0, answer
    # The md5 served once; the password now verifies against Argon2id.
    stored = setup.scalar(select(RemoteUser.password_hash).where(RemoteUser.username == "alice"))
    assert stored.startswith("$argon2id$")
    # A user renamed by the import logs in under its new name, same password.
    answer = setup.post(
        "/api.php", rUsername="alice-2", rPassword="other", rRequest='{"request": "test"}'
    )
    assert answer == {"errorcode": 0, "errormsg": "Connected as user alice-2"}


def test_old_token_polls_live_leases_hold_and_new_ids_are_new(imported, pems):
    """Changes the queue: kept after the tests that read the imported state."""
    setup, _ = imported
    got = []
    for _ in range(6):
        answer = setup.post("/poll.php", server_token=OLD_TOKEN)
        if answer["errorcode"] != 0:
            break
        got.append(answer["jobid"])
    # Type 1 jobs: 10 and 16 queued, 12's lease over (its server is gone);
    # 11 (held by this server) and 13 (a live lease of a gone server) are not handed out.
    assert sorted(got) == [10, 12, 16]
    assert setup.scalar(select(Job.nb_fails).where(Job.id == 12)) == 1
    assert setup.scalar(select(Job.sent_to).where(Job.id == 13)) is None
    new_id = platform(setup, pems, "plat-a", 1).sendjob({"taskPath": "/tasks/new"}, tags="")
    assert new_id > 30


def test_importing_again_changes_nothing_and_dry_run_writes_nothing(imported, legacy_url):
    setup, _ = imported
    before = setup.snapshot()
    again = import_legacy(setup, legacy_url)
    assert setup.snapshot() == before
    assert "imported         0" in again.stdout
    dry = import_legacy(setup, legacy_url, "--dry-run")
    assert setup.snapshot() == before
    assert "Dry run: nothing written." in dry.stdout
    # Bad input: a clear error, nothing written.
    wrong = run_cli(["import-legacy", "--from", setup.settings.database_url, "--timezone", ZONE],
                    env=setup.env, check=False)  # fmt: skip
    assert wrong.returncode == 1 and "Not a PHP graderqueue database" in wrong.stderr
    zone = import_legacy_unchecked(setup, legacy_url, "Mars/Olympus")
    assert zone.returncode == 1 and "Unknown time zone" in zone.stderr
    assert setup.snapshot() == before


def import_legacy_unchecked(setup: QueueSetup, url: str, zone: str):  # type: ignore[no-untyped-def]
    args = ["import-legacy", "--from", url, "--timezone", zone]
    return run_cli(args, env=setup.env, check=False)


@pytest.mark.parametrize(
    ("variant", "target"),
    [
        ({"migrations": ("2016-12-15", "2016-12-19")}, "mariadb"),
        # The very old schema goes into a SQLite queue: both targets import.
        ({"migrations": (), "very_old": True}, "sqlite"),
    ],
)
def test_older_installations_import(mariadb_base, tmp_path: Path, variant, target):  # type: ignore[no-untyped-def]
    with temporary_database(mariadb_base) as old, temporary_database(mariadb_base) as new:
        new = new if target == "mariadb" else ""
        legacy = LegacyDatabase(old, **variant)
        legacy.insert("server_types", id=1, name="general")
        legacy.insert("servers", id=4, name="s", ssl_serial="0A", ssl_dn="CN=CA", type=1)
        legacy.insert("queue", id=40, name="j", status="sent", sent_to=4, received_from=-1,
                      tags="", jobdata="{}", timeout_time=local(timedelta(hours=1)))  # fmt: skip
        legacy.insert("job_types", jobid=40, typeid=1)
        start = "grading_start_time" if "2016-12-19" in legacy.migrations else "sent_time"
        legacy.insert("done", jobid=41, name="d", priority=0, timeout_sec=1, nb_fails=0,
                      received_from=-1, sent_to=4, tags="", jobdata="{}", resultdata="{}",
                      **{start: "2024-01-15 09:00:01"})  # fmt: skip
        legacy.insert("log", log_type="error_timeout", job_id=40, server_id=4, message="late")
        legacy.dispose()
        setup = QueueSetup(tmp_path / "instance", new)
        try:
            import_legacy(setup, old)
            jobs = dict(setup.rows(select(Job.id, Job.status)))
            assert jobs == {40: "sent", 41: "done"}
            assert setup.scalar(select(Job.grading_start_time).where(Job.id == 41)) is not None
        finally:
            setup.close()
