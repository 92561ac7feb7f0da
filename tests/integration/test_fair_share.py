"""Fair share, the per-platform cap, and dispatch stopped by a drain or a pause,
on both databases, through the claim the polls use."""

from __future__ import annotations

from sqlalchemy import update

from graderqueue.config import Settings
from graderqueue.errors import QueueFull
from graderqueue.protocol.submissions import parse
from graderqueue.queue import claim as claiming
from graderqueue.queue import enqueue
from graderqueue.registry import operations
from graderqueue.registry.view import RegistryView
from graderqueue.store.models import Event, Platform, Server

FLOOD = 10_000


def submit(queue, platform_id, count, *, priority=0, tag="c", prefix="j"):  # type: ignore[no-untyped-def]
    """``count`` jobs of one sender in batches of 1,000 (one transaction each)."""
    settings: Settings = queue.settings
    view = RegistryView(queue.db, 3600)  # the tags and types do not change here: read once
    ids: list[int] = []
    for start in range(0, count, 1000):
        subs = [
            parse(
                {
                    "request": "sendjob",
                    "jobdata": {"n": n},
                    "tags": tag,
                    "priority": priority,
                    "jobusertaskid": f"{prefix}-{n}",
                },
                settings,
            )
            for n in range(start, min(count, start + 1000))
        ]
        queued = enqueue.submit(
            queue.db, view, settings, subs, platform_id=platform_id, received_via=""
        )
        ids += queued.job_ids
    return ids


def claim_n(queue, server_id, type_id, n):  # type: ignore[no-untyped-def]
    got = []
    for _ in range(n):
        with queue.db.transaction() as session:
            job = claiming.claim(session, server_id, type_id, max_fails=2, skip_locked=False)
        if job is None:
            break
        got.append(job.id)
    return got


def grader(queue, name="g1"):  # type: ignore[no-untyped-def]
    server_id = queue.cert_server(name, "t-c", "01", f"CN={name}")
    with queue.db.transaction() as session:
        return server_id, session.get(Server, server_id).type_id


def platform_id(queue, name):  # type: ignore[no-untyped-def]
    with queue.db.transaction() as session:
        return session.query(Platform).filter_by(name=name).one().id


def test_a_flood_does_not_starve_another_platform(queue):
    queue.platform("flood")
    queue.platform("small")
    flood, small = platform_id(queue, "flood"), platform_id(queue, "small")
    server_id, type_id = grader(queue)
    submit(queue, flood, FLOOD, prefix="f")
    first = claim_n(queue, server_id, type_id, 10)
    theirs = submit(queue, small, 5, prefix="s")
    got = claim_n(queue, server_id, type_id, 10)
    assert set(theirs) <= set(got), "the small platform's 5 jobs go out within the next 10"
    assert got[0::2] == theirs or got[1::2] == theirs, f"one for one, in turn: {got} {theirs}"
    assert all(j < theirs[0] for j in first)


def test_weights_share_in_proportion(queue):
    queue.platform("heavy")
    queue.platform("light")
    heavy, light = platform_id(queue, "heavy"), platform_id(queue, "light")
    with queue.db.transaction() as session:
        session.execute(update(Platform).where(Platform.id == heavy).values(weight=3))
    server_id, type_id = grader(queue)
    heavy_ids = set(submit(queue, heavy, 300, prefix="h"))
    submit(queue, light, 300, prefix="l")
    got = claim_n(queue, server_id, type_id, 100)
    share = sum(1 for j in got if j in heavy_ids)
    assert 70 <= share <= 80, f"weight 3 to 1: about 75 of 100, got {share}"


def test_priority_still_comes_first_and_one_sender_stays_in_arrival_order(queue):
    queue.platform("p")
    pid = platform_id(queue, "p")
    server_id, type_id = grader(queue)
    low = submit(queue, pid, 5, prefix="low")
    high = submit(queue, pid, 2, priority=9, prefix="high")
    assert claim_n(queue, server_id, type_id, 7) == high + low


def test_max_queued_refuses_jobs_beyond_the_cap(queue):
    queue.platform("capped")
    pid = platform_id(queue, "capped")
    with queue.db.transaction() as session:
        session.execute(update(Platform).where(Platform.id == pid).values(max_queued=3))
    submit(queue, pid, 3, prefix="ok")
    before = queue.snapshot()
    try:
        submit(queue, pid, 1, prefix="over")
    except QueueFull as refused:
        assert "limit is 3" in refused.message and refused.errorcode == 2
    else:
        raise AssertionError("a fourth job was queued over max_queued=3")
    assert queue.snapshot() == before
    # The same job sent again (dedup) is not a new one: the cap does not refuse it.
    submit(queue, pid, 1, prefix="ok")


def test_drain_and_pause_stop_hand_outs_but_not_submissions(queue):
    queue.platform("p")
    pid = platform_id(queue, "p")
    server_id, type_id = grader(queue)
    submit(queue, pid, 3)
    with queue.db.transaction() as session:
        assert operations.drain(session, "g1", on=True, actor="test") == []
    assert claim_n(queue, server_id, type_id, 1) == []
    with queue.db.transaction() as session:
        assert operations.drain(session, "g1", on=False, actor="test") == [type_id]
        operations.pause(session, "t-c", on=True, actor="test")
    assert claim_n(queue, server_id, type_id, 1) == []
    submit(queue, pid, 1, prefix="during-pause")
    with queue.db.transaction() as session:
        operations.pause(session, "t-c", on=False, actor="test")
        operations.pause(session, None, on=True, actor="test")
        stopped = operations.stopped(session)
    assert stopped.queue_paused and stopped.paused_types == [] and stopped.drained_servers == []
    assert claim_n(queue, server_id, type_id, 1) == []
    with queue.db.transaction() as session:
        assert type_id in operations.pause(session, None, on=False, actor="test")
    assert len(claim_n(queue, server_id, type_id, 10)) == 4
    with queue.db.transaction() as session:
        kinds = {e.kind for e in session.query(Event).all()}
    assert {"server_drained", "server_undrained", "dispatch_paused", "dispatch_resumed"} <= kinds
