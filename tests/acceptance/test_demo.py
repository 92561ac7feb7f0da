"""scripts/demo, as a newcomer runs it: a job graded, then nothing left running."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]


def demo_env(instance: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRADERQUEUE_")}
    return {**env, "GRADERQUEUE_DEMO_INSTANCE": str(instance), "PYTHONPATH": str(ROOT)}


def processes_mentioning(*needles: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if any(needle in cmdline for needle in needles):
            found.append(f"{entry.name}: {cmdline}")
    return found


def test_the_demo_grades_a_job_and_leaves_nothing_running(tmp_path):
    instance = tmp_path / "demo"
    run = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "demo.py")],
        env=demo_env(instance),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "test small  OK" in run.stdout and "test large  OK" in run.stdout
    assert re.search(r"date=\d{4}-\d\d-\d\d \(sent as \d\d-\d\d-\d{4}", run.stdout), run.stdout
    assert "Stopped." in run.stdout
    assert processes_mentioning(str(instance)) == []


def test_sigterm_stops_a_kept_demo_and_its_children(tmp_path):
    instance = tmp_path / "demo"
    demo = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "demo.py"), "--keep"],
        env=demo_env(instance),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines = []
    try:
        for line in demo.stdout:
            lines.append(line)
            if "admin pages:" in line:
                break
        text = "".join(lines)
        found = re.search(r"admin pages: (\S+)/admin/\s+user: demo\s+password: (\S+)", text)
        assert found, text
        url, password = found.groups()
        port = url.rsplit(":", 1)[1]
        children = processes_mentioning(str(instance), f"127.0.0.1:{port}")
        assert len(children) >= 2, children  # gunicorn (master, worker) and the graderserver

        # The printed account logs in.
        session = requests.Session()
        page = session.get(f"{url}/admin/login", timeout=10).text
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        login = session.post(
            f"{url}/admin/login",
            data={"username": "demo", "password": password, "csrf_token": csrf},
            timeout=10,
        )
        assert "Log out" in login.text or "logout" in login.text, login.text[:500]

        demo.send_signal(signal.SIGTERM)
        demo.wait(timeout=60)
        assert processes_mentioning(str(instance), f"127.0.0.1:{port}") == []
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
