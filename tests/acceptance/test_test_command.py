"""The suite never skips silently: a run ends naming what was skipped, and why.

Runs pytest in a subprocess on a small test file next to a copy of the
suite's own conftest.py, as scripts/test runs the suite.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_pytest(tmp_path: Path, body: str, **env: str) -> subprocess.CompletedProcess[str]:
    shutil.copy(ROOT / "tests" / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "test_sample.py").write_text("import pytest\n\n" + body)
    environ = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    environ.pop("PYTEST_XDIST_WORKER", None)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", str(tmp_path)],
        cwd=tmp_path,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
    )


SKIPPING = """
def test_runs():
    pass

def test_needs_a_browser():
    pytest.skip("chromium not installed")
"""


def test_a_skip_is_named_at_the_end_and_fails_the_whole_suite(tmp_path):
    run = run_pytest(tmp_path, SKIPPING, GRADERQUEUE_FAIL_ON_SKIP="1")
    assert "graderqueue: skipped 1: 1 x chromium not installed" in run.stdout
    assert run.returncode == 1, run.stdout


def test_skips_can_be_allowed(tmp_path):
    run = run_pytest(tmp_path, SKIPPING, GRADERQUEUE_FAIL_ON_SKIP="0")
    assert "graderqueue: skipped 1: 1 x chromium not installed" in run.stdout
    assert run.returncode == 0, run.stdout


def test_a_full_run_says_nothing_was_skipped(tmp_path):
    run = run_pytest(tmp_path, "def test_runs():\n    pass\n", GRADERQUEUE_FAIL_ON_SKIP="1")
    assert "graderqueue: nothing skipped" in run.stdout
    assert run.returncode == 0, run.stdout
