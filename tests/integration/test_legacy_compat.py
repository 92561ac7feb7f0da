"""What a platform or remote user moved from the PHP graderqueue may rely on:
its md5 password hashes (accepted once, then replaced) and, where the
platform asks for it, PHP's lenient reading of integers (docs/MIGRATING.md)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from sqlalchemy import select

from graderqueue.protocol.numbers import php_intval
from graderqueue.store.models import Job, Platform, RemoteUser
from harness import ROOT
from harness.processes import run_cli
from harness.queue import QueueSetup


def remote(queue: QueueSetup, user: str, password: str) -> dict[str, Any]:
    return queue.post(
        "/api.php", rRequest=json.dumps({"request": "test"}), rUsername=user, rPassword=password
    )


def stored_hash(queue: QueueSetup, user: str) -> str:
    return queue.scalar(select(RemoteUser.password_hash).where(RemoteUser.username == user))


def test_a_php_md5_hash_is_accepted_once_and_replaced(queue: QueueSetup) -> None:
    md5 = hashlib.md5(b"olduser@s3cret \xc3\xa9").hexdigest()
    with queue.db.transaction() as session:
        session.add(RemoteUser(username="olduser", password_hash=f"legacy-md5:{md5}"))

    # A wrong password neither passes nor touches the old hash.
    for wrong in ("s3cret", "", md5, f"legacy-md5:{md5}"):
        assert remote(queue, "olduser", wrong)["errorcode"] == 2, wrong
    assert stored_hash(queue, "olduser") == f"legacy-md5:{md5}"

    ok = {"errorcode": 0, "errormsg": "Connected as user olduser"}
    assert remote(queue, "olduser", "s3cret é") == ok
    upgraded = stored_hash(queue, "olduser")
    assert upgraded.startswith("$argon2id$")
    # The same password goes on working, now against the new hash.
    assert remote(queue, "olduser", "s3cret é") == ok
    assert stored_hash(queue, "olduser") == upgraded
    assert remote(queue, "olduser", "s3cret")["errorcode"] == 2


def test_an_md5_hash_is_never_taken_for_an_argon2_one(sqlite_queue: QueueSetup) -> None:
    # A user name that is part of the hashed text: the md5 of "x@y" stored for
    # user "x" must not let "x@y" in as a password of some other form.
    md5 = hashlib.md5(b"x@y").hexdigest()
    with sqlite_queue.db.transaction() as session:
        session.add(RemoteUser(username="x", password_hash=f"legacy-md5:{md5}"))
        session.add(RemoteUser(username="z", password_hash=md5))  # no prefix: not legacy
    env = {**sqlite_queue.env, "PYTHONPATH": str(ROOT)}
    listed = run_cli(["remote-user", "list"], env=env).stdout
    assert listed == "1\tx\tmd5, not used since the move\n2\tz\n"

    assert remote(sqlite_queue, "x", "x@y")["errorcode"] == 2
    assert remote(sqlite_queue, "z", "y")["errorcode"] == 2
    assert remote(sqlite_queue, "x", "y")["errorcode"] == 0
    assert run_cli(["remote-user", "list"], env=env).stdout == "1\tx\n2\tz\n"


@pytest.mark.parametrize(
    ("value", "read"),
    [
        ("5.7", 5),
        ("12abc", 12),
        ("abc", 0),
        ("  42", 42),
        ("+7x", 7),
        ("-3", -3),
        ("007", 7),
        ("1e3", 1),
        ("9" * 40, 2**31 - 1),
        ("-" + "9" * 40, -(2**31 - 1)),
        (5.7, 5),
        (-2.9, -2),
        (1e300, 2**31 - 1),
        (float("nan"), 0),
        (True, 1),
        (None, 0),
        ([1], 0),
    ],
)
def test_php_intval(value: object, read: int) -> None:
    assert php_intval(value, 2**31 - 1) == read


def _priority_and_timeout(queue: QueueSetup, job_id: int) -> tuple[int, int]:
    row = queue.rows(select(Job.priority, Job.timeout_sec).where(Job.id == job_id))[0]
    return row.priority, row.timeout_sec


def test_lenient_integers_are_a_per_platform_switch(sqlite_queue: QueueSetup) -> None:
    queue = sqlite_queue
    strict = queue.platform("strict")
    lenient = queue.platform("lenient")
    env = {**queue.env, "PYTHONPATH": str(ROOT)}
    out = run_cli(["platform", "update", "lenient", "--lenient-integers"], env=env)
    assert "lenient_integers" in out.stdout, out.stdout

    job = {"taskPath": "/t"}
    client = queue.client_for(lenient)
    job_id = client.sendjob(job, tags="c", priority="5.7", timeout="12abc", jobusertaskid="a")
    assert _priority_and_timeout(queue, job_id) == (5, 12)
    job_id = client.sendjob(job, tags="c", priority="abc", timeout="-4", jobusertaskid="b")
    assert _priority_and_timeout(queue, job_id) == (0, 1)  # below the minimum: the minimum
    job_id = client.sendjob(job, tags="c", priority=3.9, jobusertaskid="c")
    assert _priority_and_timeout(queue, job_id)[0] == 3

    before = queue.snapshot()
    answer = queue.client_for(strict).raw_call(
        {"request": "sendjob", "jobdata": json.dumps(job), "tags": "c", "priority": "5.7"}
    )
    assert answer == {"errorcode": 2, "errormsg": "Invalid priority: not an integer."}
    assert queue.snapshot() == before

    # Switched off again, the platform is refused like any other.
    run_cli(["platform", "update", "lenient", "--strict-integers"], env=env)
    assert not queue.scalar(select(Platform.lenient_integers).where(Platform.name == "lenient"))
    queue.app.extensions["graderqueue"].registry.forget(("platform", "lenient"))
    answer = client.raw_call(
        {"request": "sendjob", "jobdata": json.dumps(job), "tags": "c", "priority": "5.7"}
    )
    assert answer["errorcode"] == 2, answer
