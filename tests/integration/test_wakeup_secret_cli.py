"""Wake-up secrets set and removed with the real CLI, and what the queue then sends over UDP."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import select, update

from gradercommon import wakeup_auth
from graderqueue.store.models import Server, ServerToken
from harness.processes import run_cli
from tests.integration.test_wakeup_queue import FakeServer

SECRET = "k3ep-Th1s-0ut-of-the-process-list"
WARNING = "Only this project's graderserver"


@pytest.fixture
def fake():  # type: ignore[no-untyped-def]
    server = FakeServer()
    yield server
    server.close()


def cli(queue, *args: str, check: bool = True, input: str | None = None):  # type: ignore[no-untyped-def]
    return run_cli(list(args), env=queue.env, check=check, input=input)


def add_cert_server(queue, url: str, *options: str):  # type: ignore[no-untyped-def]
    return cli(queue, "server", "add", "grader1", "--type", "t-c", "--ssl-serial", "0A1B",
               "--ssl-dn", "CN=Queue CA", "--wakeup-url", url, *options)  # fmt: skip


def secret_of(queue, model, name: str) -> str:  # type: ignore[no-untyped-def]
    return queue.scalar(select(model.wakeup_secret).where(model.name == name))


def assert_not_echoed(result) -> None:  # type: ignore[no-untyped-def]
    assert SECRET not in result.stdout
    assert SECRET not in result.stderr


@pytest.fixture
def queue(sqlite_queue):  # type: ignore[no-untyped-def]
    """SQLite is enough: nothing here depends on the database engine."""
    return sqlite_queue


def wake_up_once(queue, fake: FakeServer) -> bytes:  # type: ignore[no-untyped-def]
    """Make the real ``graderqueue cron`` retry the server's wake-up; the datagram it got."""
    fake.received.clear()
    with queue.db.transaction() as session:
        session.execute(update(Server).values(wakeup_fails=1))
    cli(queue, "cron")
    deadline = time.monotonic() + 10
    while not fake.received and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(fake.received) == 1
    return fake.received[0]


def test_secret_from_a_file_is_stored_warned_about_and_removable(queue, fake, tmp_path):
    secret_file = tmp_path / "wakeup.secret"
    secret_file.write_text(SECRET + "\n")  # as editors and `echo` write it
    added = add_cert_server(queue, fake.url, "--wakeup-secret-file", str(secret_file))
    assert_not_echoed(added)
    assert WARNING in added.stderr
    assert "graderqueue server update grader1 --no-wakeup-secret" in added.stderr
    assert secret_of(queue, Server, "grader1") == SECRET
    signed = wake_up_once(queue, fake)
    assert wakeup_auth.verify(SECRET, signed, time.time(), set())

    removed = cli(queue, "server", "update", "grader1", "--no-wakeup-secret")
    assert "plain wake-ups" in removed.stdout
    assert WARNING not in removed.stderr
    assert secret_of(queue, Server, "grader1") == ""
    # What the original grading server understands.
    assert wake_up_once(queue, fake) == b"wakeup"


def test_secret_from_stdin_on_update(queue, fake):
    add_cert_server(queue, fake.url)
    assert wake_up_once(queue, fake) == b"wakeup"
    result = cli(queue, "server", "update", "grader1", "--wakeup-secret-file", "-",
                 input=SECRET + "\n")  # fmt: skip
    assert_not_echoed(result)
    assert WARNING in result.stderr
    assert secret_of(queue, Server, "grader1") == SECRET
    assert wakeup_auth.verify(SECRET, wake_up_once(queue, fake), time.time(), set())


def test_server_token_secret_from_stdin_and_removal_reaches_its_servers(queue):
    result = cli(queue, "server-token", "add", "cloud", "--type", "t-c",
                 "--wakeup-secret-file", "-", input=SECRET)  # fmt: skip
    assert_not_echoed(result)
    assert WARNING in result.stderr
    assert len(result.stdout.strip()) >= 40  # stdout is the token alone, for scripts
    assert secret_of(queue, ServerToken, "cloud") == SECRET
    token_id = queue.scalar(select(ServerToken.id).where(ServerToken.name == "cloud"))
    with queue.db.transaction() as session:  # a server registered with the token
        session.add(Server(name="cloud-10.0.0.7", type_id=1, token_id=token_id, ip="10.0.0.7",
                           wakeup_url="udp://10.0.0.7:20000", wakeup_secret=SECRET))  # fmt: skip

    removed = cli(queue, "server-token", "update", "cloud", "--no-wakeup-secret")
    assert "1 registered server(s) updated: plain wake-ups" in removed.stdout
    assert secret_of(queue, ServerToken, "cloud") == ""
    assert secret_of(queue, Server, "cloud-10.0.0.7") == ""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["server", "update", "grader1"], "Nothing to change"),
        (
            ["server", "update", "grader1", "--no-wakeup-secret", "--wakeup-secret", "x"],
            "Give only one of",
        ),
        (["server", "update", "nosuch", "--no-wakeup-secret"], "Server `nosuch` does not exist."),
        (["server", "update", "grader1", "--wakeup-secret-file", "/nonexistent"], "nonexistent"),
        (["server", "update", "grader1", "--wakeup-secret", "two words"], "spaces"),
        (["server", "update", "grader1", "--wakeup-secret", "x" * 256], "too long"),
        (["server-token", "update", "nosuch", "--no-wakeup-secret"], "does not exist"),
    ],
)
def test_bad_updates_are_clear_errors_and_change_nothing(queue, fake, args, message):
    add_cert_server(queue, fake.url, "--wakeup-secret", "old-secret")
    before = queue.snapshot()
    result = cli(queue, *args, check=False)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert queue.snapshot() == before


def test_empty_stdin_is_refused(queue, fake):
    add_cert_server(queue, fake.url)
    result = cli(queue, "server", "update", "grader1", "--wakeup-secret-file", "-", input="",
                 check=False)  # fmt: skip
    assert result.returncode != 0
    assert "empty" in result.stderr
    assert secret_of(queue, Server, "grader1") == ""
