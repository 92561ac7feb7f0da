"""Fixtures: a real queue on SQLite always, and on MariaDB (found or started)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from harness.mariadb import mariadb_base_url_or_skip, temporary_database
from harness.queue import QueueSetup


@pytest.fixture(scope="session")
def mariadb_base() -> Iterator[str]:
    """A MariaDB server URL (configured, local, or a throwaway one started here)."""
    url, server = mariadb_base_url_or_skip()
    yield url
    if server is not None:
        server.stop()


@pytest.fixture
def mariadb_url(mariadb_base: str) -> Iterator[str]:
    with temporary_database(mariadb_base) as url:
        yield url


def _make_queue(request: pytest.FixtureRequest, tmp_path, backend: str, **overrides):  # type: ignore[no-untyped-def]
    database_url = ""
    if backend == "mariadb":
        database_url = request.getfixturevalue("mariadb_url")
    marker = request.node.get_closest_marker("queue_settings")
    if marker is not None:
        overrides = {**marker.kwargs, **overrides}
    overrides.setdefault("poll_wait_sec", 2)
    return QueueSetup(tmp_path / "instance", database_url, **overrides)


@pytest.fixture(params=["sqlite", pytest.param("mariadb", marks=pytest.mark.mariadb)])
def queue(request: pytest.FixtureRequest, tmp_path) -> Iterator[QueueSetup]:  # type: ignore[no-untyped-def]
    """A queue on each backend, with one tag `c`, a type `t-c` and platform `platform1`."""
    setup = _make_queue(request, tmp_path, request.param)
    setup.tag("c", "java", "gpu")
    setup.server_type("t-c", ["c"])
    setup.server_type("t-java", ["c", "java"])
    setup.platform("platform1")
    yield setup
    setup.close()


@pytest.fixture
def sqlite_queue(request: pytest.FixtureRequest, tmp_path) -> Iterator[QueueSetup]:  # type: ignore[no-untyped-def]
    setup = _make_queue(request, tmp_path, "sqlite")
    setup.tag("c", "java", "gpu")
    setup.server_type("t-c", ["c"])
    setup.server_type("t-java", ["c", "java"])
    setup.platform("platform1")
    yield setup
    setup.close()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "queue_settings(**kw): settings for the queue fixture")


# -- never skip silently -------------------------------------------------------


def _skip_reasons(terminalreporter) -> dict[str, int]:  # type: ignore[no-untyped-def]
    """Skipped tests by reason (xfails are expected failures, not skips)."""
    reasons: dict[str, int] = {}
    for report in terminalreporter.stats.get("skipped", []):
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        reason = reason.removeprefix("Skipped: ")
        reasons[reason] = reasons.get(reason, 0) + 1
    return reasons


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # type: ignore[no-untyped-def]
    # Runs in the xdist controller too, which holds every worker's reports.
    if hasattr(config, "workerinput"):
        return
    reasons = _skip_reasons(terminalreporter)
    if not reasons:
        terminalreporter.write_line("graderqueue: nothing skipped")
        return
    total = sum(reasons.values())
    listed = "; ".join(f"{count} x {reason}" for reason, count in sorted(reasons.items()))
    terminalreporter.write_line(f"graderqueue: skipped {total}: {listed}", yellow=True)
    if os.environ.get("GRADERQUEUE_FAIL_ON_SKIP") == "1":
        terminalreporter.write_line(
            "graderqueue: the whole suite must run; scripts/setup-system installs what is "
            "missing (GRADERQUEUE_ALLOW_SKIPS=1 accepts skips)",
            red=True,
        )


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if hasattr(session.config, "workerinput") or os.environ.get("GRADERQUEUE_FAIL_ON_SKIP") != "1":
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None and reporter.stats.get("skipped") and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
