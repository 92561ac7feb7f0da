"""Draining a server and pausing a type from the admin pages, in a real headless Chromium
against the queue under gunicorn; a grading server polls over HTTP meanwhile."""

from __future__ import annotations

import re

import pytest

from tests.browser.conftest import AdminSite
from tests.browser.test_admin_browser import TASKGRADER_RESULT, GradingServer

pytestmark = [pytest.mark.slow, pytest.mark.queue_settings(poll_wait_sec=0)]


def flash(page) -> str:  # type: ignore[no-untyped-def]
    return page.locator(".flash").first.inner_text()


def test_drain_a_server_and_pause_a_type_from_the_pages(page, site: AdminSite):
    grader = GradingServer(site)
    assert grader.poll()["errorcode"] == 1  # registers it, idle
    client = site.queue.client_for(site.queue.platform("contest"), url=site.url)
    job_id = client.sendjob({"taskPath": "/tasks/add"}, jobname="waits", tags="c")
    site.log_in(page)

    page.goto(site.at("/admin/servers"))
    server_row = page.locator("#servers tr", has_text="token1-127.0.0.1")
    site.submit(page, "#servers tr:has-text('token1-127.0.0.1') button:has-text('Drain')")
    assert "drained: it gets no new job" in flash(page)
    assert server_row.locator(".badge", has_text="drained").is_visible()
    assert "drained: token1-127.0.0.1" in page.locator("#dispatch").inner_text()
    site.shot(page, "servers-drained")
    assert grader.poll()["errorcode"] == 1, "a drained server gets no job"

    page.goto(site.at("/admin/types"))
    site.submit(page, "#types tr:has-text('t-c') button:has-text('Pause')")
    assert "Server type t-c: dispatch paused" in flash(page)
    type_row = page.locator("#types tr", has_text="t-c").first
    assert type_row.locator(".badge").inner_text() == "paused"
    site.shot(page, "types-paused")

    # Undrained from its own page: still nothing, its type is paused.
    page.goto(site.at("/admin/servers"))
    site.submit(page, "#servers a:has-text('token1-127.0.0.1')")
    assert page.locator("h1", has_text="token1-127.0.0.1").is_visible()
    site.submit(page, "button:has-text('Undrain')")
    assert "undrained" in flash(page)
    page.goto(site.at("/admin/servers"))
    assert server_row.locator(".badge", has_text="paused").is_visible(), "its type's state"
    assert grader.poll()["errorcode"] == 1

    page.goto(site.at("/admin/types"))
    site.submit(page, "#types tr:has-text('t-c') button:has-text('Resume')")
    assert grader.poll()["jobid"] == job_id
    assert grader.send_result(job_id, TASKGRADER_RESULT)["errorcode"] == 0

    page.goto(site.at("/admin/events?kind=dispatch_paused"))
    assert "type t-c paused by admin alice" in page.locator("main").inner_text()
    site.shot(page, "events-dispatch")


def test_a_removal_asks_on_a_page_of_its_own_first(page, site: AdminSite):
    grader = GradingServer(site)
    client = site.queue.client_for(site.queue.platform("contest"), url=site.url)
    job_id = client.sendjob({"taskPath": "/tasks/add"}, jobname="held", tags="c")
    assert grader.poll()["jobid"] == job_id
    site.log_in(page)
    page.goto(site.at("/admin/servers"))
    site.submit(page, "#servers a:has-text('token1-127.0.0.1')")
    site.submit(page, "button:has-text('Remove')")
    assert page.locator("h1").inner_text() == "Remove server token1-127.0.0.1?"
    asked = page.locator("#confirm").inner_text()
    assert "The 1 job(s) it is grading go back to the queue" in asked
    site.shot(page, "server-remove-confirm")

    site.submit(page, "a:has-text('Keep it as it is')")
    assert re.search(r"/admin/servers/\d+$", page.url), "nothing removed"
    site.submit(page, "button:has-text('Remove')")
    site.submit(page, "#confirm button:has-text('Remove server')")
    assert flash(page) == "Server token1-127.0.0.1 removed; 1 job(s) it held queued again."
    assert page.url.endswith("/admin/servers")
    assert grader.poll()["jobid"] == job_id, "queued again (the token registers it again)"
