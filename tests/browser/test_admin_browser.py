"""The admin interface in a real headless Chromium, against the queue under gunicorn.

Each test does what an admin does: log in, watch a job go through the
queue, filter lists, wake a server, requeue and cancel, send a job. Every
page visited is saved as a screenshot in test-artifacts/screenshots/.
"""

from __future__ import annotations

import json
import re

import pytest
import requests
from sqlalchemy import select

from graderqueue.registry import actions as registry
from graderqueue.store.models import Event, Job, JobStatus, JobType
from tests.browser.conftest import ADMIN, PASSWORD, AdminSite, UdpResponder

pytestmark = pytest.mark.slow

TASKGRADER_RESULT = {
    "errorcode": 0,
    "errormsg": "ok",
    "jobdata": {
        "executions": [
            {
                "testsReports": [
                    {
                        "execution": {"timeTakenMs": 12, "realTimeTakenMs": 20},
                        "checker": {"stdout": {"data": "100"}},
                    }
                ]
            }
        ]
    },
}


class GradingServer:
    """A grading server speaking the protocol over HTTP with requests, as the real one does."""

    def __init__(self, site: AdminSite, type_name: str = "t-c") -> None:
        self.url = site.url
        self.token = site.queue.server_token(type_name)

    def poll(self) -> dict:
        answer = requests.post(
            self.url + "/poll.php", data={"server_token": self.token, "nbtasks": "0"}, timeout=30
        )
        return answer.json()

    def send_result(self, job_id: int, result: dict) -> dict:
        answer = requests.post(
            self.url + "/sendresults.php",
            data={
                "server_token": self.token,
                "jobid": str(job_id),
                "resultdata": json.dumps(result),
            },
            timeout=30,
        )
        return answer.json()


def row(page, job_id: int):  # type: ignore[no-untyped-def]
    return page.locator(f"#job-{job_id}")


def test_logged_out_visitor_is_sent_to_the_login_page(page, site: AdminSite):
    for path in ("/admin/", "/admin/jobs/done", "/admin/servers", "/admin/jobs/1"):
        page.goto(site.at(path))
        assert re.search(r"/admin/login\?next=", page.url), page.url
        assert page.locator("form.login").is_visible()
    site.shot(page, "login")

    page.fill("input[name=username]", ADMIN)
    page.fill("input[name=password]", "not the password")
    page.click("form.login button[type=submit]")
    assert page.locator(".flash.error").inner_text() == "Wrong user name or password."
    assert "/admin/login" in page.url

    # A correct login goes on to the page first asked for.
    page.fill("input[name=password]", PASSWORD)
    page.click("form.login button[type=submit]")
    page.wait_for_url(re.compile(r".*/admin/jobs/1$"))
    assert "No job #1" in page.content()


def test_a_job_appears_is_claimed_and_completes(page, site: AdminSite):
    platform = site.queue.platform("contest")
    client = site.queue.client_for(platform, url=site.url)
    grader = GradingServer(site)
    site.log_in(page)
    site.shot(page, "dashboard-empty")

    job_id = client.sendjob(
        {"taskPath": "/tasks/add", "extraParams": {"solutionLanguage": "c"}},
        jobname="add-alice",
        tags="c",
        priority=3,
    )
    page.goto(site.at("/admin/jobs/queued"))
    assert "add-alice" in row(page, job_id).inner_text()
    assert row(page, job_id).locator(".badge").inner_text() == "queued"
    assert page.locator("#count-queued").count() == 0  # the dashboard's, not this page's
    site.shot(page, "jobs-queued")

    page.goto(site.at("/admin/"))
    assert page.locator("#count-queued").inner_text() == "1"

    polled = grader.poll()
    assert polled["jobid"] == job_id
    page.goto(site.at("/admin/jobs/queued"))
    assert row(page, job_id).locator(".badge").inner_text() == "sent"
    page.goto(site.at("/admin/servers"))
    servers = page.locator("#servers").inner_text()
    assert "busy" in servers and "token token1" in servers

    assert grader.send_result(job_id, TASKGRADER_RESULT)["errorcode"] == 0
    page.goto(site.at("/admin/jobs/queued"))
    assert row(page, job_id).count() == 0
    page.goto(site.at("/admin/jobs/done"))
    done = row(page, job_id).inner_text()
    assert "add-alice" in done and "passed" in done and "add" in done
    site.shot(page, "jobs-done")

    page.click(f"#job-{job_id} a")
    page.wait_for_url(re.compile(rf".*/admin/jobs/{job_id}$"))
    assert json.loads(page.locator("#jobdata").inner_text())["taskPath"] == "/tasks/add"
    assert json.loads(page.locator("#resultdata").inner_text()) == TASKGRADER_RESULT
    assert page.locator(".fields .badge.ok").inner_text() == "passed"  # the verdict
    assert page.locator("button", has_text="Requeue").count() == 0  # done: nothing to requeue
    site.shot(page, "job-done")

    page.goto(site.at("/admin/?window=15m"))
    assert page.locator("#count-done").inner_text() == "1"
    assert page.locator("svg.chart").count() == 6
    site.shot(page, "dashboard")


def test_filters_narrow_the_lists(page, site: AdminSite):
    first = site.queue.client_for(site.queue.platform("first"), url=site.url)
    second = site.queue.client_for(site.queue.platform("second"), url=site.url)
    grader = GradingServer(site)
    names = {}
    for i in range(4):
        names[first.sendjob({"n": i}, jobname=f"alpha-{i}", tags="c")] = f"alpha-{i}"
        names[second.sendjob({"n": i}, jobname=f"beta-{i}", tags="c")] = f"beta-{i}"
    graded = grader.poll()["jobid"]
    grader.send_result(graded, TASKGRADER_RESULT)
    site.log_in(page)

    page.goto(site.at("/admin/jobs/queued"))
    assert page.locator("#jobs tbody tr").count() == 7
    page.fill("form.filters input[name=name]", "beta")
    site.submit(page, "form.filters button[type=submit]")
    shown = page.locator("#jobs tbody td.name").all_inner_texts()
    assert sorted(shown) == sorted(n for j, n in names.items() if "beta" in n and j != graded)
    site.shot(page, "jobs-queued-filtered")

    page.goto(site.at("/admin/jobs/queued"))
    page.select_option("form.filters select[name=platform]", label="first")
    site.submit(page, "form.filters button[type=submit]")
    shown = page.locator("#jobs tbody td.name").all_inner_texts()
    assert shown and all(name.startswith("alpha") for name in shown)

    page.goto(site.at("/admin/jobs/queued?status=sent"))
    assert page.locator("#jobs tbody tr").count() == 0
    page.goto(site.at("/admin/jobs/queued?status=queued"))
    assert page.locator("#jobs tbody tr").count() == 7

    # An id goes straight to that job's page.
    page.goto(site.at("/admin/jobs/done"))
    page.fill("form.filters input[name=id]", str(graded))
    site.submit(page, "form.filters button[type=submit]")
    page.wait_for_url(re.compile(rf".*/admin/jobs/{graded}$"))

    # A date range before any job finished shows nothing; one around now shows the job.
    page.goto(site.at("/admin/jobs/done"))
    page.fill("form.filters input[name=until]", "2001-01-01T00:00:00")
    site.submit(page, "form.filters button[type=submit]")
    assert page.locator("#jobs").count() == 0
    assert "with these filters" in page.locator("p.empty").inner_text()
    page.goto(site.at("/admin/jobs/done"))
    page.fill("form.filters input[name=since]", "2001-01-01T00:00:00")
    page.select_option("form.filters select[name=server]", index=1)
    site.submit(page, "form.filters button[type=submit]")
    assert page.locator("#jobs tbody tr").count() == 1
    assert names[graded] in page.locator("#jobs").inner_text()

    page.goto(site.at("/admin/events"))
    site.shot(page, "events")


def test_wake_up_button_wakes_the_server(page, site: AdminSite, udp_responder: UdpResponder):
    with site.queue.db.transaction() as session:
        awake = registry.add_server(
            session,
            "grader-awake",
            "t-c",
            ssl_serial="0A",
            ssl_dn="CN=Test CA",
            wakeup_url=udp_responder.url,
        ).id
        registry.add_server(
            session,
            "grader-gone",
            "t-java",
            ssl_serial="0B",
            ssl_dn="CN=Test CA",
            wakeup_url="udp://127.0.0.1:9",  # discard port: nobody answers
        )
    site.log_in(page)
    page.goto(site.at("/admin/servers"))
    site.shot(page, "servers")

    page.click(f"#server-{awake} button:has-text('Wake up')")
    page.wait_for_url(re.compile(r".*/admin/servers$"))
    assert "grader-awake woke up" in page.locator(".flash.ok").inner_text()
    assert udp_responder.got.wait(5)
    assert udp_responder.received[0].startswith(b"wakeup")
    assert page.locator(f"#server-{awake} .wakeup-fails").inner_text() == "0"

    gone = page.locator("#servers tr", has_text="grader-gone")
    gone.locator("button:has-text('Wake up')").click()
    assert "did not answer" in page.locator(".flash.error").inner_text()
    gone = page.locator("#servers tr", has_text="grader-gone")
    assert gone.locator(".wakeup-fails").inner_text() == "1"
    assert gone.locator(".badge").inner_text() == "unreachable"
    site.shot(page, "servers-after-wakeup")


def test_a_post_without_the_csrf_token_is_refused(page, site: AdminSite):
    client = site.queue.client_for(site.queue.platform("p"), url=site.url)
    job_id = client.sendjob({"x": 1}, jobname="guarded", tags="c")
    site.log_in(page)

    # The browser's own session cookie, but no token: refused, nothing changed.
    for form in ({}, {"csrf_token": "forged"}):
        answer = page.request.post(site.at(f"/admin/jobs/{job_id}/cancel"), form=form)
        assert answer.status == 400
        assert "CSRF" in answer.text()
    with site.queue.db.transaction() as session:
        assert session.get(Job, job_id) is not None

    # A real form with its hidden token removed is refused the same way.
    page.goto(site.at(f"/admin/jobs/{job_id}"))
    page.evaluate("document.querySelectorAll('input[name=csrf_token]').forEach(e => e.remove())")
    page.click("button:has-text('Requeue')")
    assert page.locator("h1").inner_text() == "Bad Request"
    site.shot(page, "csrf-refused")


def test_requeue_and_cancel_from_the_job_page(page, site: AdminSite):
    client = site.queue.client_for(site.queue.platform("p"), url=site.url)
    broken = client.sendjob({"x": 1}, jobname="broken", tags="c")
    doomed = client.sendjob({"x": 2}, jobname="doomed", tags="c")
    with site.queue.db.transaction() as session:  # as cron leaves a job that failed too often
        job = session.get(Job, broken)
        job.status, job.nb_fails = JobStatus.ERROR, 2
        for jt in session.scalars(select(JobType).where(JobType.job_id == broken)):
            jt.status = JobStatus.ERROR
    site.log_in(page)

    page.goto(site.at(f"/admin/jobs/{broken}"))
    assert page.locator("h1 .badge").inner_text() == "error"
    site.shot(page, "job-error")
    page.click("button:has-text('Requeue')")
    assert "back in the queue" in page.locator(".flash.ok").inner_text()
    assert page.locator("h1 .badge").inner_text() == "queued"
    assert "requeued by admin alice" in page.locator("#job-events").inner_text()
    with site.queue.db.transaction() as session:
        assert session.get(Job, broken).nb_fails == 0
        statuses = session.scalars(select(JobType.status).where(JobType.job_id == broken)).all()
        assert statuses and set(statuses) == {JobStatus.QUEUED}

    page.goto(site.at(f"/admin/jobs/{doomed}"))
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("button:has-text('Cancel')")
    page.wait_for_url(re.compile(rf".*/admin/jobs/{doomed}$"))
    assert f"Job #{doomed} cancelled" in page.locator(".flash.ok").inner_text()
    assert page.locator("h1 .badge").inner_text() == "cancelled"
    page.goto(site.at("/admin/jobs/queued"))
    assert row(page, doomed).count() == 0, "a cancelled job has left the queue"
    with site.queue.db.transaction() as session:
        assert session.get(Job, doomed).status == JobStatus.CANCELLED
        statuses = session.scalars(select(JobType.status).where(JobType.job_id == doomed)).all()
        assert set(statuses) == {JobStatus.CANCELLED}
        kinds = session.scalars(select(Event.kind).where(Event.job_id == doomed)).all()
        assert kinds == ["cancelled"]
    page.goto(site.at(f"/admin/events?job={doomed}"))
    assert "cancelled by admin alice" in page.locator("#events").inner_text()


def test_send_a_job_and_a_solution_file(page, site: AdminSite, tmp_path):
    site.log_in(page)
    page.goto(site.at("/admin/send"))
    site.shot(page, "send")
    form = page.locator("#send-job")
    form.locator("textarea[name=jobdata]").fill('{"taskPath": "/tasks/echo", "x": [1, 2]}')
    form.locator("input[name=jobname]").fill("from-the-form")
    form.locator("input[name=tags]").fill("c")
    form.locator("button[type=submit]").click()
    page.wait_for_url(re.compile(r".*/admin/jobs/\d+$"))
    assert "Queued as job #" in page.locator(".flash.ok").inner_text()
    assert json.loads(page.locator("#jobdata").inner_text()) == {
        "taskPath": "/tasks/echo",
        "x": [1, 2],
    }
    assert "interface" in page.content()

    solution = tmp_path / "sol.py"
    solution.write_text("print(input())\n")
    page.goto(site.at("/admin/send"))
    form = page.locator("#send-solution")
    form.locator("input[name=taskpath]").fill("/tasks/echo")
    form.locator("input[name=lang]").fill("py")
    form.locator("input[name=solfile]").set_input_files(str(solution))
    form.locator("input[name=copies]").fill("2")
    form.locator("button[type=submit]").click()
    page.wait_for_url(re.compile(r".*/admin/jobs/\d+$"))
    assert re.search(r"Queued as jobs #\d+, #\d+\.", page.locator(".flash.ok").inner_text())
    params = json.loads(page.locator("#jobdata").inner_text())["extraParams"]
    assert params["solutionFilename"] == "sol.py"
    assert params["solutionContent"] == "print(input())\n"
    site.shot(page, "job-sent")

    # A refused request keeps what was typed and says why.
    page.goto(site.at("/admin/send"))
    form = page.locator("#send-job")
    form.locator("textarea[name=jobdata]").fill("{not json")
    form.locator("button[type=submit]").click()
    assert "Error while decoding job JSON" in page.locator(".flash.error").inner_text()
    assert page.locator("#send-job textarea[name=jobdata]").input_value() == "{not json"


def test_statistics_and_logout(page, site: AdminSite):
    client = site.queue.client_for(site.queue.platform("p"), url=site.url)
    grader = GradingServer(site)
    for i in range(3):
        client.sendjob(
            {"taskPath": f"/tasks/t{i % 2}", "extraParams": {"solutionLanguage": "c"}},
            jobname=f"s{i}",
            tags="c",
        )
        grader.send_result(grader.poll()["jobid"], TASKGRADER_RESULT)
    site.log_in(page)
    page.goto(site.at("/admin/stats?window=15m&group=task_name"))
    table = page.locator("#stats").inner_text()
    assert "t0" in table and "t1" in table
    assert page.locator("#stats tbody tr").first.locator("td.num").first.inner_text() == "2"
    site.shot(page, "stats")

    page.click("header .logout button")
    page.wait_for_url(re.compile(r".*/admin/login$"))
    page.goto(site.at("/admin/"))
    assert "/admin/login" in page.url
