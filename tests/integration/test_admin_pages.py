"""The queries behind the admin pages, and the pages themselves, on SQLite and MariaDB.

Paging must visit every matching row exactly once, in order, whatever the
filters and however small the per-page scan budget; dashboard counts must
be exact even when averages are sampled.
"""

from __future__ import annotations

import random
import re
from datetime import timedelta

import pytest

from graderqueue.admin import activity, live_queue, server_states
from graderqueue.admin.buckets import BucketCache
from graderqueue.admin.event_log import EventFilter, events_page
from graderqueue.admin.job_lists import NO_PLATFORM, JobFilter, done_jobs, live_jobs
from graderqueue.admin.keyset import Cursor
from graderqueue.admin.task_statistics import task_statistics
from graderqueue.admin.windows import window_by_key
from graderqueue.identity import passwords
from graderqueue.store.models import AdminUser, Event, Job, JobType, Result, Server, utcnow

STATUSES = ("queued", "sent", "error", "done")
PASSWORD = "s3cret-enough"


def add_admin(queue) -> None:  # type: ignore[no-untyped-def]
    with queue.db.transaction() as session:
        session.add(AdminUser(username="alice", password_hash=passwords.hash_password(PASSWORD)))


def log_in(client) -> None:  # type: ignore[no-untyped-def]
    page = client.get("/admin/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    form = {"username": "alice", "password": PASSWORD, "csrf_token": token}
    assert client.post("/admin/login", data=form).status_code == 302


def fill(queue, count: int = 160, seed: int = 7) -> list[Job]:  # type: ignore[no-untyped-def]
    """Jobs of every status, two platforms and none, two servers, with clashing times."""
    rng = random.Random(seed)
    p1 = queue.platform("alpha").id
    p2 = queue.platform("beta").id
    with queue.db.transaction() as session:
        servers = []
        for name in ("s1", "s2"):
            server = Server(name=name, type_id=1, wakeup_url="")
            session.add(server)
            session.flush()
            servers.append(server.id)
        base = utcnow() - timedelta(hours=2)
        rows = []
        for i in range(count):
            status = rng.choice(STATUSES)
            # Few distinct times: ties must be broken by id, never lose a row.
            received = base + timedelta(seconds=rng.randint(0, 40))
            job = Job(
                platform_id=rng.choice([p1, p2, None]),
                received_via="interface",
                name=rng.choice(["add", "mul", "sub"]) + f"-{i}",
                jobusertaskid=f"u{i}",
                dedup_key=None if status == "done" else f"u{i}",
                status=status,
                received_time=received,
                jobdata="{}",
                sent_to=rng.choice(servers) if status in ("sent", "done") else None,
                grading_start_time=received + timedelta(seconds=2)
                if status in ("sent", "done")
                else None,
                grading_end_time=base + timedelta(seconds=60 + rng.randint(0, 40))
                if status == "done"
                else None,
            )
            session.add(job)
            session.flush()
            session.add(JobType(job_id=job.id, type_id=1, status=status, priority=0))
            if status == "done":
                session.add(Result(job_id=job.id, resultdata="{}", task_name=job.name[:3]))
            rows.append(job)
        for i in range(count):
            session.add(
                Event(
                    time=base + timedelta(seconds=rng.randint(0, 30)),
                    kind=rng.choice(["error_timeout", "wakeup_failed", "requeued"]),
                    job_id=rng.choice(rows).id,
                    server_id=rng.choice([*servers, None]),
                    message=f"event {i} {'needle' if i % 9 == 0 else ''}",
                )
            )
        session.flush()
        session.expunge_all()
    return rows


def walk(queue, lister, filters, limit: int, scan_limit: int) -> list[int]:  # type: ignore[no-untyped-def]
    """Every page from the first on, following ``next``; the ids in order."""
    seen: list[int] = []
    cursor = None
    for _ in range(1000):
        with queue.db.transaction() as session:
            page = lister(session, filters, cursor, limit=limit, scan_limit=scan_limit)
        assert len(page.rows) <= limit
        seen.extend(row.id for row in page.rows)
        if page.next is None:
            return seen
        assert cursor is None or page.next < cursor, "pages always move on"
        cursor = page.next
    raise AssertionError("paging did not end")


def expected(rows, keep, key) -> list[int]:  # type: ignore[no-untyped-def]
    chosen = [r for r in rows if keep(r)]
    return [r.id for r in sorted(chosen, key=lambda r: (key(r), r.id), reverse=True)]


@pytest.mark.parametrize("limit,scan_limit", [(7, 5), (7, 50), (50, 1000)])
def test_job_lists_visit_every_match_once_in_order(queue, limit, scan_limit):
    rows = fill(queue)
    live = [r for r in rows if r.status != "done"]
    done = [r for r in rows if r.status == "done"]
    cases = [
        (JobFilter(), lambda r: True),
        (JobFilter(status="sent"), lambda r: r.status == "sent"),
        (JobFilter(name="mul"), lambda r: r.name.startswith("mul")),
        (JobFilter(name="1"), lambda r: "1" in r.name),
        (JobFilter(platform_id=NO_PLATFORM), lambda r: r.platform_id is None),
        (JobFilter(platform_id=rows[0].platform_id or 2), None),
        (JobFilter(server_id=1, name="a"), lambda r: r.sent_to == 1 and "a" in r.name),
        (JobFilter(name="no such job"), lambda r: False),
    ]
    for filters, keep in cases:
        if keep is None:
            keep = lambda r, p=filters.platform_id: r.platform_id == p  # noqa: E731
        want = expected(
            live, lambda r, k=keep, f=filters: k(r) and f.status in ("", r.status), _received
        )
        assert walk(queue, live_jobs, filters, limit, scan_limit) == want, filters
        if not filters.status:
            want = expected(done, keep, _ended)
            assert walk(queue, done_jobs, filters, limit, scan_limit) == want, filters


def _received(job):  # type: ignore[no-untyped-def]
    return job.received_time


def _ended(job):  # type: ignore[no-untyped-def]
    return job.grading_end_time


def test_date_ranges_bound_received_and_finish_times(queue):
    rows = fill(queue)
    live = [r for r in rows if r.status != "done"]
    done = [r for r in rows if r.status == "done"]
    middle = sorted(r.received_time for r in live)[len(live) // 2]
    filters = JobFilter(since=middle)
    got = walk(queue, live_jobs, filters, 5, 8)
    assert got == expected(live, lambda r: r.received_time >= middle, _received)
    end = sorted(r.grading_end_time for r in done)[len(done) // 3]
    filters = JobFilter(until=end)
    assert walk(queue, done_jobs, filters, 5, 8) == expected(
        done, lambda r: r.grading_end_time <= end, _ended
    )


def test_event_log_pages_through_every_filter(queue):
    fill(queue)
    with queue.db.transaction() as session:
        events = session.query(Event).all()
        session.expunge_all()
    cases = [
        (EventFilter(), lambda e: True),
        (EventFilter(kind="requeued"), lambda e: e.kind == "requeued"),
        (EventFilter(server_id=2), lambda e: e.server_id == 2),
        (EventFilter(server_id=2, kind="wakeup_failed"), None),
        (EventFilter(text="needle"), lambda e: "needle" in e.message),
        (EventFilter(job_id=events[0].job_id, kind=events[0].kind), None),
    ]
    for filters, keep in cases:
        if keep is None:
            keep = lambda e, f=filters: (  # noqa: E731
                f.kind in ("", e.kind)
                and f.server_id in (None, e.server_id)
                and f.job_id in (None, e.job_id)
            )
        want = expected(events, keep, lambda e: e.time)
        assert walk(queue, events_page, filters, 6, 9) == want, filters


def test_a_rare_match_is_found_by_searching_older(sqlite_queue):
    rows = fill(sqlite_queue, count=120)
    done = sorted((r for r in rows if r.status == "done"), key=lambda r: (_ended(r), r.id))
    target = done[0]  # the oldest done job: many scan budgets away
    with sqlite_queue.db.transaction() as session:
        page = done_jobs(session, JobFilter(name=target.name), limit=10, scan_limit=4)
    assert page.rows == [] and page.searched_to is not None and page.next == page.searched_to
    assert walk(sqlite_queue, done_jobs, JobFilter(name=target.name), 10, 4) == [target.id]


def test_list_pages_link_to_older_pages_and_report_bad_filters(sqlite_queue):
    fill(sqlite_queue, count=400)
    add_admin(sqlite_queue)
    client = sqlite_queue.app.test_client()
    log_in(client)
    html = client.get("/admin/jobs/done").get_data(as_text=True)
    older = re.search(r'class="older" href="([^"]+)"', html)
    assert older, "more than one page of done jobs"
    second = client.get(older.group(1).replace("&amp;", "&")).get_data(as_text=True)
    first_ids = set(re.findall(r'id="job-(\d+)"', html))
    second_ids = set(re.findall(r'id="job-(\d+)"', second))
    assert first_ids and second_ids and not first_ids & second_ids

    answer = client.get("/admin/jobs/queued?since=yesterday&server=abc&status=lost")
    text = answer.get_data(as_text=True)
    assert answer.status_code == 200
    assert "since: &#39;yesterday&#39; is not a date" in text
    assert "server: &#39;abc&#39; is not a number" in text
    assert "status: &#39;lost&#39; is not one of" in text

    assert client.get("/admin/jobs/queued?id=%2342").headers["Location"] == "/admin/jobs/42"
    assert client.get("/admin/jobs/999999").status_code == 404
    assert client.get("/admin/jobs/1/result.json").status_code in (200, 404)
    download = client.get("/admin/jobs/1/job.json")
    assert download.status_code == 200 and download.get_data(as_text=True) == "{}"
    assert "attachment" in download.headers["Content-Disposition"]


def _done_job(session, end, wait: float, grading: float, task: str = "t", ok: bool = True):  # type: ignore[no-untyped-def]
    start = end - timedelta(seconds=grading)
    job = Job(
        name=task,
        jobusertaskid=f"{task}-{end.timestamp()}",
        status="done",
        received_time=start - timedelta(seconds=wait),
        grading_start_time=start,
        grading_end_time=end,
        jobdata="{}",
        nb_fails=1 if not ok else 0,
    )
    session.add(job)
    session.flush()
    session.add(
        Result(
            job_id=job.id,
            resultdata="{}",
            is_success=ok,
            cpu_time_ms=100,
            real_time_ms=150,
            task_name=task,
            language="c" if ok else "py",
        )
    )


def test_dashboard_figures_are_exact_and_survive_sampling(queue, monkeypatch):
    now = utcnow()
    with queue.db.transaction() as session:
        for i in range(90):
            _done_job(session, now - timedelta(seconds=20 + i * 30), wait=2.0, grading=4.0)
        _done_job(session, now - timedelta(days=3), wait=1, grading=1)  # outside 1 day
    window = window_by_key("1d")
    with queue.db.transaction() as session:
        exact = activity.activity(session, window, now)
    assert exact.done == 90 and exact.sampled == 90
    assert exact.wait_avg == pytest.approx(2.0, abs=1e-3)
    assert exact.grading_avg == pytest.approx(4.0, abs=1e-3)
    assert exact.per_minute == pytest.approx(90 / (exact.seconds / 60))
    assert sum(b.done for b in exact.buckets) == 90

    # About 20 rows per bar, where a bar holds some 60: forces sampling.
    monkeypatch.setattr(activity, "SAMPLE_ROWS", 20 * window.buckets)
    cache = BucketCache()
    with queue.db.transaction() as session:
        sampled = activity.activity(session, window, now, cache)
    assert sampled.done == 90, "counts stay exact"
    assert 0 < sampled.sampled < 90
    assert sampled.wait_avg == pytest.approx(2.0, abs=1e-3)
    assert sampled.failures == pytest.approx(0)

    # Finished bars come from the cache: a job slipped into one is not seen.
    with queue.db.transaction() as session:
        _done_job(session, now - timedelta(hours=5), wait=1, grading=1)
        again = activity.activity(session, window, now, cache)
        fresh = activity.activity(session, window, now)
    assert again.done == 90 and fresh.done == 91


def test_live_counts_types_and_server_states(queue):
    rows = fill(queue)
    with queue.db.transaction() as session:
        counts = live_queue.live_counts(session)
        by_type = live_queue.counts_by_type(session)
        session.get(Server, 1).last_poll_time = utcnow()
        session.get(Server, 2).wakeup_fails = 3
        session.get(Server, 2).wakeup_url = "udp://127.0.0.1:9"
    for status in ("queued", "sent", "error"):
        assert counts[status] == sum(r.status == status for r in rows)
    t_c = next(t for t in by_type if t.name == "t-c")
    assert (t_c.queued, t_c.sent, t_c.error) == (counts["queued"], counts["sent"], counts["error"])
    with queue.db.transaction() as session:
        servers = {s.name: s for s in server_states.servers(session, queue.settings)}
    holding = {
        name: sum(r.status == "sent" and r.sent_to == i for r in rows)
        for i, name in ((1, "s1"), (2, "s2"))
    }
    assert servers["s1"].held == holding["s1"]
    assert servers["s1"].state == ("busy" if holding["s1"] else "polling")
    assert servers["s2"].state == ("busy" if holding["s2"] else "unreachable")
    assert server_states.server_state(0, None, 0, utcnow()) == "asleep"


def test_task_statistics_group_and_average(queue):
    now = utcnow()
    with queue.db.transaction() as session:
        for i in range(4):
            _done_job(session, now - timedelta(minutes=i + 1), 3.0, 1.0, task="alpha", ok=i != 0)
        _done_job(session, now - timedelta(minutes=2), 1.0, 1.0, task="beta")
        _done_job(session, now - timedelta(days=2), 1.0, 1.0, task="old")
    with queue.db.transaction() as session:
        stats = task_statistics(session, "task_name", now - timedelta(hours=1), now)
        by_language = task_statistics(session, "language", now - timedelta(days=3), now)
    assert stats.total == 5 and not stats.truncated
    alpha, beta = stats.rows
    assert (alpha.key, alpha.count, alpha.success, alpha.fails) == ("alpha", 4, 3, 1)
    assert alpha.success_rate == pytest.approx(0.75)
    assert alpha.wait_avg == pytest.approx(3.0, abs=1e-3)
    assert alpha.total_avg == pytest.approx(4.0, abs=1e-3)
    assert alpha.cpu_avg_ms == pytest.approx(100)
    assert (beta.key, beta.count) == ("beta", 1)
    assert [(r.key, r.count) for r in by_language.rows] == [("c", 5), ("py", 1)]


def test_the_statistics_page_keeps_its_answer_until_asked_to_refresh(sqlite_queue):
    add_admin(sqlite_queue)
    client = sqlite_queue.app.test_client()
    log_in(client)
    now = utcnow()

    def jobs_counted(path: str) -> str:
        html = client.get(path).get_data(as_text=True)
        return re.search(r'id="stats-note">([\d,]+) jobs', html).group(1)  # type: ignore[union-attr]

    with sqlite_queue.db.transaction() as session:
        _done_job(session, now - timedelta(minutes=5), 1.0, 1.0, task="alpha")
    assert jobs_counted("/admin/stats?window=1d") == "1"
    with sqlite_queue.db.transaction() as session:
        _done_job(session, now - timedelta(minutes=4), 1.0, 1.0, task="beta")
    # A day's answer is kept for minutes: the new job shows only on refresh.
    assert jobs_counted("/admin/stats?window=1d") == "1"
    assert jobs_counted("/admin/stats?window=1d&group=language") == "2", "one answer per group"
    assert jobs_counted("/admin/stats?window=1d&refresh=1") == "2"
    assert jobs_counted("/admin/stats?window=1d") == "2"


def test_cursor_round_trips_and_rejects_garbage():
    cursor = Cursor(utcnow(), 42)
    assert Cursor.decode(cursor.encode()) == cursor
    for bad in (None, "", "x", "2026-13-01T00:00:00_1", "2026-01-01T00:00:00_x"):
        assert Cursor.decode(bad) is None
