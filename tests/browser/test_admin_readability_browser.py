"""The admin pages in a real headless Chromium: grader errors, deliveries, readability.

One gunicorn queue with a platform whose return URL refuses connections, a
passed result and a grader crash: the crash stays out of the pass rate, the
deliveries page shows the platform failing, and "Retry now" delivers each
result once when a real receiver listens again. Then the main pages at
phone width: no table, and nothing else, wider than the 390 px screen.
Screenshots go to test-artifacts/screenshots/.
"""

from __future__ import annotations

import re

import pytest

from graderqueue.protocol.keys import QueueKeys
from harness.platform_endpoint import PlatformEndpoint
from harness.processes import free_port
from tests.browser.conftest import AdminSite
from tests.browser.test_admin_browser import TASKGRADER_RESULT, GradingServer

pytestmark = pytest.mark.slow

CRASH = {"errorcode": 1, "errormsg": "Fatal program error (exit code 1).", "jobdata": {}}
PHONE = {"width": 390, "height": 844}
MAIN_PAGES = [
    "/admin/",
    "/admin/jobs/queued",
    "/admin/jobs/done",
    "/admin/servers",
    "/admin/types",
    "/admin/platforms",
    "/admin/events",
    "/admin/deliveries",
    "/admin/deliveries?platform=down-plat",
    "/admin/stats",
]
# Each table's box and the page's width, measured by the browser.
WIDTHS = """() => ({
  page: document.documentElement.scrollWidth,
  tables: [...document.querySelectorAll('table')].map(t => {
    const box = t.getBoundingClientRect();
    return [t.id || t.className, Math.round(box.left), Math.round(box.right)];
  }),
})"""

CHART_TEXT_PX = """() => Math.min(...[...document.querySelectorAll('svg.chart')].flatMap(svg => {
  const scale = svg.getBoundingClientRect().width / svg.viewBox.baseVal.width;
  const texts = [...svg.querySelectorAll('text')];
  return texts.map(t => parseFloat(getComputedStyle(t).fontSize) * scale);
}))"""


def grade(site: AdminSite, client, name: str, result: dict) -> int:  # type: ignore[no-untyped-def]
    grader = GradingServer(site)
    job_id = client.sendjob(
        {"taskPath": "/tasks/sum", "extraParams": {"solutionLanguage": "c"}}, jobname=name, tags="c"
    )
    assert grader.poll()["jobid"] == job_id
    assert grader.send_result(job_id, result)["errorcode"] == 0
    return job_id


def test_grader_errors_deliveries_and_phone_width(browser, page, site: AdminSite):
    port = free_port()  # nothing listens: the return URL refuses
    platform = site.queue.platform("down-plat", return_url=f"http://127.0.0.1:{port}/results")
    client = site.queue.client_for(platform, url=site.url)
    passed = grade(site, client, "sum-ok", TASKGRADER_RESULT)
    crashed = grade(site, client, "sum-crash", CRASH)
    site.log_in(page)

    # The crash has its own badge, and only it is listed under its filter.
    page.goto(site.at("/admin/jobs/done"))
    assert page.locator(f"#job-{crashed} .badge.grader-error").inner_text() == "grader error"
    assert page.locator(f"#job-{passed} td.verdict").inner_text() == "passed"
    page.select_option("form.filters select[name=result]", "grader_error")
    site.submit(page, "form.filters button[type=submit]")
    assert page.locator("#jobs tbody tr").count() == 1
    assert page.locator(f"#job-{crashed}").count() == 1
    site.shot(page, "readability-done-grader-errors")

    # Out of the pass rate: 1 passed of 1 judged, not 1 of 2.
    page.goto(site.at("/admin/?window=15m"))
    assert (
        page.locator(".card.stat", has_text="all tests passed").inner_text().startswith("100.0 %")
    )
    page.goto(site.at("/admin/stats"))
    stats = page.locator("#stats tbody tr").first
    assert "100.0 %" in stats.inner_text() and stats.locator(".grader-error").inner_text() == "1"

    # The in-app delivery thread tried both results and failed: the platform shows so.
    def failing() -> bool:
        page.goto(site.at("/admin/deliveries"))
        return page.locator("tr.failing", has_text="down-plat").count() == 1

    for _ in range(60):
        if failing():
            break
        page.wait_for_timeout(500)
    row = page.locator("tr.failing", has_text="down-plat")
    assert "refused" in row.inner_text().lower()
    site.shot(page, "readability-deliveries-failing")
    page.goto(site.at("/admin/jobs/done"))
    assert "pending" in page.locator(f"#job-{passed} td.delivery").inner_text()

    keys = QueueKeys(site.queue.settings.resolved_key_dir, site.queue.settings.key_name)
    with PlatformEndpoint(platform.private_pem, keys.active.public_pem, port=port) as endpoint:
        page.goto(site.at("/admin/deliveries"))
        site.submit(page, "tr.failing button:has-text('Retry now')")
        assert "being sent again now" in page.locator(".flash.ok").inner_text()
        endpoint.wait_accepted(2)
    assert sorted(endpoint.accepted_names()) == ["sum-crash", "sum-ok"]
    page.goto(site.at("/admin/jobs/done"))
    assert page.locator(f"#job-{passed} td.delivery").inner_text() == "delivered"
    site.shot(page, "readability-done-delivered")

    # The skip link is the first stop of the keyboard, and leads to the content.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r".*#content$"))

    phone = browser.new_context(viewport=PHONE)
    small = phone.new_page()
    try:
        site.log_in(small)
        for path in MAIN_PAGES:
            small.goto(site.at(path))
            measured = small.evaluate(WIDTHS)
            assert measured["page"] <= PHONE["width"], (path, measured)
            for name, left, right in measured["tables"]:
                assert left >= 0 and right <= PHONE["width"], (path, name, left, right)
        site.shot(small, "readability-phone-done")
        small.goto(site.at("/admin/"))
        # Chart text as drawn on the phone's screen: its size times the drawing's scale.
        smallest = small.evaluate(CHART_TEXT_PX)
        assert smallest >= 12, smallest
        site.shot(small, "readability-phone-dashboard")
    finally:
        phone.close()
