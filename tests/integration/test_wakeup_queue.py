"""The queue's side of wake-ups, with real UDP sockets on 127.0.0.1."""

from __future__ import annotations

import socket
import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from gradercommon import wakeup_auth
from graderqueue.dispatch import wakeups
from graderqueue.queue import enqueue
from graderqueue.store.models import Event, Server, utcnow


class FakeServer:
    """A UDP wake-up endpoint: records datagrams, answers `ok` (or `no`) when allowed."""

    def __init__(self, answer: bytes = b"ok", hold: threading.Event | None = None) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.url = f"udp://127.0.0.1:{self.port}"
        self.answer = answer
        self.hold = hold
        self.received: list[bytes] = []
        self.got_one = threading.Event()
        self._stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self._stop:
            try:
                data, addr = self.sock.recvfrom(1024)
            except OSError:
                continue
            self.received.append(data)
            self.got_one.set()
            if self.hold is not None:
                self.hold.wait(10)
            self.sock.sendto(self.answer, addr)

    def close(self) -> None:
        self._stop = True
        self.thread.join(2)
        self.sock.close()


@pytest.fixture
def fakes():
    made: list[FakeServer] = []

    def make(**kw) -> FakeServer:  # type: ignore[no-untyped-def]
        made.append(FakeServer(**kw))
        return made[-1]

    yield make
    for fake in made:
        fake.close()


def dead_url() -> str:
    """A UDP port with nobody behind it."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return f"udp://127.0.0.1:{sock.getsockname()[1]}"


def add_server(queue, name, url, polled_ago=None, secret=""):  # type: ignore[no-untyped-def]
    server_id = queue.cert_server(name, "t-c", f"{abs(hash(name)) % 10**8:x}", f"CN={name}",
                                  wakeup_url=url, wakeup_secret=secret)  # fmt: skip
    if polled_ago is not None:
        with queue.db.transaction() as session:
            session.execute(
                update(Server)
                .where(Server.id == server_id)
                .values(last_poll_time=utcnow() - timedelta(seconds=polled_ago))
            )
    return server_id


def queue_jobs(queue, count: int) -> list[int]:  # type: ignore[no-untyped-def]
    client = queue.client_for(queue.platform(f"p{time.monotonic_ns()}"))
    return [client.sendjob({"n": i}, tags="c", jobusertaskid=f"w{i}") for i in range(count)]


@pytest.mark.queue_settings(wakeup_timeout_sec=0.5)
def test_sendjob_answers_before_the_wakeup_is_answered(sqlite_queue, fakes):
    queue = sqlite_queue
    hold = threading.Event()
    fake = fakes(hold=hold)
    add_server(queue, "idle", fake.url)
    queue_jobs(queue, 1)  # returns while the fake still holds its answer
    assert fake.got_one.wait(10), "the idle server was woken"
    assert fake.received == [b"wakeup"]
    hold.set()


def test_servers_polling_now_are_not_woken(sqlite_queue, fakes):
    queue = sqlite_queue
    listening, idle = fakes(), fakes()
    add_server(queue, "listening", listening.url, polled_ago=2)
    add_server(queue, "idle", idle.url, polled_ago=600)
    with queue.db.transaction() as session:
        queue_jobs_without_wakeup(queue, session)
    woken = wakeups.wake_for_types(queue.db, queue.settings, [type_id(queue)])
    # Two jobs wait: the listening server takes one, the idle one is woken.
    assert woken == 1
    assert listening.received == []
    assert idle.received == [b"wakeup"]


def queue_jobs_without_wakeup(queue, session) -> None:  # type: ignore[no-untyped-def]

    for i in range(2):
        enqueue.enqueue(
            session,
            enqueue.NewJob(f"j{i}", "{}", 0, "c", [type_id(queue)], f"nw{i}", "", 300),
            platform_id=None,
        )


def type_id(queue) -> int:  # type: ignore[no-untyped-def]
    from graderqueue.store.models import ServerType

    return queue.scalar(select(ServerType.id).where(ServerType.name == "t-c"))


@pytest.mark.parametrize(("strategy", "expected"), [("first", "recent"), ("last", "oldest")])
def test_strategies(sqlite_queue, fakes, strategy, expected):
    queue = sqlite_queue
    servers = {"oldest": fakes(), "recent": fakes()}
    add_server(queue, "oldest", servers["oldest"].url, polled_ago=3000)
    add_server(queue, "recent", servers["recent"].url, polled_ago=60)

    with queue.db.transaction() as session:
        enqueue.enqueue(session, enqueue.NewJob("j", "{}", 0, "c", [type_id(queue)], "s1", "", 300),
                     platform_id=None)  # fmt: skip
    settings = queue.settings.__class__(**{**queue.settings.__dict__, "wakeup_strategy": strategy})
    assert wakeups.wake_for_types(queue.db, settings, [type_id(queue)]) == 1
    woken = [name for name, fake in servers.items() if fake.received]
    assert woken == [expected]


@pytest.mark.queue_settings(wakeup_timeout_sec=0.3)
def test_failures_are_counted_and_a_second_pass_tries_any_server(sqlite_queue, fakes):
    queue = sqlite_queue
    broken = add_server(queue, "broken", dead_url(), polled_ago=600)
    fake = fakes()
    backup = add_server(queue, "backup", fake.url, polled_ago=700)
    with queue.db.transaction() as session:  # the backup failed before: first pass skips it
        session.execute(update(Server).where(Server.id == backup).values(wakeup_fails=3))

    with queue.db.transaction() as session:
        enqueue.enqueue(session, enqueue.NewJob("j", "{}", 0, "c", [type_id(queue)], "f1", "", 300),
                     platform_id=None)  # fmt: skip
    assert wakeups.wake_for_types(queue.db, queue.settings, [type_id(queue)]) == 1
    assert fake.received == [b"wakeup"]
    fails = dict(queue.rows(select(Server.name, Server.wakeup_fails)))
    assert fails == {"broken": 1, "backup": 0}
    events = queue.rows(select(Event.kind, Event.server_id))
    assert ("wakeup_failed", broken) in events


def test_signed_wakeups_for_servers_with_a_secret(sqlite_queue, fakes):
    queue = sqlite_queue
    fake = fakes()
    server_id = add_server(queue, "signed", fake.url, secret="s3cret")
    assert wakeups.wake_server(queue.db, queue.settings, server_id)
    datagram = fake.received[0]
    assert datagram.startswith(b"wakeup ")
    assert wakeup_auth.verify("s3cret", datagram, time.time(), set())
    assert not wakeup_auth.verify("other", datagram, time.time(), set())


def test_unhealthy_answer_counts_as_failure(sqlite_queue, fakes):
    queue = sqlite_queue
    fake = fakes(answer=b"no")
    server_id = add_server(queue, "sick", fake.url)
    assert not wakeups.wake_server(queue.db, queue.settings, server_id)
    assert queue.scalar(select(Server.wakeup_fails).where(Server.id == server_id)) == 1
