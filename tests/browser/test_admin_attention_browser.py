"""What is wrong at a glance, in a real headless Chromium against the queue under gunicorn.

A grading server takes a job, fails it once, takes it again and goes
silent; a type has no server at all. The dashboard's strip, the servers,
types and queued pages must say so. Screenshots at 1400 px go to
test-artifacts/screenshots/ (attention-*.png).
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from graderqueue.store.models import Server, utcnow
from tests.browser.conftest import AdminSite
from tests.browser.test_admin_browser import GradingServer

pytestmark = pytest.mark.slow


@pytest.fixture
def wide(browser, site):  # type: ignore[no-untyped-def]
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()


def test_a_silent_server_and_a_type_nobody_serves(wide, site: AdminSite):
    page = wide
    platform = site.queue.client_for(site.queue.platform("school"), url=site.url)
    for name, priority in (("low", 0), ("top", 9), ("mid", 5), ("low-2", 0), ("mid-2", 5)):
        platform.sendjob({"n": name}, jobname=name, tags="c", priority=priority)
    platform.sendjob({"n": "j"}, jobname="java-only", tags="java")
    grader = GradingServer(site)
    taken = grader.poll()["jobid"]
    # A result reporting an error: refused, the job goes back with one more failure.
    answer = grader.send_result(taken, {"errorcode": 2, "errormsg": "crashed"})
    assert answer["errormsg"] == "Resultdata received invalid."
    assert grader.poll()["jobid"] == taken  # back in the queue, still first in line
    with site.queue.db.transaction() as session:
        # The server went silent ten minutes ago and its wake-ups fail since
        # (set in the database: no sleeping in tests).
        for row in session.query(Server):
            row.last_poll_time = utcnow() - timedelta(minutes=10)
            row.wakeup_fails = 3
    site.log_in(page)

    page.goto(site.at("/admin/?window=15m"))
    strip = page.locator("#attention")
    assert "1 lost server" in strip.locator("#attention-lost-servers").inner_text()
    assert "no server at all" in strip.locator("#attention-no-live-server-t-java").inner_text()
    assert page.locator("#failed-attempts").inner_text() == "1", "counted though not done"
    assert page.locator("#overview-2 .flag").inner_text() == "no server"
    site.shot(page, "attention-dashboard")

    site.submit(page, "#attention-lost-servers a")
    row = page.locator("#servers tbody tr")
    assert row.count() == 1 and row.locator(".badge.st-lost").inner_text() == "lost"
    assert "go back to the queue when their lease ends" in row.inner_text()
    site.shot(page, "attention-servers-lost")

    page.goto(site.at("/admin/types"))
    assert "no server" in page.locator("#type-overview").inner_text()
    site.shot(page, "attention-types")

    page.goto(site.at("/admin/jobs/queued?status=queued&type=t-c"))
    names = page.locator("#jobs tbody td.name").all_inner_texts()
    assert names == ["mid", "mid-2", "low", "low-2"], "the order servers will get them"
    assert re.search(r"t-c, t-java", page.locator("#jobs tbody tr").first.inner_text())
    site.shot(page, "attention-queued")
