"""`graderqueue status` through the real CLI on both databases: a queue with a
bit of everything (waiting, running, held and failed jobs; a busy, a drained
and a lost server; a paused type; a failing delivery; an alert), as text and
as JSON."""

from __future__ import annotations

import json
import socket

from sqlalchemy import update

from graderqueue.protocol.submissions import parse
from graderqueue.queue import claim as claiming
from graderqueue.queue import complete, control, enqueue, states
from graderqueue.registry import operations
from graderqueue.registry.view import RegistryView
from graderqueue.store import events
from graderqueue.store.models import Platform, Server
from harness.processes import run_cli


def submit(queue, platform, name, priority=0):  # type: ignore[no-untyped-def]
    sub = parse(
        {
            "request": "sendjob",
            "jobdata": {"name": name},
            "tags": "c",
            "priority": priority,
            "jobusertaskid": name,
        },
        queue.settings,
    )
    view = RegistryView(queue.db, 0)
    return enqueue.submit(
        queue.db, view, queue.settings, [sub], platform_id=platform.id, received_via=""
    ).job_ids[0]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def claim(queue, server_id, type_id):  # type: ignore[no-untyped-def]
    with queue.db.transaction() as session:
        return claiming.claim(session, server_id, type_id, max_fails=2, skip_locked=False).id


def build_a_busy_queue(queue):  # type: ignore[no-untyped-def]
    platform = queue.platform("other")
    with queue.db.transaction() as session:
        session.execute(
            update(Platform)
            .where(Platform.id == platform.id)
            .values(weight=3, max_queued=50, return_url=f"http://127.0.0.1:{closed_port()}/r")
        )
    failing = submit(queue, platform, "fails", priority=9)
    submit(queue, platform, "completes", priority=8)
    submit(queue, platform, "runs", priority=7)
    submit(queue, platform, "waits-1")
    submit(queue, platform, "waits-2")
    held = submit(queue, platform, "held")
    g1 = queue.cert_server("g1", "t-c", "01", "CN=g1")
    queue.cert_server("g2", "t-c", "02", "CN=g2")
    g3 = queue.cert_server("g3", "t-java", "03", "CN=g3")
    with queue.db.transaction() as session:
        t_c = session.get(Server, g1).type_id
        control.act_many(session, [held], "hold", actor="test")
        operations.drain(session, "g2", on=True, actor="test")
        operations.pause(session, "t-java", on=True, actor="test")
        session.execute(update(Server).where(Server.id == g3).values(wakeup_fails=3))
        events.log_event(session, events.ALERT_SENT, message="jobs_stuck: jobs stuck (12)")
    for _ in range(2):  # fails twice: max_fails
        assert claim(queue, g1, t_c) == failing
        with queue.db.transaction() as session:
            complete.complete(session, g1, failing, {"errorcode": 2})
    states.fail_exhausted(queue.db, 2)
    completes = claim(queue, g1, t_c)
    with queue.db.transaction() as session:
        complete.complete(session, g1, completes, {"errorcode": 0})
    claim(queue, g1, t_c)  # "runs": g1 is busy
    # A real delivery attempt, to a port nobody listens on.
    tried = run_cli(["deliver", "--once"], env=queue.env)
    assert tried.stdout == "deliveries tried: 1 (1 pending)\n"


def test_status_of_an_empty_queue(queue):
    text = run_cli(["status"], env=queue.env).stdout
    assert "Dispatch: running" in text
    assert "Queue: 0 waiting (oldest -), 0 running, 0 held, 0 failed" in text
    assert "Delivery: 0 pending" in text
    assert "Alerts e-mailed in the last day: 0" in text
    summary = json.loads(run_cli(["status", "--json"], env=queue.env).stdout)
    assert [t["type"] for t in summary["queue"]["by_type"]] == ["t-c", "t-java"]
    assert summary["fair_share"][0]["platform"] == "platform1"


def test_status_shows_a_bit_of_everything(queue):
    build_a_busy_queue(queue)
    summary = json.loads(run_cli(["status", "--json"], env=queue.env).stdout)

    q = summary["queue"]
    assert (q["waiting"], q["running"], q["held"], q["failed"]) == (2, 1, 1, 1)
    assert q["oldest_waiting_sec"] >= 0
    assert q["finished_recently"] == 1
    assert {t["type"]: t["waiting"] for t in q["by_type"]} == {"t-c": 2, "t-java": 2}

    servers = {row["type"]: row for row in summary["servers"]["by_type"]}
    assert servers["t-c"] == {
        "type": "t-c",
        "registered": 2,
        "alive": 1,
        "busy": 1,
        "drained": 1,
        "asleep": 1,
        "lost": 0,
    }
    assert servers["t-java"]["lost"] == 1
    assert [(s["name"], s["wakeup_fails"]) for s in summary["servers"]["lost"]] == [("g3", 3)]

    assert summary["dispatch"] == {
        "paused": False,
        "paused_types": ["t-java"],
        "drained_servers": ["g2"],
    }
    delivery = summary["delivery"]
    assert delivery["pending"] == 1
    assert [(f["platform"], f["pending"], f["attempts"]) for f in delivery["failing"]] == [
        ("other", 1, 1)
    ]
    assert delivery["failing"][0]["last_error"]
    assert summary["alerts"]["recent"] == 1
    assert summary["alerts"]["latest"][0]["message"] == "jobs_stuck: jobs stuck (12)"
    shares = {p["platform"]: p for p in summary["fair_share"]}
    assert shares["other"] == {
        "platform": "other",
        "weight": 3,
        "queued": 2,
        "max_queued": 50,
        "disabled": False,
        "share": 1.0,
    }
    assert shares["platform1"]["queued"] == 0 and shares["platform1"]["share"] is None

    text = run_cli(["status"], env=queue.env).stdout
    lines = text.splitlines()
    assert "Dispatch: running; paused types: t-java" in text
    assert "  drained servers: g2" in lines
    assert "Queue: 2 waiting" in text and "1 running, 1 held, 1 failed" in text
    assert "1 finished in the last 5 min" in text
    assert any(line.split()[:3] == ["t-c", "2", "0"] or line.startswith("  t-c ") for line in lines)
    assert "lost (silent; wake-ups fail or a lease ran out): g3 (3 failed wake-ups)" in text
    assert "Delivery: 1 pending" in text and "failing: other: 1 pending" in text
    assert "Alerts e-mailed in the last day: 1" in text
    assert any(line.split() == ["other", "3", "2", "50", "100%"] for line in lines), text
    assert len(lines) <= 40, "one screen"

    with queue.db.transaction() as session:
        operations.pause(session, None, on=True, actor="test")
    paused = run_cli(["status"], env=queue.env).stdout
    assert "Dispatch: PAUSED for every type; paused types: t-java" in paused
    assert json.loads(run_cli(["status", "--json"], env=queue.env).stdout)["dispatch"]["paused"]
