"""A real headless Chromium (Debian's, driven by Playwright) against the queue under gunicorn.

Chromium and Playwright are system/test dependencies: when either is
missing the browser tests are skipped, except under ``CI=true`` where they
fail (CI installs them). ``playwright install`` is never needed: the
system browser is used.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from graderqueue.identity import passwords
from graderqueue.store.models import AdminUser
from harness.queue import QueueSetup

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
CHROMIUM = os.environ.get("GRADERQUEUE_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ADMIN, PASSWORD = "alice", "correct horse battery"


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def _unavailable(reason: str) -> None:
    if _in_ci():
        pytest.fail(f"{reason}; browser tests must run under CI=true", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def browser():  # type: ignore[no-untyped-def]
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("Playwright for Python is not installed (pip install playwright)")
    if not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
        _unavailable(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@dataclass
class AdminSite:
    """The queue under gunicorn, with an admin account, and a way to save screenshots."""

    queue: QueueSetup
    url: str
    screenshots: list[Path] = field(default_factory=list)

    def at(self, path: str) -> str:
        return self.url + path

    def shot(self, page, name: str) -> Path:  # type: ignore[no-untyped-def]
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        self.screenshots.append(path)
        return path

    @staticmethod
    def submit(page, selector: str) -> None:  # type: ignore[no-untyped-def]
        """Click what sends a form and wait until the page it leads to has loaded.

        A click returns once the new page starts to arrive; a ``count()`` or
        ``all_inner_texts()`` right after it does not wait and may see an
        empty, half-parsed document.
        """
        with page.expect_navigation(wait_until="load"):
            page.click(selector)

    def log_in(self, page, user: str = ADMIN, password: str = PASSWORD) -> None:  # type: ignore[no-untyped-def]
        page.goto(self.at("/admin/login"))
        page.fill("input[name=username]", user)
        page.fill("input[name=password]", password)
        page.click("form.login button[type=submit]")
        page.wait_for_url(re.compile(r".*/admin/$"))


def add_admin(queue: QueueSetup, user: str = ADMIN, password: str = PASSWORD) -> None:
    with queue.db.transaction() as session:
        session.add(AdminUser(username=user, password_hash=passwords.hash_password(password)))


@pytest.fixture
def site(sqlite_queue: QueueSetup) -> Iterator[AdminSite]:
    add_admin(sqlite_queue)
    server = sqlite_queue.gunicorn(
        workers=2,
        threads=8,
        # Plain HTTP on 127.0.0.1: a secure cookie would never come back.
        GRADERQUEUE_SESSION_COOKIE_SECURE="false",
        GRADERQUEUE_SEND_JOB_FORM="true",
    )
    yield AdminSite(sqlite_queue, server.url)


@pytest.fixture
def page(browser, site):  # type: ignore[no-untyped-def]
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()


class UdpResponder:
    """A grading server's wake-up listener: answers ``ok`` on 127.0.0.1, records datagrams."""

    def __init__(self, answer: bytes = b"ok") -> None:
        self.answer = answer
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.received: list[bytes] = []
        self.got = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"udp://127.0.0.1:{self.port}"

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(256)
            except TimeoutError:
                continue
            except OSError:
                return
            self.received.append(data)
            self.got.set()
            self.sock.sendto(self.answer, peer)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


@pytest.fixture
def udp_responder() -> Iterator[UdpResponder]:
    responder = UdpResponder()
    yield responder
    responder.close()
