"""Platforms, server types, tags and admins changed and removed with the real CLI,
on SQLite and MariaDB: what each command changes, what it logs, and that each
refusal changes nothing (docs/LIFECYCLE.md)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from graderqueue.client import ClientError
from graderqueue.protocol import keys
from graderqueue.store.models import (
    AdminUser,
    Event,
    Job,
    JobType,
    Platform,
    PlatformKey,
    ServerType,
    Tag,
    TypeTag,
)
from harness.processes import run_cli
from harness.queue import PlatformIdentity
from tests.integration.test_api_v1_auth import bearer_jws, get

# A poll that finds nothing answers at once: these tests poll often.
pytestmark = pytest.mark.queue_settings(poll_wait_sec=0)


def cli(queue, *args: str, check: bool = True, input: str | None = None, env=None):  # type: ignore[no-untyped-def]
    return run_cli(list(args), env={**queue.env, **(env or {})}, check=check, input=input)


def refused(queue, *args: str, says: str, env=None) -> None:  # type: ignore[no-untyped-def]
    """The command fails with ``says`` on stderr, and no table changed at all."""
    before = queue.snapshot()
    result = cli(queue, *args, check=False, env=env)
    assert result.returncode != 0, result.stdout
    assert says in result.stderr, result.stderr
    assert queue.snapshot() == before, f"{args} was refused but changed something"


def logged(queue, kind: str) -> list[str]:  # type: ignore[no-untyped-def]
    return [m for (m,) in queue.rows(select(Event.message).where(Event.kind == kind))]


def poll(queue, token: str) -> dict:  # type: ignore[no-untyped-def]
    return queue.post("/poll.php", server_token=token, nbtasks="0")


def types_of(queue, job_id: int) -> set[str]:  # type: ignore[no-untyped-def]
    return {
        name
        for (name,) in queue.rows(
            select(ServerType.name)
            .join(JobType, JobType.type_id == ServerType.id)
            .where(JobType.job_id == job_id)
        )
    }


def status(queue, job_id: int) -> str | None:  # type: ignore[no-untyped-def]
    return queue.scalar(select(Job.status).where(Job.id == job_id))


# -- platforms -------------------------------------------------------------------


def test_platform_update_changes_what_is_given_and_logs_who(queue, tmp_path: Path):
    old = queue.platform("p2")
    private, public = keys.generate_rsa_pem()
    (tmp_path / "new.pub.pem").write_bytes(public)
    old_fingerprint = keys.fingerprint(old.public_pem)
    out = cli(queue, "platform", "update", "p2", "--return-url", "https://p2.example/results",
              "--weight", "3", "--max-queued", "5", "--force-tag", "java", "--require-fresh",
              "--add-key", str(tmp_path / "new.pub.pem"), "--remove-key", old_fingerprint[:16],
              ).stdout  # fmt: skip
    assert "Platform `p2` updated" in out and "weight `3` (was `1`)" in out
    row = queue.rows(select(Platform).where(Platform.name == "p2"))[0][0]
    assert (row.return_url, row.weight, row.max_queued, row.require_fresh) == (
        "https://p2.example/results", 3, 5, True
    )  # fmt: skip
    assert row.force_tag_id == queue.scalar(select(Tag.id).where(Tag.name == "java"))
    active = queue.rows(select(PlatformKey.fingerprint).where(PlatformKey.active.is_(True)))
    assert old_fingerprint not in {f for (f,) in active}
    (message,) = logged(queue, "platform_updated")
    assert message.startswith("platform p2: ") and message.endswith("; by cli")

    # Only the new key signs now, fresh tokens are needed, java is forced on.
    renewed = PlatformIdentity("p2", private.decode(), public.decode(), old.id)
    job_id = queue.client_for(renewed, fresh=True).sendjob({"x": 1}, tags="c")
    assert types_of(queue, job_id) == {"t-java"}
    with pytest.raises(ClientError, match="Invalid token"):
        queue.client_for(old, fresh=True).sendjob({"x": 2}, tags="c")

    cli(queue, "platform", "update", "p2", "--no-max-queued", "--no-force-tag",
        "--no-require-fresh")  # fmt: skip
    row = queue.rows(select(Platform).where(Platform.name == "p2"))[0][0]
    assert (row.max_queued, row.force_tag_id, row.require_fresh) == (None, None, False)
    same = cli(queue, "platform", "update", "p2", "--weight", "3").stdout
    assert "unchanged" in same and len(logged(queue, "platform_updated")) == 2
    listed = cli(queue, "platform", "list").stdout
    assert "p2\thttps://p2.example/results\tenabled\tweight 3\tmax queued -" in listed


def test_platform_update_refusals_change_nothing(queue, tmp_path: Path):
    only = queue.platform("p2")
    _private, public = keys.generate_rsa_pem()
    (tmp_path / "new.pub.pem").write_bytes(public)
    fingerprint = keys.fingerprint(only.public_pem)[:16]
    for args, says in [
        (["--weight", "0"], "weight must be between 1 and 1000"),
        (["--force-tag", "nosuch"], "Tag `nosuch` unrecognized."),
        (["--remove-key", fingerprint], "last active key"),
        (["--return-url", "ftp://p2.example/"], "must start with http"),
        (["--max-queued", "5", "--no-max-queued"], "not both"),
        # All or nothing: the good key is not added when the weight is refused.
        (["--add-key", str(tmp_path / "new.pub.pem"), "--weight", "0"], "weight must be"),
        ([], "Nothing to change"),
    ]:
        refused(queue, "platform", "update", "p2", *args, says=says)
    refused(queue, "platform", "update", "nosuch", "--weight", "2", says="does not exist")


def test_a_disabled_platform_is_refused_on_both_apis_and_its_jobs_still_run(queue):
    p2 = queue.platform("p2")
    client = queue.client_for(p2)
    waiting = client.sendjob({"x": 1}, tags="c")
    token = queue.server_token("t-c")
    assert "disabled" in cli(queue, "platform", "disable", "p2").stdout
    assert "was already disabled" in cli(queue, "platform", "disable", "p2").stdout

    for request in (lambda: client.sendjob({"x": 2}, tags="c"), lambda: client.getjob(waiting)):
        with pytest.raises(ClientError) as refusal:
            request()
        assert (refusal.value.errorcode, refusal.value.errormsg) == (
            2, "No valid authentication provided."
        )  # fmt: skip
    assert get(queue, "/api/v1/jobs", bearer_jws(p2, queue.settings.key_name)).status_code == 401
    assert poll(queue, token)["jobid"] == waiting, "its queued jobs are still handed out"
    assert "platform p2 disabled; by cli" in logged(queue, "platform_disabled")

    cli(queue, "platform", "enable", "p2")
    assert client.sendjob({"x": 3}, tags="c") > waiting
    assert get(queue, "/api/v1/jobs", bearer_jws(p2, queue.settings.key_name)).status_code == 200
    assert "platform p2 enabled; by cli" in logged(queue, "platform_enabled")


def test_the_old_interface_token_is_no_way_in(queue):
    answer = queue.post("/api.php", token="anything", request="test")
    assert answer == {"errorcode": 2, "errormsg": "No valid authentication provided."}


def test_platform_remove_refuses_to_strand_live_jobs_unless_told_to_cancel(queue):
    p2 = queue.client_for(queue.platform("p2"))
    held, waiting = p2.sendjob({"x": 1}, tags="c"), p2.sendjob({"x": 2}, tags="c")
    others = queue.client_for(queue.platform("p3")).sendjob({"x": 3}, tags="c")
    token = queue.server_token("t-c")
    assert poll(queue, token)["jobid"] == held
    refused(queue, "platform", "remove", "p2", says="2 live job(s)")

    out = cli(queue, "platform", "remove", "p2", "--cancel-jobs").stdout
    assert "2 live job(s) cancelled" in out
    assert queue.scalar(select(Platform.id).where(Platform.name == "p2")) is None
    assert status(queue, held) is None and status(queue, waiting) is None
    assert status(queue, others) == "queued", "another platform's jobs stay"
    cancelled = {m for (m,) in queue.rows(select(Event.message).where(Event.kind == "cancelled"))}
    assert cancelled == {"cancelled by cli (was sent)", "cancelled by cli (was queued)"}
    assert logged(queue, "platform_removed") == [
        "platform p2 removed with its 2 job(s), 2 of them cancelled; by cli"
    ]
    late = queue.post("/sendresults.php", server_token=token, jobid=str(held), resultdata="{}")
    assert late["errorcode"] == 2, "the server's result for a removed job is refused"


# -- server types and tags -------------------------------------------------------


def test_type_update_routes_new_jobs_by_its_new_tags(queue):
    client = queue.client_for(queue.platform("p2"))
    before = client.sendjob({"x": 1}, tags="java")
    assert "now has tags `c`, `java`" in cli(queue, "type", "update", "t-c",
                                             "--add-tags", "java").stdout  # fmt: skip
    after = client.sendjob({"x": 2}, tags="java")
    assert types_of(queue, after) == {"t-c", "t-java"}
    assert types_of(queue, before) == {"t-java"}, "a queued job keeps its routing"
    refused(queue, "type", "update", "t-c", "--remove-tags", "gpu", says="has no tag `gpu`")
    refused(queue, "type", "update", "t-c", "--add-tags", "nosuch", says="`nosuch` unrecognized")
    refused(queue, "type", "update", "t-c", says="Give --tags")
    out = cli(queue, "type", "update", "t-c", "--tags", "").stdout
    assert "now has no tags" in out and "has no tags: its servers get only jobs" in out
    assert logged(queue, "type_updated") == [
        "type t-c: tags c,java (was c); by cli",
        "type t-c: tags none (was c,java); by cli",
    ]


def test_type_remove_refuses_to_strand_jobs_and_moves_or_cancels_them(queue):
    client = queue.client_for(queue.platform("p2"))
    queue.server_type("t-gpu", ["gpu"])
    only_gpu = client.sendjob({"x": 1}, tags="gpu")
    shared = client.sendjob({"x": 2}, tags="c")  # t-c and t-java
    cli(queue, "server-token", "add", "gpus", "--type", "t-gpu")
    refused(queue, "type", "remove", "t-gpu", says="still used by server token `gpus`")
    cli(queue, "server-token", "revoke", "gpus")
    refused(queue, "type", "remove", "t-gpu", says="1 unfinished job(s)")
    refused(queue, "type", "remove", "t-gpu", "--cancel-jobs", "--move-jobs-to", "t-c",
            says="not both")  # fmt: skip
    refused(queue, "type", "remove", "t-gpu", "--move-jobs-to", "nosuch", says="does not exist")

    cli(queue, "type", "remove", "t-gpu", "--move-jobs-to", "t-java")
    assert types_of(queue, only_gpu) == {"t-java"} and status(queue, only_gpu) == "queued"
    assert poll(queue, queue.server_token("t-java", "javas"))["jobid"] == only_gpu
    cli(queue, "server-token", "revoke", "javas")  # the job it held is queued again
    # `shared` ran on t-c and t-java: it keeps one row, on t-c.
    cli(queue, "type", "remove", "t-java", "--move-jobs-to", "t-c")
    assert types_of(queue, shared) == {"t-c"} and types_of(queue, only_gpu) == {"t-c"}
    assert status(queue, only_gpu) == "queued"
    assert queue.rows(select(ServerType.name).order_by(ServerType.name)) == [("t-c",)]

    queue.server_type("t-gpu", ["gpu"])
    stranded = client.sendjob({"x": 3}, tags="gpu")
    cli(queue, "type", "remove", "t-gpu", "--cancel-jobs")
    assert status(queue, stranded) == "cancelled" and types_of(queue, stranded) == set()
    assert logged(queue, "type_removed") == [
        "type t-gpu removed; its 1 job(s) of its own: moved to t-java; by cli",
        "type t-java removed; its 1 job(s) of its own: moved to t-c; by cli",
        "type t-gpu removed; its 1 job(s) of its own: cancelled; by cli",
    ]


def test_tag_remove_refuses_forced_default_and_carried_tags_unless_told(queue):
    client = queue.client_for(queue.platform("p2"))
    cli(queue, "platform", "update", "p2", "--force-tag", "gpu")
    refused(queue, "tag", "remove", "gpu", says="Platform(s) `p2` force tag `gpu`")
    cli(queue, "platform", "update", "p2", "--no-force-tag")
    refused(queue, "tag", "remove", "c", says="default_tags", env={"GRADERQUEUE_DEFAULT_TAGS": "c"})

    kept = client.sendjob({"x": 1}, tags="java")
    refused(queue, "tag", "remove", "java", says="1 live job(s) carry tag `java`")
    cli(queue, "tag", "remove", "java", "--keep-jobs")
    assert queue.scalar(select(Tag.id).where(Tag.name == "java")) is None
    assert queue.rows(select(TypeTag.tag_id)) == queue.rows(
        select(Tag.id).where(Tag.name == "c")
    ) * 2, "t-c and t-java keep only c"  # fmt: skip
    assert status(queue, kept) == "queued" and types_of(queue, kept) == {"t-java"}

    queue.tag("java")
    queue.server_type("t-j", ["java"])
    doomed = client.sendjob({"x": 2}, tags="java")
    out = cli(queue, "tag", "remove", "java", "--cancel-jobs").stdout
    # Jobs carry tags by name: the one kept before carries this `java` too.
    assert "2 live job(s) cancelled" in out
    assert status(queue, doomed) == status(queue, kept) == "cancelled"
    assert logged(queue, "tag_removed") == [
        "tag java removed from 1 type(s); 1 live job(s) carried it, 0 cancelled; by cli",
        "tag java removed from 1 type(s); 2 live job(s) carried it, 2 cancelled; by cli",
    ]


def test_admin_remove_is_logged_and_refused_for_an_unknown_name(queue):
    cli(queue, "admin", "add", "bob", "--password-stdin", input="a-long-password\n")
    assert cli(queue, "admin", "remove", "bob").stdout.strip() == "Admin `bob` removed."
    assert queue.rows(select(AdminUser.username)) == []
    assert logged(queue, "admin_removed") == ["admin bob; by cli"]
    refused(queue, "admin", "remove", "bob", says="No admin `bob`.")
