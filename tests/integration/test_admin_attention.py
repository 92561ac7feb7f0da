"""What is wrong at a glance: lost servers, types nobody serves, the claim order,
failures counted when they happen, the attention strip and the registry page.
"""

from __future__ import annotations

import re
from datetime import timedelta

from graderqueue.admin import server_states
from graderqueue.admin.activity import activity
from graderqueue.admin.attention import attention_items
from graderqueue.admin.job_lists import JobFilter
from graderqueue.admin.queued_list import ClaimKey, claim_order_page
from graderqueue.admin.type_overview import type_overview
from graderqueue.admin.windows import window_by_key
from graderqueue.protocol.submissions import parse
from graderqueue.queue import claim as claiming
from graderqueue.queue import complete as completing
from graderqueue.queue import enqueue
from graderqueue.queue.states import fail_exhausted
from graderqueue.registry.view import RegistryView
from graderqueue.registry.workers import workers
from graderqueue.store import events
from graderqueue.store.models import Job, Server, ServerType, utcnow
from tests.integration.test_admin_pages import add_admin, log_in

LINKS = {
    "lost": "/admin/servers?state=lost",
    "types": "/t",
    "queued": "/q",
    "error": "/e",
    "deliveries": "/d",
    "done": "/f",
}


def submit(queue, priorities, tag="c"):  # type: ignore[no-untyped-def]
    """One job per priority, in this order; returns their ids."""
    subs = [
        parse(
            {
                "request": "sendjob",
                "jobdata": {"n": n},
                "tags": tag,
                "priority": p,
                "jobusertaskid": f"{tag}{n}",
            },
            queue.settings,
        )
        for n, p in enumerate(priorities)
    ]
    return enqueue.submit(
        queue.db,
        RegistryView(queue.db, 0),
        queue.settings,
        subs,
        platform_id=None,
        received_via="interface",
    ).job_ids


def server(queue, name, type_name="t-c", **fields):  # type: ignore[no-untyped-def]
    serial = name.encode().hex()  # any hexadecimal serial, one per server
    server_id = queue.cert_server(name, type_name, serial, f"CN={name}")
    with queue.db.transaction() as session:
        row = session.get(Server, server_id)
        for key, value in fields.items():
            setattr(row, key, value)
        return server_id, row.type_id


def claim(queue, server_id, type_id):  # type: ignore[no-untyped-def]
    with queue.db.transaction() as session:
        got = claiming.claim(session, server_id, type_id, max_fails=2, skip_locked=False)
        return got.id if got else None


def silence(queue, server_id, minutes):  # type: ignore[no-untyped-def]
    """The server last polled (and was registered) ``minutes`` ago: no sleeping in tests."""
    with queue.db.transaction() as session:
        row = session.get(Server, server_id)
        row.last_poll_time = utcnow() - timedelta(minutes=minutes)
        row.created_at = utcnow() - timedelta(minutes=minutes)


def states(queue):  # type: ignore[no-untyped-def]
    with queue.db.reading() as session:
        return {v.name: v for v in server_states.servers(session, queue.settings)}


def test_a_silent_server_is_lost_not_busy(queue):
    holder, type_id = server(queue, "holder")  # no wake-up URL: it must poll
    asleep, _ = server(queue, "asleep", wakeup_url="udp://127.0.0.1:9")
    drained, _ = server(queue, "drained", drained=True)
    submit(queue, [0])
    job_id = claim(queue, holder, type_id)
    assert states(queue)["holder"].state == server_states.BUSY
    for server_id in (holder, asleep, drained):
        silence(queue, server_id, 10)
    seen = states(queue)
    assert seen["holder"].state == server_states.LOST, "held a job, stopped polling"
    assert seen["holder"].held == 1 and not seen["holder"].live
    assert seen["asleep"].state == server_states.ASLEEP, "wakes on demand: not lost"
    assert seen["drained"].state != server_states.LOST, "stopped on purpose"
    with queue.db.transaction() as session:
        session.get(Server, asleep).wakeup_fails = 4
        # The holder's lease ran out: lost even with a working wake-up URL.
        session.get(Server, holder).wakeup_url = "udp://127.0.0.1:9"
        session.get(Job, job_id).lease_expires = utcnow() - timedelta(seconds=1)
    seen = states(queue)
    assert seen["asleep"].state == seen["holder"].state == server_states.LOST
    assert seen["holder"].lease_ran_out
    # The JSON API's server list says the same (one rule).
    with queue.db.reading() as session:
        listed = {w["name"]: w for w in workers(session, queue.settings, None)}
    assert listed["holder"]["lost"] and not listed["holder"]["alive"] and listed["holder"]["busy"]
    assert listed["asleep"]["lost"] and not listed["drained"]["lost"]
    silence(queue, holder, 1)  # within server_lost_after_sec (2 min): not yet
    assert states(queue)["holder"].state == server_states.BUSY


def test_types_without_a_live_server_are_flagged(queue):
    lone, _ = server(queue, "lone")
    submit(queue, [0, 0])
    submit(queue, [0], tag="java")  # only t-java, which has no server at all
    silence(queue, lone, 10)
    now = utcnow()
    with queue.db.transaction() as session:
        views = server_states.servers(session, queue.settings, now)
        types = {t.name: t for t in type_overview(session, views)}
        items = attention_items(
            session, queue.settings, views, list(types.values()), {"error": 0}, now, LINKS
        )
    assert types["t-c"].servers == 1 and types["t-c"].live == 0 and types["t-c"].no_live_server
    # c jobs may run on either type: t-java waits for 3 jobs and has no server.
    assert types["t-java"].no_server and types["t-java"].queued == 3
    assert types["t-c"].queued == 2 and types["t-c"].free_slots == 0
    assert types["t-c"].oldest_queued is not None
    keys = {i.key: i for i in items}
    assert {"lost-servers", "no-live-server-t-c", "no-live-server-t-java"} <= set(keys)
    assert "no server at all, 3 jobs waiting" in keys["no-live-server-t-java"].text
    assert keys["lost-servers"].href == "/admin/servers?state=lost"


def test_the_queued_list_is_the_claim_order(queue):
    server_id, type_id = server(queue, "g")
    submit(queue, [0, 5, 0, 5, 9, 0, 1])
    with queue.db.transaction() as session:
        # Merged over every type and paged two at a time: the same order.
        all_types = list(
            session.scalars(ServerType.__table__.select().with_only_columns(ServerType.id))
        )
        shown, after = [], None
        while True:
            page = claim_order_page(session, JobFilter(), all_types, after, limit=2)
            shown += [j.id for j in page.rows]
            if page.next is None:
                break
            after = ClaimKey.decode(page.next.encode())
        one_type = [j.id for j in claim_order_page(session, JobFilter(), [type_id]).rows]
    handed = [claim(queue, server_id, type_id) for _ in range(7)]
    assert shown == one_type == handed
    assert ClaimKey.decode("-3_-7_12") == ClaimKey(3, -7, 12)
    assert ClaimKey.decode("1_x_2") is None and ClaimKey.decode("9" * 30 + "_1_1") is None


def test_failures_count_when_they_happen(queue):
    server_id, type_id = server(queue, "g")
    submit(queue, [0])
    job_id = claim(queue, server_id, type_id)
    with queue.db.transaction() as session:
        completing.complete(session, server_id, job_id, {"errorcode": 2, "errormsg": "crash"})
    with queue.db.reading() as session:
        assert session.get(Job, job_id).status == "queued"
        figures = activity(session, window_by_key("15m"), utcnow())
    assert figures.failures == 1, "a failed result on a job still queued counts"
    assert figures.done == 0 and figures.gave_up == 0


def test_the_pages_show_it(sqlite_queue):
    queue = sqlite_queue
    add_admin(queue)
    holder, type_id = server(queue, "holder")
    submit(queue, [0, 3, 1])
    submit(queue, [0], tag="java")
    job_id = claim(queue, holder, type_id)
    silence(queue, holder, 10)
    client = queue.app.test_client()
    log_in(client)

    dashboard = client.get("/admin/").get_data(as_text=True)
    assert 'id="attention-lost-servers"' in dashboard and "1 lost server: holder" in dashboard
    assert 'id="attention-no-live-server-t-java"' in dashboard
    assert re.search(r'id="count-lost"><a [^>]*>1<', dashboard)

    servers = client.get("/admin/servers?state=lost").get_data(as_text=True)
    assert servers.count('<tr id="server-') == 1 and "badge st-lost" in servers
    assert "go back to the queue when their lease ends" in servers
    one = client.get(f"/admin/servers/{holder}").get_data(as_text=True)
    assert 'id="lost-note"' in one and "no wake-up URL" in one

    types = client.get("/admin/types").get_data(as_text=True)
    assert "no live server" in types and "no server" in types

    queued = client.get("/admin/jobs/queued?status=queued&type=t-c").get_data(as_text=True)
    ids = [int(i) for i in re.findall(r'<tr id="job-(\d+)"', queued)]
    # Priority 3 went to the holder; then priority 1 before 0.
    assert ids == [job_id + 1, job_id - 1]
    assert '<td class="types">t-c, t-java</td>' in queued
    with queue.db.transaction() as session:
        fails_exhausted = session.get(Job, ids[0])
        fails_exhausted.nb_fails = 2
    fail_exhausted(queue.db, max_fails=2)
    listed = client.get("/admin/jobs/queued?status=error").get_data(as_text=True)
    assert "in error since" in listed and "s ago" in listed

    reg = client.get("/admin/registry").get_data(as_text=True)
    assert queue.settings.key_name in reg and "BEGIN PUBLIC KEY" in reg
    assert "PRIVATE" not in reg


def test_job_page_attempts_and_grouped_events(sqlite_queue):
    queue = sqlite_queue
    add_admin(queue)
    server_id, type_id = server(queue, "g1")
    submit(queue, [0])
    job_id = claim(queue, server_id, type_id)
    with queue.db.transaction() as session:
        completing.complete(session, server_id, job_id, {"errorcode": 2, "errormsg": "x"})
        for _ in range(3):
            events.log_event(session, events.WAKEUP_FAILED, server_id=server_id, message="")
    client = queue.app.test_client()
    log_in(client)

    page = client.get(f"/admin/jobs/{job_id}").get_data(as_text=True)
    started = re.search(r'id="grading-started">(.*?)</td>', page).group(1)
    assert "not being graded now; 1 earlier attempt below" in started
    assert "failed result" in page and f'href="/admin/servers/{server_id}">g1</a>' in page
    assert claim(queue, server_id, type_id) == job_id
    page = client.get(f"/admin/jobs/{job_id}").get_data(as_text=True)
    assert page.count('<tr><td class="num">') >= 2 and "being graded" in page

    log = client.get("/admin/events").get_data(as_text=True)
    assert log.count('wakeup_failed</a> <span class="repeat">\u00d73</span>') == 1
    errors = client.get("/admin/events?severity=error").get_data(as_text=True)
    assert "error_in_result" in errors and "wakeup_failed</a>" not in errors
