"""The API's page (/api/v1/docs) in a real headless Chromium, against the queue under gunicorn.

What an operator does with it: read every operation, paste an API token, try
GET /api/v1/queue and read its answer; all of it without a request leaving
127.0.0.1 and without the page's Content-Security-Policy refusing anything.
Screenshots at desktop and phone widths go to the test's tmp dir.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import pytest
import requests

from harness.queue import QueueSetup
from tests.integration.test_api_v1_auth import api_token, send

pytestmark = pytest.mark.slow

DOCS = "/api/v1/docs"
TOKEN_KEY = "graderqueue-api-token"
# Recorded from before the page's own script runs (an init script is not under its CSP).
WATCH_CSP = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", function (e) {
  window.__cspViolations.push(e.violatedDirective + " " + e.blockedURI);
});
"""


@dataclass
class Visit:
    """A browser tab on the page, with what it asked for and what its console said."""

    page: object
    requests: list = field(default_factory=list)
    console: list[str] = field(default_factory=list)

    def csp_trouble(self) -> list[str]:
        said = [line for line in self.console if "Content Security Policy" in line]
        return said + self.page.evaluate("window.__cspViolations")  # type: ignore[attr-defined]


@pytest.fixture
def queue_url(sqlite_queue: QueueSetup) -> str:
    return sqlite_queue.gunicorn(workers=1, threads=4).url


@pytest.fixture
def context(browser):  # type: ignore[no-untyped-def]
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.add_init_script(WATCH_CSP)
    yield context
    context.close()


def open_docs(context, url: str) -> Visit:  # type: ignore[no-untyped-def]
    page = context.new_page()
    page.set_default_timeout(15_000)
    visit = Visit(page)
    page.on("request", lambda request: visit.requests.append(request))
    page.on("console", lambda msg: visit.console.append(f"{msg.type}: {msg.text}"))
    page.on("pageerror", lambda exc: visit.console.append(f"pageerror: {exc}"))
    page.goto(url + DOCS)
    page.wait_for_selector("details.op")
    return visit


def operation(page, path: str, method: str):  # type: ignore[no-untyped-def]
    return page.locator(f'details.op[data-path="{path}"][data-method="{method}"]')


def try_it(page, path: str, method: str):  # type: ignore[no-untyped-def]
    """Open the operation, send its form, and give back its result once a status shows."""
    op = operation(page, path, method)
    if op.get_attribute("open") is None:
        op.locator("> summary").click()
    op.locator("form.try button.send").click()
    op.locator(".result .status-line").wait_for()
    return op.locator(".result")


def test_every_operation_is_shown_and_try_it_answers(context, queue_url, sqlite_queue, tmp_path):
    send(sqlite_queue, sqlite_queue.platform("contest"), "c", 2)
    token = api_token(sqlite_queue, "docs-reader", "read")
    doc = requests.get(queue_url + "/api/v1/openapi.json", timeout=10).json()
    visit = open_docs(context, queue_url)
    page = visit.page

    methods = ("get", "post", "put", "patch", "delete")
    operations = [(p, m) for p, item in doc["paths"].items() for m in item if m in methods]
    assert len(operations) >= 2
    for path, method in operations:
        op = operation(page, path, method)
        assert op.count() == 1, (path, method)
        assert op.locator("> summary .path").inner_text() == path
        assert doc["paths"][path][method].get("summary", "") in op.locator("> summary").inner_text()
    toc = page.locator("#toc").inner_text()
    assert all(path in toc for path, _ in operations)
    # The answer's schema is drawn from the document, $refs and all.
    queue_op = operation(page, "/queue", "get")
    queue_op.locator("> summary").click()
    drawn = queue_op.locator(".block").first.inner_text()
    assert "by_platform" in drawn and "oldest_waiting_sec" in drawn and "401" in drawn

    # Without a token: the API's own refusal, shown as it came.
    result = try_it(page, "/queue", "get")
    assert result.locator(".status-line .code").inner_text() == "401"
    assert json.loads(result.locator(".response-body").inner_text())["status"] == 401

    page.fill("#token", token)
    result = try_it(page, "/queue", "get")
    assert result.locator(".status-line .code").inner_text() == "200"
    body = json.loads(result.locator(".response-body").inner_text())
    assert body["waiting"] == 2
    assert [row["platform"] for row in body["by_platform"]] == ["contest"]
    result.locator(".headers summary").click()
    assert "content-type: application/json" in result.locator(".headers").inner_text()
    sent = [r for r in visit.requests if r.url.endswith("/api/v1/queue")]
    assert [r.headers.get("authorization") for r in sent] == [None, f"Bearer {token}"]

    page.evaluate("window.scrollTo(0, 0)")
    shot = tmp_path / "api-docs-1400.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000

    assert_stayed_home(visit, queue_url)


def test_the_token_stays_in_the_tab_and_the_page_fits_a_phone(
    context, queue_url, sqlite_queue, tmp_path
):
    token = api_token(sqlite_queue, "phone", "read")
    visit = open_docs(context, queue_url)
    page = visit.page
    page.fill("#token", token)
    assert page.evaluate(f"sessionStorage.getItem('{TOKEN_KEY}')") == token
    assert page.evaluate("localStorage.length") == 0 and page.evaluate("document.cookie") == ""
    page.reload()
    page.wait_for_selector("details.op")
    assert page.input_value("#token") == token, "kept for the tab's life"
    other_tab = open_docs(context, queue_url)
    assert other_tab.page.input_value("#token") == "", "and for no other tab"
    other_tab.page.close()

    page.set_viewport_size({"width": 390, "height": 844})
    result = try_it(page, "/queue", "get")
    assert result.locator(".status-line .code").inner_text() == "200"
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the page is {width} px wide on a 390 px screen"
    assert page.locator("#token").is_visible()
    page.evaluate("window.scrollTo(0, 0)")
    shot = tmp_path / "api-docs-390.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000

    page.click("#token-clear")
    assert page.evaluate(f"sessionStorage.getItem('{TOKEN_KEY}')") is None
    assert_stayed_home(visit, queue_url)


def assert_stayed_home(visit: Visit, queue_url: str) -> None:
    """Every request went to the queue on 127.0.0.1 (data: URLs go nowhere); no CSP refusal."""
    home = urlsplit(queue_url)
    assert home.hostname == "127.0.0.1"
    elsewhere = [
        r.url
        for r in visit.requests
        if not r.url.startswith("data:")
        and (urlsplit(r.url).hostname, urlsplit(r.url).port) != (home.hostname, home.port)
    ]
    assert elsewhere == []
    assert visit.csp_trouble() == []
    assert not [line for line in visit.console if line.startswith("pageerror")], visit.console
